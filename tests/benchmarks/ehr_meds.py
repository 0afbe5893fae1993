"""Write a `SyntheticEhr` as a MEDS 0.3.3 dataset with the conventions of the demo's MEDS rendering
(platform/demo/ehr_formats/meds.py): `data/train/0.parquet` (subject_id int64, time timestamp[us], code
`VOCABULARY/CODE`, numeric_value float32, text_value, and the `unit` extension column), a static `Gender/F|M`
and a `MEDS_BIRTH` row per subject, rows sorted by subject and time (static rows first), and metadata/
(codes.parquet, subject_splits.parquet, dataset.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.platform.demo.ehr_formats.meds import CODES_SCHEMA, DATA_SCHEMA, MEDS_VERSION
from ehr_synthetic import CONCEPTS, SyntheticEhr

SPLITS_SCHEMA = pa.schema([("subject_id", pa.int64()), ("split", pa.string())])


def write_meds(ehr: SyntheticEhr, root: Path) -> None:
    """The MEDS dataset under `root` (created)."""
    codes = CONCEPTS.filter(pl.col("kind") != "unit").select(
        "concept_id", (pl.col("vocabulary_id") + "/" + pl.col("concept_code")).alias("code"), "concept_name", "unit"
    )
    events = [
        frame.join(codes, on="concept_id").select(
            pl.col("person_id").alias("subject_id"),
            pl.col("start").alias("time"),
            "code",
            (pl.col("value") if "value" in frame.columns else pl.lit(None)).cast(pl.Float32).alias("numeric_value"),
            "unit",  # the lab's unit; null for other codes
        )
        for frame in ehr.events.values()
    ]
    persons = ehr.persons.select(pl.col("person_id").alias("subject_id"), "female", "birth_time")
    static = [
        persons.select("subject_id", pl.lit(None, pl.Datetime("us")).alias("time"),
                       pl.when(pl.col("female")).then(pl.lit("Gender/F")).otherwise(pl.lit("Gender/M")).alias("code")),
        persons.select("subject_id", pl.col("birth_time").alias("time"), pl.lit("MEDS_BIRTH").alias("code")),
    ]  # fmt: skip
    rows = (
        pl.concat([*static, *events], how="diagonal_relaxed")
        .with_columns(pl.lit(None, pl.String).alias("text_value"))
        .sort("subject_id", "time", "code", nulls_last=False, maintain_order=True)
    )
    (root / "data" / "train").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.select(DATA_SCHEMA.names).to_arrow().cast(DATA_SCHEMA), root / "data" / "train" / "0.parquet")
    described = pl.concat(
        [
            codes.select("code", pl.col("concept_name").alias("description")),
            pl.DataFrame({"code": ["Gender/F", "Gender/M", "MEDS_BIRTH"], "description": ["female", "male", "birth"]}),
        ]
    ).with_columns(pl.lit([], pl.List(pl.String)).alias("parent_codes"))
    pq.write_table(described.sort("code").to_arrow().cast(CODES_SCHEMA), root / "metadata" / "codes.parquet")
    splits = persons.select("subject_id", pl.lit("train").alias("split"))
    pq.write_table(splits.to_arrow().cast(SPLITS_SCHEMA), root / "metadata" / "subject_splits.parquet")
    dataset = {
        "dataset_name": "clinfuse-ehr-benchmark",
        "dataset_version": "1",
        "etl_name": "tests/benchmarks/ehr_meds.py",
        "etl_version": "1",
        "meds_version": MEDS_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (root / "metadata" / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")
