"""MEDS (Medical Event Data Standard) exports, read through PyHealth's MEDSDataset.

MEDS codes are strings; ClinFuse reads the `VOCABULARY/CODE` convention that OMOP-derived MEDS exports use
(meds_etl_omop, EHRSHOT: `ICD10CM/I50.22`, `LOINC/2160-0`), the vocabulary naming the system; it takes the unit
from the `unit` column where the export adds one (MEDS core has none) and names from metadata/codes.parquet.
MEDS' own codes (`MEDS_BIRTH`, `MEDS_DEATH`) and static codes (no time, e.g. `Gender/F`) are not events and are
counted. A code whose prefix is not a known system is counted per prefix; a site names its own prefixes with
`code_systems`.

MEDS stores `numeric_value` as float32, so a result written as 1.23 comes back as 1.2300000190734863; the reader
restores the shortest decimal the float32 stands for, which is the value the export was made from (exact for
two-decimal results below 2**17).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow.dataset as pa_ds
from clinfuse.kinds.ehr.codes import SYSTEM_KINDS, VITAL_LOINC, VOCABULARY_SYSTEMS, normalised_code_expr
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources.base import EventSource, SourceEvents, conform
from clinfuse.kinds.ehr.sources.pyhealth_run import pyhealth_events
from clinfuse.kinds.ehr.units import unit_expr
from clinfuse.platform.errors import ClinFuseError

CONFIG_WITH_UNITS = Path(__file__).with_name("meds_with_units.yaml")
MEDS_SPECIAL = "MEDS_"
SPECIAL_CODES = "MEDS special codes (birth, death) not read as events"
STATIC_CODES = "static codes (no time, e.g. sex) not read as events"


class MedsSource(EventSource):
    name = "meds"
    layout_hint = "the MEDS root (the folder holding data/ and metadata/)"
    event_kinds: ClassVar[tuple[str, ...]] = ("diagnosis", "procedure", "drug", "lab", "vital")

    def check_layout(self, modality: EhrModality) -> None:
        super().check_layout(modality)
        if not any((modality.path / "data").rglob("*.parquet")):
            raise ClinFuseError(
                f"ehr modality '{modality.name}': no MEDS parquet shards under {modality.path / 'data'}",
                f"point path at {self.layout_hint} or set source to the export's layout",
            )

    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        from pyhealth.datasets import MEDSDataset

        shards = pa_ds.dataset(modality.path / "data", format="parquet")
        with_units = "unit" in shards.schema.names
        config = str(CONFIG_WITH_UNITS) if with_units else None
        try:
            events = pyhealth_events(
                lambda cache: MEDSDataset(root=str(modality.path), config_path=config, cache_dir=cache,
                                          num_workers=1),
                scratch, self.name, progress,
            )  # fmt: skip
        except TypeError as error:  # MEDSDataset's footer check: time missing, not a timestamp, or zoned
            raise ClinFuseError(
                f"ehr modality '{modality.name}': the MEDS shards do not follow the MEDS schema ({error})",
                "write `time` as a time-zone-naive timestamp column, as the MEDS schema defines it",
            ) from None
        code = pl.col("meds/code").cast(pl.String).str.strip_chars()
        prefix, rest = code.str.splitn("/", 2).struct.field("field_0"), code.str.splitn("/", 2).struct.field("field_1")
        known = {**VOCABULARY_SYSTEMS, **modality.code_systems}
        system = pl.when(rest.is_not_null()).then(prefix.replace_strict(known, default=None))
        kinds = pl.col("system").replace_strict(SYSTEM_KINDS, default="lab")
        vital = (pl.col("system") == "LOINC") & pl.col("_code").is_in(VITAL_LOINC)
        special = pl.col("meds/code").cast(pl.String).str.starts_with(MEDS_SPECIAL)
        static = pl.col("timestamp").is_null()
        meds = events.filter(pl.col("event_type") == "meds")
        rows = (
            meds.filter(~special & ~static)
            .with_columns(code.alias("_whole"), system.alias("system"), rest.alias("_rest"))
            .join(_descriptions(modality.path), on="_whole", how="left")
            .with_columns(normalised_code_expr(pl.col("system"), pl.col("_rest")).alias("_code"))
            .select(
                "patient_id",
                pl.col("timestamp").cast(pl.Datetime("us")).alias("time"),
                pl.when(vital).then(pl.lit("vital")).otherwise(kinds).alias("kind"),
                "system",
                pl.when(pl.col("system").is_null()).then(prefix_of(pl.col("_whole"))).alias("raw_system"),
                pl.coalesce(pl.col("_code"), pl.col("_whole")).alias("code"),
                _decimal(pl.col("meds/numeric_value")).alias("value"),
                (unit_expr(pl.col("meds/unit")) if with_units else pl.lit(None, pl.String)).alias("unit"),
                pl.col("_description").alias("text"),
            )
        )
        rows = rows.filter(pl.col("kind").is_in(modality.events) | pl.col("system").is_null())
        skipped = meds.select(special.sum().alias(SPECIAL_CODES), (static & ~special).sum().alias(STATIC_CODES))
        problems = {k: int(v) for k, v in skipped.collect(engine="streaming").row(0, named=True).items() if v}
        return SourceEvents(conform(rows), problems)


def _descriptions(root: Path) -> pl.LazyFrame:
    """code -> description from the export's metadata/codes.parquet (MEDS' code metadata), if it has one."""
    path = root / "metadata" / "codes.parquet"
    if not path.exists():
        return pl.LazyFrame(schema={"_whole": pl.String, "_description": pl.String})
    return (
        pl.scan_parquet(path)
        .select(
            pl.col("code").cast(pl.String).alias("_whole"), pl.col("description").cast(pl.String).alias("_description")
        )
        .unique("_whole", keep="first")
    )


def prefix_of(code: pl.Expr) -> pl.Expr:
    """The part of a MEDS code before its first '/', or the code itself when it has none."""
    return code.str.splitn("/", 2).struct.field("field_0")


def _decimal(value: pl.Expr) -> pl.Expr:
    """float32 values as the shortest decimal they stand for (numpy writes float32 so), as float64."""

    def restore(series: pl.Series) -> pl.Series:
        shortest = series.cast(pl.Float32).to_numpy().astype(str).astype(np.float64)
        return pl.Series(shortest, dtype=pl.Float64).fill_nan(None)

    return value.cast(pl.Float64, strict=False).map_batches(restore, return_dtype=pl.Float64, is_elementwise=True)
