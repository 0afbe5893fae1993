"""An online scoring request (one row per patient) written back as a scoring site: cohort table, each modality's
source in a layout its kind ingests, and cohort.yaml; the frozen ingest and the batch scorer then run unchanged.

Columns: `patient_id` and `index_time` (required), `sex` and `age` (optional), and one column per modality of the
model holding that patient's cell (docs/serving.md); a null or absent cell is a missing modality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from clinfuse.pipelines.registry.bundle import MODALITIES_FILE
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind

REQUIRED_COLUMNS = ("patient_id", "index_time")
DEMOGRAPHIC_COLUMNS = ("sex", "age")
COHORT_FILE = "cohort.csv"
CONFIG_FILE = "cohort.yaml"


def model_modalities(bundle: Path) -> dict[str, dict]:
    """Modality name -> {kind, config} as the model was trained, in the model's order."""
    return json.loads((bundle / MODALITIES_FILE).read_text())


def write_request_site(request: pd.DataFrame, bundle: Path, folder: Path) -> Path:
    """Write the request rows into the empty `folder` as a scoring site; returns its cohort.yaml."""
    modalities = model_modalities(bundle)
    _check_columns(request, modalities)
    ids = request["patient_id"].map(_patient_id)
    if ids.duplicated().any():
        raise ClinFuseError("the request holds a patient twice", "send each patient once per request")
    cohort = pd.DataFrame({"patient_id": ids, "index_time": request["index_time"].map(_index_time)})
    for column in DEMOGRAPHIC_COLUMNS:
        if column in request:
            cohort[column] = request[column].to_numpy()
    cohort.to_csv(folder / COHORT_FILE, index=False)
    config: dict[str, Any] = {"name": "online-request", "cohort": {"path": COHORT_FILE}, "modalities": []}
    config["cohort"] |= {column: column for column in DEMOGRAPHIC_COLUMNS if column in request}
    for name, entry in modalities.items():
        cells = {pid: _parsed(cell) for pid, cell in zip(ids, request.get(name, [None] * len(ids)), strict=True)}
        source = folder / name
        source.mkdir()
        site = get_kind(entry["kind"]).write_request_source(
            entry["config"], {pid: cell for pid, cell in cells.items() if cell is not None}, source
        )
        config["modalities"].append({"name": name, "kind": entry["kind"], **_plain(site)})
    path = folder / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _check_columns(request: pd.DataFrame, modalities: dict[str, dict]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in request]
    if missing:
        raise ClinFuseError(f"the request lacks column(s) {missing}",
                            "send patient_id and index_time for every patient (docs/serving.md)")  # fmt: skip
    known = [*REQUIRED_COLUMNS, *DEMOGRAPHIC_COLUMNS, *modalities]
    unknown = sorted(set(request.columns) - set(known))
    if unknown:
        raise ClinFuseError(f"the request has column(s) {unknown} that the model does not use",
                            f"send only {', '.join(known)}")  # fmt: skip


def _patient_id(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise ClinFuseError("a row of the request has no patient_id", "send a patient_id for every row")
    return str(value).strip()


def _index_time(value: Any) -> str:
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError):
        moment = pd.NaT
    if pd.isna(moment):
        raise ClinFuseError("an index_time of the request is missing or not a date-time",
                            "send index_time as ISO 8601, e.g. 2150-03-01T08:30:00")  # fmt: skip
    return moment.isoformat()


def _parsed(cell: Any) -> Any:
    """A cell as JSON: DataFrames built from JSON records hold objects; CSV or Spark callers send JSON text."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    if isinstance(cell, str) and cell.strip()[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except ValueError:
            raise ClinFuseError("a cell of the request is not valid JSON", "send objects/lists as JSON") from None
    if hasattr(cell, "tolist"):  # numpy arrays from Spark or pandas
        return cell.tolist()
    return cell


def _plain(site: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in site.items()}
