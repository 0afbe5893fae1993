"""A table modality in an online scoring request: one JSON object of feature -> number per patient.

The request is written back as the table layout the model was trained on (wide, or long with its feature and value
columns), so the frozen ingest cleans and aligns it exactly as a batch export.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.kinds.table.config import TableModality
from clinfuse.kinds.table.source import read_table
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.base import NoSourceData

REQUEST_FILE = "table.parquet"
# A request without this modality still needs a readable table: one row without a patient id, which the ingest
# drops and counts, so the modality holds none of the request's patients.
_NO_PATIENT = ""


def table_request_cell(config: TableModality, patient_id: str) -> dict[str, float | None]:
    """The patient's cleaned features (missing values as null), as read by the batch ingest."""
    frame, _ = read_table(config)
    if patient_id not in frame.index:
        raise NoSourceData(f"table modality '{config.name}' has no row for the requested patient",
                            f"check the patient id against {config.path.name}")  # fmt: skip
    row = frame.loc[patient_id]
    return {str(name): (None if math.isnan(value) else float(value)) for name, value in row.items()}


def write_table_request(settings: dict[str, Any], cells: dict[str, Any], folder: Path) -> dict[str, Any]:
    id_column = settings.get("patient_id", "patient_id")
    rows = {pid: _features(cell) for pid, cell in cells.items()} or {_NO_PATIENT: {}}
    if settings.get("layout", "wide") == "long":
        feature, value = settings.get("feature_column", "feature"), settings.get("value_column", "value")
        records = [{id_column: pid, feature: name, value: v} for pid, row in rows.items() for name, v in row.items()]
        frame = pd.DataFrame(records or [{id_column: _NO_PATIENT, feature: "none", value: math.nan}])
    else:
        frame = pd.DataFrame.from_dict(rows, orient="index", dtype="float64")
        frame.insert(0, id_column, list(rows))
        if frame.shape[1] == 1:
            frame["none"] = math.nan  # a table needs a feature column to be read; no model feature is named so
    path = folder / REQUEST_FILE
    # pyarrow from the column arrays: pandas' parquet writer spends ~0.5 s on 1,000 columns' metadata
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    pq.write_table(pa.table(columns), path)
    return {"path": path}


def _features(cell: Any) -> dict[str, float]:
    if not isinstance(cell, dict):
        raise ClinFuseError(f"a table cell of the request is a {type(cell).__name__}, not an object",
                            'send {"FEATURE": number, ...} per patient (docs/serving.md)')  # fmt: skip
    features = {}
    for name, value in cell.items():
        if value is None:
            features[str(name)] = math.nan
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ClinFuseError(f"table feature '{name}' of the request is not a number",
                                "send numbers (or null for a missing value)")  # fmt: skip
        else:
            features[str(name)] = float(value)
    return features
