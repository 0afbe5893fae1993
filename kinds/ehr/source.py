"""EHR modalities: events read through PyHealth, restricted to cohort patients and to before the index time.

PyHealth's dataset classes start a Dask LocalCluster with spawned workers, so call `load_ehr_events` only from
code under a `__main__` guard (the `clinfuse` console script and pytest both are). PyHealth's own working copy
of the source tables goes to a temporary folder that is deleted afterwards: it holds source identifiers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.platform.errors import ClinFuseError

REQUIRED_MIMIC4_FILES = ("hosp/patients.csv.gz", "hosp/admissions.csv.gz")
# event type -> (code column, code prefix)
_CODE_SOURCES: dict[str, tuple[str, str]] = {
    "diagnoses_icd": ("diagnoses_icd/icd_code", "DX"),
    "procedures_icd": ("procedures_icd/icd_code", "PX"),
    "prescriptions": ("prescriptions/drug", "RX"),
}


def load_ehr_events(
    modality: EhrModality, index_times: dict[str, pd.Timestamp], scratch: Path, progress: bool = False
) -> tuple[pd.DataFrame, int]:
    """Events of cohort patients strictly before each one's index time, as a tidy frame (patient_id,
    days_before_index, kind, code, value, unit, text),
    and how many events of the configured tables were left out for lying at or after the index time."""
    _check_layout(modality)
    import dask
    from pyhealth.datasets import MIMIC4Dataset

    with (
        tempfile.TemporaryDirectory(prefix="pyhealth-", dir=scratch) as workdir,
        dask.config.set({"temporary-directory": workdir}),
        _quiet_pyhealth(progress),
    ):
        dataset = MIMIC4Dataset(
            ehr_root=str(modality.path), ehr_tables=list(modality.tables), cache_dir=workdir, num_workers=1
        )
        events = dataset.global_event_df
        cohort = pl.DataFrame(
            {"patient_id": list(index_times), "index_time": [t.to_pydatetime() for t in index_times.values()]},
            schema={"patient_id": pl.String, "index_time": pl.Datetime("ns")},
        )
        frames = [
            _codes(events, cohort, table, *source)
            for table, source in _CODE_SOURCES.items()
            if table in modality.tables
        ]
        if "labevents" in modality.tables:
            frames.append(_labs(events, cohort))
        collected = pl.concat([f.collect() for f in frames], how="vertical_relaxed")
        excluded = (
            events.filter(pl.col("event_type").is_in(list(modality.tables)))
            .join(cohort.lazy(), on="patient_id", how="inner")
            .filter(pl.col("timestamp") >= pl.col("index_time"))
            .select(pl.len())
            .collect()
            .item()
        )
    frame = collected.to_pandas()
    # Days from whole seconds, divided by numpy after collection: polars' division of the same value differed by
    # one ulp between two ingests of the same files, which made a re-ingested cache differ from the first.
    frame.insert(1, "days_before_index", frame.pop("seconds_before_index").to_numpy(np.float64) / 86400.0)
    return frame, int(excluded)


@contextlib.contextmanager
def _quiet_pyhealth(progress: bool) -> Iterator[None]:
    """PyHealth logs every step at INFO and draws Dask's progress bar on stdout: keep both off our stdout
    (the bar goes to stderr when a progress display is wanted, else nowhere)."""
    logger = logging.getLogger("pyhealth")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sys.stderr if progress else devnull):
            yield
    finally:
        logger.setLevel(level)


def _check_layout(modality: EhrModality) -> None:
    missing = [f for f in REQUIRED_MIMIC4_FILES if not (modality.path / f).exists()]
    for table in modality.tables:
        folder = "icu" if table in {"icustays", "chartevents", "inputevents", "outputevents"} else "hosp"
        if not any((modality.path / folder / f"{table}{ext}").exists() for ext in (".csv.gz", ".csv")):
            missing.append(f"{folder}/{table}.csv.gz")
    if missing:
        raise ClinFuseError(
            f"ehr modality '{modality.name}': MIMIC-IV file(s) {missing} not found under {modality.path}",
            "point path at the MIMIC-IV root (the folder holding hosp/ and icu/) or drop the table from 'tables'",
        )


def _before_index(events: pl.LazyFrame, cohort: pl.DataFrame, event_type: str) -> pl.LazyFrame:
    return (
        events.filter(pl.col("event_type") == event_type)
        .join(cohort.lazy(), on="patient_id", how="inner")
        .filter(pl.col("timestamp").is_not_null() & (pl.col("timestamp") < pl.col("index_time")))
        .with_columns(
            (pl.col("index_time") - pl.col("timestamp")).dt.total_seconds().alias("seconds_before_index")
        )
    )


def _codes(events: pl.LazyFrame, cohort: pl.DataFrame, table: str, column: str, prefix: str) -> pl.LazyFrame:
    code = pl.col(column).str.strip_chars()
    if prefix == "RX":
        code = code.str.to_lowercase()
    return (
        _before_index(events, cohort, table)
        .select(
            pl.col("patient_id"),
            pl.col("seconds_before_index"),
            pl.lit(table).alias("kind"),
            (pl.lit(f"{prefix}:") + code).alias("code"),
            pl.lit(None, dtype=pl.Float64).alias("value"),
            pl.lit(None, dtype=pl.String).alias("unit"),
            pl.col(column).alias("text") if prefix == "RX" else pl.lit(None, dtype=pl.String).alias("text"),
        )
        .filter(pl.col("code").is_not_null())
    )


def _labs(events: pl.LazyFrame, cohort: pl.DataFrame) -> pl.LazyFrame:
    return (
        _before_index(events, cohort, "labevents")
        .select(
            pl.col("patient_id"),
            pl.col("seconds_before_index"),
            pl.lit("labevents").alias("kind"),
            (pl.lit("LAB:") + pl.col("labevents/itemid").str.strip_chars()).alias("code"),
            pl.col("labevents/valuenum").cast(pl.Float64, strict=False).alias("value"),
            pl.col("labevents/valueuom").alias("unit"),
            pl.col("labevents/label").alias("text"),
        )
        .filter(pl.col("value").is_not_null())
    )
