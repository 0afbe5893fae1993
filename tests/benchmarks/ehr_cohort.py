"""The cohort table and a one-modality cohort.yaml for a synthetic EHR export (see docs/cohort-config.md)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml
from ehr_synthetic import SyntheticEhr

COHORT_FILE = "cohort.csv"


def write_cohort_table(ehr: SyntheticEhr, folder: Path) -> Path:
    """cohort.csv in `folder`: patient_id (the person id as text), label, sex, age and index_time."""
    path = folder / COHORT_FILE
    ehr.persons.select(
        pl.col("person_id").cast(pl.String).alias("patient_id"),
        "label",
        pl.when(pl.col("female")).then(pl.lit("F")).otherwise(pl.lit("M")).alias("sex"),
        "age",
        "index_time",
    ).write_csv(path, datetime_format="%Y-%m-%d %H:%M:%S")
    return path


def write_cohort_config(folder: Path, source: str, export: Path) -> Path:
    """cohort-<source>.yaml in `folder` (next to cohort.csv) with one ehr modality reading `export`."""
    config = {
        "name": f"ehr-benchmark-{source}",
        "cohort": {"path": COHORT_FILE, "sex": "sex", "age": "age"},
        "modalities": [{"name": "ehr", "kind": "ehr", "source": source, "path": str(export.relative_to(folder))}],
    }
    path = folder / f"cohort-{source}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
