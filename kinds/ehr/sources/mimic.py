"""MIMIC-IV and MIMIC-III, read through PyHealth's MIMIC4Dataset / MIMIC3Dataset (their own table configs).

Diagnoses and procedures are timed at their admission's discharge (PyHealth's configs join `dischtime`: ICD
codes are assigned at discharge), drugs at their start, labs at their chart time. MIMIC-III's prescriptions carry a
start date only (STARTDATE), so its drugs are timed at the end of that day: a drug started on the index day may
have started after the index time, and counting it as before would leak. ICD codes carry their version
(MIMIC-IV's `icd_version`; MIMIC-III holds ICD-9 only, in `icd9_code`). Drugs are NDC codes where the row has one
(MIMIC-III writes `0` for none), else the drug name under the `DRUG-NAME` system. Labs are LOINC codes where
d_labitems maps the item (MIMIC-III and MIMIC-IV v1.0 ship `loinc_code`), else the site's item id under
`MIMIC-LAB`. PyHealth lower-cases every header, so MIMIC-III's upper-case columns read as MIMIC-IV's do.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import polars as pl
from clinfuse.kinds.ehr.codes import normalised_code_expr
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources.base import EventSource, SourceEvents, conform
from clinfuse.kinds.ehr.sources.pyhealth_run import pyhealth_events
from clinfuse.kinds.ehr.units import unit_expr

DRUG_NAME, MIMIC_LAB = "DRUG-NAME", "MIMIC-LAB"


class MimicSource(EventSource):
    """The MIMIC CSV layout of one release; subclasses name its files and PyHealth class."""

    tables: ClassVar[dict[str, str]]  # event kind -> PyHealth table
    labitems: ClassVar[str]  # d_labitems file, relative to the root (a .gz twin counts)
    drug_start_is_date: ClassVar[bool] = False  # the prescriptions' start time holds a date only

    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        tables = [self.tables[k] for k in modality.events if k in self.tables]
        events = pyhealth_events(lambda cache: self.dataset(modality.path, tables, cache), scratch, self.name,
                                 progress)  # fmt: skip
        columns = set(events.collect_schema().names())
        frames = []
        if "diagnosis" in modality.events:
            frames.append(self._icd(events, columns, "diagnosis", ("ICD9CM", "ICD10CM")))
        if "procedure" in modality.events:
            frames.append(self._icd(events, columns, "procedure", ("ICD9PCS", "ICD10PCS")))
        if "drug" in modality.events:
            frames.append(self._drugs(events))
        if "lab" in modality.events:
            frames.append(self._labs(events, modality.path))
        return SourceEvents(pl.concat([conform(f) for f in frames], how="vertical"))

    @abstractmethod
    def dataset(self, root: Path, tables: list[str], cache_dir: str) -> object:
        """The PyHealth dataset of this release over `tables`."""

    def required_files(self, modality: EhrModality) -> tuple[str, ...]:
        return (*self.required, *(self.table_file(self.tables[k]) for k in modality.events if k in self.tables))

    @abstractmethod
    def table_file(self, table: str) -> str:
        """The file of a PyHealth table, relative to the root."""

    def _icd(self, events: pl.LazyFrame, columns: set[str], kind: str, systems: tuple[str, str]) -> pl.LazyFrame:
        table = self.tables[kind]
        code_column = f"{table}/icd_code" if f"{table}/icd_code" in columns else f"{table}/icd9_code"
        version = f"{table}/icd_version"
        system = pl.lit(systems[0])
        if version in columns:
            system = pl.when(pl.col(version).cast(pl.String).str.strip_chars() == "10").then(pl.lit(systems[1]))\
                .otherwise(pl.lit(systems[0]))  # fmt: skip
        return (
            events.filter(pl.col("event_type") == table)
            .with_columns(system.alias("system"))
            .select(
                "patient_id",
                pl.col("timestamp").alias("time"),
                pl.lit(kind).alias("kind"),
                "system",
                normalised_code_expr(pl.col("system"), pl.col(code_column)).alias("code"),
            )  # fmt: skip
        )

    def _drugs(self, events: pl.LazyFrame) -> pl.LazyFrame:
        table = self.tables["drug"]
        start = pl.col("timestamp").cast(pl.Datetime("us"))
        if self.drug_start_is_date:
            start = start.dt.truncate("1d").dt.offset_by("1d") - pl.duration(microseconds=1)
        ndc = pl.col(f"{table}/ndc").cast(pl.String).str.strip_chars()
        has_ndc = ndc.is_not_null() & (ndc != "") & (ndc.str.strip_chars("0") != "")
        name = pl.col(f"{table}/drug").cast(pl.String).str.strip_chars()
        return events.filter(pl.col("event_type") == table).select(
            "patient_id",
            start.alias("time"),
            pl.lit("drug").alias("kind"),
            pl.when(has_ndc).then(pl.lit("NDC")).otherwise(pl.lit(DRUG_NAME)).alias("system"),
            pl.when(has_ndc).then(ndc).otherwise(name.str.to_lowercase()).alias("code"),
            name.alias("text"),
        )

    def _labs(self, events: pl.LazyFrame, root: Path) -> pl.LazyFrame:
        table = self.tables["lab"]
        itemid = pl.col(f"{table}/itemid").cast(pl.String).str.strip_chars()
        loinc = self.lab_loinc(root)
        labs = events.filter(pl.col("event_type") == table).with_columns(itemid.alias("_item"))
        labs = labs.join(loinc.lazy(), on="_item", how="left")
        has_loinc = pl.col("_loinc").is_not_null()
        return labs.select(
            "patient_id",
            pl.col("timestamp").alias("time"),
            pl.lit("lab").alias("kind"),
            pl.when(has_loinc).then(pl.lit("LOINC")).otherwise(pl.lit(MIMIC_LAB)).alias("system"),
            pl.when(has_loinc).then(pl.col("_loinc")).otherwise(pl.col("_item")).alias("code"),
            pl.col(f"{table}/valuenum").cast(pl.Float64, strict=False).alias("value"),
            unit_expr(pl.col(f"{table}/valueuom")).alias("unit"),
            pl.col(f"{table}/label").alias("text"),
        )

    def lab_loinc(self, root: Path) -> pl.DataFrame:
        """`_item` -> `_loinc` from d_labitems (gzipped or not, as PyHealth accepts either), when the release
        ships the `loinc_code` column (else empty)."""
        path = root / self.labitems
        twin = path.with_suffix("") if path.suffix == ".gz" else path.with_name(f"{path.name}.gz")
        return _loinc_by_item(path if path.exists() else twin)


def _loinc_by_item(path: Path) -> pl.DataFrame:
    """itemid -> LOINC code from the d_labitems file at `path`; empty when it is missing or has no `loinc_code`."""
    empty = pl.DataFrame(schema={"_item": pl.String, "_loinc": pl.String})
    if not path.exists():
        return empty
    items = pl.read_csv(path, infer_schema=False)
    items = items.rename({c: c.lower() for c in items.columns})
    if "loinc_code" not in items.columns:
        return empty
    return (
        items.select(
            pl.col("itemid").str.strip_chars().alias("_item"),
            pl.col("loinc_code").str.strip_chars().alias("_loinc"),
        )
        .filter(pl.col("_loinc").is_not_null() & (pl.col("_loinc") != ""))
        .unique("_item", keep="first")
    )


class Mimic4Source(MimicSource):
    name = "mimic4"
    required = ("hosp/patients.csv", "hosp/admissions.csv")
    layout_hint = "the MIMIC-IV root (the folder holding hosp/ and icu/)"
    tables: ClassVar[dict[str, str]] = {"diagnosis": "diagnoses_icd", "procedure": "procedures_icd",
                                        "drug": "prescriptions", "lab": "labevents"}  # fmt: skip
    labitems = "hosp/d_labitems.csv.gz"

    def table_file(self, table: str) -> str:
        return f"hosp/{table}.csv"

    def dataset(self, root: Path, tables: list[str], cache_dir: str) -> object:
        from pyhealth.datasets import MIMIC4Dataset

        return MIMIC4Dataset(ehr_root=str(root), ehr_tables=tables, cache_dir=cache_dir, num_workers=1)


class Mimic3Source(MimicSource):
    name = "mimic3"
    # MIMIC3Dataset always reads ICUSTAYS with PATIENTS and ADMISSIONS; labs join D_LABITEMS for their label
    required = ("PATIENTS.csv", "ADMISSIONS.csv", "ICUSTAYS.csv")
    layout_hint = "the MIMIC-III folder holding PATIENTS.csv.gz, ADMISSIONS.csv.gz and ICUSTAYS.csv.gz"
    tables: ClassVar[dict[str, str]] = {"diagnosis": "diagnoses_icd", "procedure": "procedures_icd",
                                        "drug": "prescriptions", "lab": "labevents"}  # fmt: skip
    labitems = "D_LABITEMS.csv.gz"
    drug_start_is_date = True

    def required_files(self, modality: EhrModality) -> tuple[str, ...]:
        files = super().required_files(modality)
        return (*files, "D_LABITEMS.csv") if "lab" in modality.events else files

    def table_file(self, table: str) -> str:
        return f"{table.upper()}.csv"

    def dataset(self, root: Path, tables: list[str], cache_dir: str) -> object:
        from pyhealth.datasets import MIMIC3Dataset

        with warnings.catch_warnings():
            # it warns that prescriptions carry dates only: `_drugs` times them at the end of the day for that
            warnings.filterwarnings("ignore", message="Events from prescriptions table", category=UserWarning)
            return MIMIC3Dataset(root=str(root), tables=tables, cache_dir=cache_dir, num_workers=1)
