"""OMOP CDM 5.3/5.4 CSV exports, read through PyHealth's OMOPDataset with ClinFuse's table config (omop.yaml).

Each event is coded by the concept its export resolves: conditions, procedures and drugs by their *source*
concept first (the ICD-10-CM, ICD-10-PCS or NDC code the hospital recorded, which is what MIMIC and FHIR
exports carry too), then their standard concept; measurements by their standard concept first (LOINC). A concept
id resolves through the export's own `concept.csv` to (vocabulary, code); without that table, or for an id it
lacks, the event keeps the bare concept id under the `OMOP` system. An event whose concept ids are both 0 (not
mapped) has no code and is counted under its table.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import polars as pl
from clinfuse.kinds.ehr.codes import OMOP_CONCEPT, VITAL_LOINC, VOCABULARY_SYSTEMS, normalised_code_expr
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources.base import EventSource, SourceEvents, conform
from clinfuse.kinds.ehr.sources.pyhealth_run import pyhealth_events
from clinfuse.kinds.ehr.units import unit_expr

CONFIG = Path(__file__).with_name("omop.yaml")
# event kind -> (table, date column, concept columns in the order they are tried, source value column)
_TABLES: dict[str, tuple[str, str, tuple[str, str], str]] = {
    "diagnosis": ("condition_occurrence", "condition_start_date",
                  ("condition_source_concept_id", "condition_concept_id"), "condition_source_value"),
    "procedure": ("procedure_occurrence", "procedure_date",
                  ("procedure_source_concept_id", "procedure_concept_id"), "procedure_source_value"),
    "drug": ("drug_exposure", "drug_exposure_start_date",
             ("drug_source_concept_id", "drug_concept_id"), "drug_source_value"),
    "lab": ("measurement", "measurement_date", ("measurement_concept_id", "measurement_concept_id"),
            "measurement_source_value"),
}  # fmt: skip


class OmopSource(EventSource):
    name = "omop"
    required = ("person.csv", "visit_occurrence.csv", "death.csv")
    layout_hint = "the folder of the OMOP CDM CSV tables (person.csv, ...; an export without deaths ships " \
                  "death.csv with its header only)"  # fmt: skip
    event_kinds: ClassVar[tuple[str, ...]] = ("diagnosis", "procedure", "drug", "lab", "vital")

    def required_files(self, modality: EhrModality) -> tuple[str, ...]:
        kinds = {"lab" if k == "vital" else k for k in modality.events}
        return (*self.required, *(f"{_TABLES[k][0]}.csv" for k in _TABLES if k in kinds))

    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        from pyhealth.datasets import OMOPDataset

        wanted = [k for k in _TABLES if k in modality.events or (k == "lab" and "vital" in modality.events)]
        tables = [_TABLES[k][0] for k in wanted]
        events = pyhealth_events(
            lambda cache: OMOPDataset(root=str(modality.path), tables=tables, config_path=str(CONFIG),
                                      cache_dir=cache, num_workers=1),
            scratch, self.name, progress,
        )  # fmt: skip
        concepts = _concepts(modality.path, modality.code_systems)
        frames = [_events(events, concepts, kind) for kind in wanted]
        stream = pl.concat([conform(f) for f in frames], how="vertical")
        if "vital" in modality.events or "lab" not in modality.events:  # measurements split by LOINC panel
            vital = (pl.col("kind") == "lab") & (pl.col("system") == "LOINC") & pl.col("code").is_in(VITAL_LOINC)
            stream = stream.with_columns(pl.when(vital).then(pl.lit("vital")).otherwise(pl.col("kind")).alias("kind"))
            stream = stream.filter(pl.col("kind").is_in(modality.events))
        return SourceEvents(stream)


def _concepts(root: Path, site_systems: dict[str, str]) -> pl.LazyFrame:
    """concept_id -> (system, code, name) from the export's concept table; empty when it has none. Vocabularies
    ClinFuse does not know keep their own id as system name unless the site maps them (`code_systems`)."""
    schema = {"_concept": pl.String, "_system": pl.String, "_code": pl.String, "_name": pl.String}
    path = next((p for p in (root / "concept.csv", root / "concept.csv.gz") if p.exists()), None)
    if path is None:
        return pl.LazyFrame(schema=schema)
    known = {**VOCABULARY_SYSTEMS, **site_systems}
    vocabulary = pl.col("vocabulary_id").str.strip_chars()
    return (
        pl.scan_csv(path, infer_schema=False)
        .select(
            pl.col("concept_id").str.strip_chars().alias("_concept"),
            vocabulary.replace_strict(known, default=vocabulary).alias("_system"),
            pl.col("concept_code").alias("_code"),
            pl.col("concept_name").alias("_name"),
        )
        .unique("_concept", keep="first")
    )


def _events(events: pl.LazyFrame, concepts: pl.LazyFrame, kind: str) -> pl.LazyFrame:
    table, date, (first, second), source_value = _TABLES[kind]
    prefix = f"{table}/"
    rows = events.filter(pl.col("event_type") == table).with_columns(
        _concept_id(pl.col(prefix + first)).alias("_first"), _concept_id(pl.col(prefix + second)).alias("_second")
    )
    for side in ("_first", "_second"):
        named = concepts.rename({c: f"{c}{side}" for c in ("_concept", "_system", "_code", "_name")})
        rows = rows.join(named, left_on=side, right_on=f"_concept{side}", how="left")
    resolved = pl.col("_system_first").is_not_null()
    fallback = pl.col("_system_second").is_not_null()
    bare = pl.coalesce(pl.col("_first"), pl.col("_second"))
    system = pl.when(resolved).then(pl.col("_system_first")).when(fallback).then(pl.col("_system_second"))\
        .when(bare.is_not_null()).then(pl.lit(OMOP_CONCEPT))  # fmt: skip
    code = pl.when(resolved).then(pl.col("_code_first")).when(fallback).then(pl.col("_code_second"))\
        .otherwise(bare)  # fmt: skip
    date_time = pl.col(prefix + date).str.strip_chars().str.to_datetime("%Y-%m-%d", strict=False, time_unit="us")
    columns = [
        "patient_id",
        pl.coalesce(pl.col("timestamp").cast(pl.Datetime("us")), date_time).alias("time"),
        pl.lit(kind).alias("kind"),
        system.alias("system"),
        pl.when(system.is_null()).then(pl.lit(f"OMOP {table} without a concept")).alias("raw_system"),
        pl.when(system.is_null()).then(pl.col(prefix + source_value)).otherwise(code).alias("_raw_code"),
        pl.coalesce(pl.col("_name_first"), pl.col("_name_second"), pl.col(prefix + source_value)).alias("text"),
    ]
    if kind == "lab":
        unit_code = concepts.select(pl.col("_concept").alias("_unit_id"), pl.col("_code").alias("_unit_code"))
        rows = rows.with_columns(_concept_id(pl.col(prefix + "unit_concept_id")).alias("_unit_id"))
        rows = rows.join(unit_code, on="_unit_id", how="left")
        columns += [
            pl.col(prefix + "value_as_number").cast(pl.Float64, strict=False).alias("value"),
            unit_expr(pl.coalesce(pl.col(prefix + "unit_source_value"), pl.col("_unit_code"))).alias("unit"),
        ]
    mapped = rows.select(columns)
    return mapped.with_columns(normalised_code_expr(pl.col("system"), pl.col("_raw_code")).alias("code"))


def _concept_id(column: pl.Expr) -> pl.Expr:
    """A concept id as text; 0 (OMOP's 'no matching concept') and blanks are null."""
    text = column.cast(pl.String).str.strip_chars().str.replace(r"\.0$", "")
    return pl.when(text.is_null() | (text == "") | (text == "0")).then(None).otherwise(text)
