"""The demo's EHR as a MEDS 0.3.3 dataset: parquet shards under data/, with metadata/.

Codes follow the convention of MEDS datasets made from OMOP (meds_etl_omop, EHRSHOT): `VOCABULARY/CODE`, e.g.
`ICD10CM/I50.22`, `NDC/00054829725`, `LOINC/2160-0`, with the lab's unit in a `unit` extension column. As real
exports do, each subject also has a `MEDS_BIRTH` event and a static (timeless) `Gender/M` or `Gender/F` event.
The demo has no split of its own (the cohort is split when trained), so every subject is in `train`.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.platform.demo.ehr_formats.events import TIME, ehr_events

MEDS_VERSION = "0.3.3"
CREATED_AT = "2025-01-01T00:00:00"  # fixed, so that equal seeds give equal files
DATA_SCHEMA = pa.schema(
    [
        ("subject_id", pa.int64()),
        ("time", pa.timestamp("us")),
        ("code", pa.string()),
        ("numeric_value", pa.float32()),
        ("unit", pa.string()),
        ("text_value", pa.string()),
    ]
)
CODES_SCHEMA = pa.schema([("code", pa.string()), ("description", pa.string()), ("parent_codes", pa.list_(pa.string()))])
_ROWS_SCHEMA = DATA_SCHEMA.append(pa.field("description", pa.string()))  # the data, with what codes.parquet says
_SPLITS_SCHEMA = pa.schema([("subject_id", pa.int64()), ("split", pa.string())])
_SEX = {"M": "male", "F": "female"}


def write_meds(tables: dict[str, pd.DataFrame], root: Path) -> None:
    """Write the MIMIC-IV `tables`' events as data/train/0.parquet and metadata/ (codes, subject_splits,
    dataset.json) under `root`."""
    events = ehr_events(tables)
    persons, labs = events.persons, events.labs
    no_time = pd.Series(pd.NaT, index=persons.index, dtype="datetime64[us]")  # static events have no time
    birth = pd.to_datetime(persons["year_of_birth"].astype(str) + "-01-01")
    parts = [
        _part(persons["subject_id"], no_time, "Gender/" + persons["gender"], persons["gender"].map(_SEX)),
        _part(persons["subject_id"], birth, "MEDS_BIRTH", "birth"),
        _part(events.diagnoses["subject_id"], _times(events.diagnoses), "ICD10CM/" + events.diagnoses["code"],
              events.diagnoses["title"]),
        _part(events.procedures["subject_id"], _times(events.procedures), "ICD10PCS/" + events.procedures["code"],
              events.procedures["title"]),
        _part(events.drugs["subject_id"], _times(events.drugs), "NDC/" + events.drugs["code"], events.drugs["name"]),
        _part(labs["subject_id"], _times(labs), "LOINC/" + labs["code"], labs["name"], labs["value"], labs["unit"]),
    ]  # fmt: skip
    rows = pa.concat_tables(parts)
    keys = rows.select(["subject_id", "time", "code"]).to_pandas()  # static (timeless) events first, stable
    rows = rows.take(keys.sort_values(list(keys.columns), na_position="first", kind="stable").index.to_numpy())

    (root / "data" / "train").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    _write(rows.select(DATA_SCHEMA.names), root / "data" / "train" / "0.parquet")
    codes = rows.select(["code", "description"]).to_pandas().drop_duplicates("code").sort_values("code")
    codes["parent_codes"] = [[] for _ in range(len(codes))]
    _write(pa.Table.from_pandas(codes, schema=CODES_SCHEMA, preserve_index=False), root / "metadata" / "codes.parquet")
    splits = pd.DataFrame({"subject_id": persons["subject_id"], "split": "train"})
    _write(
        pa.Table.from_pandas(splits, schema=_SPLITS_SCHEMA, preserve_index=False),
        root / "metadata" / "subject_splits.parquet",
    )
    dataset = {
        "dataset_name": "clinfuse-demo",
        "dataset_version": "1",
        "etl_name": "clinfuse demo-data",
        "etl_version": version("clinfuse"),
        "meds_version": MEDS_VERSION,
        "created_at": CREATED_AT,
    }
    (root / "metadata" / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")


def _part(
    subject_id: pd.Series,
    time: pd.Series,
    code: pd.Series | str,
    description: pd.Series | str,
    value: pd.Series | float = float("nan"),
    unit: pd.Series | None = None,
) -> pa.Table:
    """Data rows (numeric_value and unit null unless given, text_value null) with the code's description."""
    frame = pd.DataFrame(
        {
            "subject_id": subject_id,
            "time": time,
            "code": code,
            "numeric_value": value,
            "unit": unit,
            "text_value": None,
            "description": description,
        }
    )
    return pa.Table.from_pandas(frame, schema=_ROWS_SCHEMA, preserve_index=False)


def _times(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["time"], format=TIME)


def _write(table: pa.Table, path: Path) -> None:
    """One parquet file without pandas metadata, in one row group, so equal tables give equal bytes."""
    pq.write_table(table.replace_schema_metadata(None), path, compression="zstd", row_group_size=max(1, len(table)))
