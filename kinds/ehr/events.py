"""From a source's event stream to the cohort's events before each index time, with every left-out event counted.

Each event of a cohort patient meets one fate, counted in the ingest report: kept (strictly before the patient's
index time), or left out for having no time, no code, a code of an unknown system, a lab value that is not a
number, or lying at or after the index time. Events of patients outside the cohort are counted too. The kept events are
written to a parquet file in the scratch folder by polars' streaming sink, so nothing here holds the whole
export in memory; the features read it back a chunk of patients at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
from clinfuse.kinds.ehr.codes import icd9_to_icd10_gem
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources import source_for

KEPT = "kept"
NOT_IN_COHORT = "patient not in the cohort"
NO_TIME = "event without a time"
NO_CODE = "event without a code"
UNKNOWN_SYSTEM = "code of an unknown system"
NO_VALUE = "lab or vital without a numeric value"
AFTER_INDEX = "at or after the index time"
MEASURED = ("lab", "vital")
# columns of the kept events, as the features and the timeline read them
KEPT_COLUMNS = ("patient_id", "seconds_before_index", "kind", "code", "value", "unit", "text")
# polars' streaming engine: the in-memory one would hold a whole export's events while joining or counting
STREAMING = "streaming"
MOST_UNKNOWN_SYSTEMS = 20  # the report names this many unknown systems (raw names: URIs or vocabulary ids)


@dataclass
class CohortEvents:
    """The kept events (a parquet file of `KEPT_COLUMNS`), the patients they belong to, and the counts."""

    path: Path
    patients: set[str]
    report: dict

    def of(self, patient_ids: list[str]) -> pd.DataFrame:
        """The kept events of `patient_ids`, days before the index time computed from whole seconds."""
        chunk = pl.scan_parquet(self.path).filter(pl.col("patient_id").is_in(patient_ids))
        frame = chunk.collect(engine=STREAMING).to_pandas()
        # Days divided by numpy after collection: polars' division of the same value differed by one ulp between
        # two ingests of the same files, which made a re-ingested cache differ from the first.
        frame.insert(1, "days_before_index", frame.pop("seconds_before_index").to_numpy("float64") / 86400.0)
        return frame


def cohort_events(modality: EhrModality, index_times: dict[str, pd.Timestamp], scratch: Path,
                  progress: bool) -> CohortEvents:  # fmt: skip
    """Read the modality's source and keep, per cohort patient, the events strictly before the index time."""
    reader = source_for(modality.source)
    reader.check_layout(modality)
    source = reader.read(modality, scratch, progress)
    # each event's index time by lookup, not by a join: a lookup streams, while a join may hold one side whole
    index_time = pl.col("patient_id").replace_strict(
        list(index_times), [t.to_pydatetime() for t in index_times.values()], default=None,
        return_dtype=pl.Datetime("us"),
    ).alias("index_time")  # fmt: skip
    events = source.events.with_columns(index_time)
    outside = events.select(pl.col("index_time").is_null().sum()).collect(engine=STREAMING)
    # one pass over the source: every cohort event with its fate, to disk; the counts are read from that file
    fated_path = scratch / f"ehr-fated-{modality.name}.parquet"
    events.filter(pl.col("index_time").is_not_null()).with_columns(_fate().alias("fate")).sink_parquet(fated_path)
    fated = pl.scan_parquet(fated_path)
    fates = fated.group_by("fate").len().collect(engine=STREAMING)
    unknown = (
        fated.filter(pl.col("fate") == UNKNOWN_SYSTEM)
        .group_by("raw_system")
        .len()
        .collect(engine=STREAMING)
        .sort(["len", "raw_system"], descending=[True, False])
        .head(MOST_UNKNOWN_SYSTEMS)
    )
    kept = fated.filter(pl.col("fate") == KEPT)
    mapping: dict[str, int] = {}
    if modality.icd9_to_icd10:
        kept, mapping = _icd9_as_icd10(kept)
    path = scratch / f"ehr-events-{modality.name}.parquet"
    _tokens(kept).select(KEPT_COLUMNS).sink_parquet(path)
    fated_path.unlink()
    patients = set(pl.scan_parquet(path).select(pl.col("patient_id").unique()).collect(engine=STREAMING)["patient_id"])
    counts = dict(zip(fates["fate"], fates["len"], strict=True))
    left_out = {reason: int(counts[reason]) for reason in (NO_TIME, NO_CODE, UNKNOWN_SYSTEM, NO_VALUE, AFTER_INDEX)
                if counts.get(reason)}  # fmt: skip
    report = {
        "source": modality.source,
        "events_of_cohort_patients": int(sum(counts.values())),
        "events_before_index": int(counts.get(KEPT, 0)),
        "events_left_out": left_out,
        "events_of_patients_outside_cohort": int(outside.item()),
        "unknown_code_systems": dict(zip(unknown["raw_system"].fill_null("(none)"), unknown["len"], strict=True)),
        "read_problems": source.problems,
        **({"icd9_to_icd10": mapping} if modality.icd9_to_icd10 else {}),
    }
    return CohortEvents(path, patients, report)


def _fate() -> pl.Expr:
    measured = pl.col("kind").is_in(MEASURED)
    return (
        pl.when(pl.col("time").is_null()).then(pl.lit(NO_TIME))
        .when(pl.col("code").is_null() | (pl.col("code") == "")).then(pl.lit(NO_CODE))
        .when(pl.col("system").is_null()).then(pl.lit(UNKNOWN_SYSTEM))
        .when(measured & (pl.col("value").is_null() | pl.col("value").is_nan())).then(pl.lit(NO_VALUE))
        .when(pl.col("time") >= pl.col("index_time")).then(pl.lit(AFTER_INDEX))
        .otherwise(pl.lit(KEPT))
    )  # fmt: skip


def _tokens(kept: pl.LazyFrame) -> pl.LazyFrame:
    """`SYSTEM:CODE` tokens; labs and vitals keyed by unit too (`LOINC:2160-0 [mg/dL]`: never averaged across
    units), and the seconds from each event to its patient's index time."""
    token = pl.col("system") + pl.lit(":") + pl.col("code")
    with_unit = pl.when(pl.col("kind").is_in(MEASURED) & pl.col("unit").is_not_null())\
        .then(token + pl.lit(" [") + pl.col("unit") + pl.lit("]")).otherwise(token)  # fmt: skip
    return kept.with_columns(
        with_unit.alias("code"),
        (pl.col("index_time") - pl.col("time")).dt.total_seconds().alias("seconds_before_index"),
        pl.when(pl.col("kind").is_in(MEASURED)).then(pl.col("value")).alias("value"),
    )


def _icd9_as_icd10(kept: pl.LazyFrame) -> tuple[pl.LazyFrame, dict[str, int]]:
    """ICD-9-CM diagnoses re-coded as ICD-10-CM through the GEM; codes it does not map stay ICD-9-CM."""
    gem = pl.LazyFrame(list(icd9_to_icd10_gem().items()), schema={"code": pl.String, "_icd10": pl.String},
                       orient="row")  # fmt: skip
    icd9 = pl.col("system") == "ICD9CM"
    joined = kept.join(gem, on="code", how="left")
    counts = (
        joined.filter(icd9)
        .select(
            pl.col("_icd10").is_not_null().sum().alias("mapped"), pl.col("_icd10").is_null().sum().alias("unmapped")
        )
        .collect(engine=STREAMING)
    )
    mapped = icd9 & pl.col("_icd10").is_not_null()
    recoded = joined.with_columns(
        pl.when(mapped).then(pl.lit("ICD10CM")).otherwise(pl.col("system")).alias("system"),
        pl.when(mapped).then(pl.col("_icd10")).otherwise(pl.col("code")).alias("code"),
    ).drop("_icd10")
    return recoded, {"icd9cm_mapped_to_icd10cm": int(counts["mapped"][0]),
                     "icd9cm_without_gem_mapping_kept": int(counts["unmapped"][0])}  # fmt: skip
