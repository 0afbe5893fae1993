"""An EHR modality in an online scoring request: the patient's events as JSON records.

Each record is one event of the shared event stream (kinds/ehr/sources/base.py): `time` (ISO 8601; an offset is
converted to the modality's time zone, a time without one is taken as already in it, like the index time), `kind`
(diagnosis, procedure, drug, lab, vital), `system`, `code`, and for labs and vitals `value` and `unit`; `text` is
optional. They are written as ClinFuse's event table (`source: events`) and ingested by the frozen EHR ingest, so
the index-time cut, vocabulary and lab normalisation are those of batch scoring.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources import EVENT_SCHEMA, source_for
from clinfuse.kinds.ehr.sources.event_table import EVENTS_FILE
from clinfuse.kinds.ehr.sources.fhir import parse_time
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.base import NoSourceData

RECORD_FIELDS = ("time", "kind", "system", "code", "value", "unit", "text")
_FIX = 'send a list of {"time", "kind", "system", "code"[, "value", "unit", "text"]} objects (docs/serving.md)'


def ehr_request_cell(config: EhrModality, patient_id: str) -> list[dict[str, Any]]:
    """The patient's events as the export's reader gives them (every time, every kind: the ingest cuts)."""
    with tempfile.TemporaryDirectory(prefix="clinfuse-request-") as scratch:
        events = source_for(config.source).read(config, Path(scratch), progress=False).events
        rows = events.filter(pl.col("patient_id") == patient_id).sort("time", "kind", "system", "code").collect()
    if rows.is_empty():
        raise NoSourceData(f"ehr modality '{config.name}' has no event of the requested patient",
                            f"check the patient id against the export under {config.path}")  # fmt: skip
    records = []
    for row in rows.iter_rows(named=True):
        record = {"time": row["time"].isoformat() if row["time"] else None, "kind": row["kind"],
                  "system": row["system"] or row["raw_system"], "code": row["code"]}  # fmt: skip
        record |= {field: row[field] for field in ("value", "unit", "text") if row[field] is not None}
        records.append(record)
    return records


def write_ehr_request(settings: dict[str, Any], cells: dict[str, Any], folder: Path) -> dict[str, Any]:
    zone = ZoneInfo(EhrModality.model_fields["timezone"].default)
    rows = [_event(pid, record, zone) for pid, cell in cells.items() for record in _records(cell)]
    pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row").write_parquet(folder / EVENTS_FILE)
    return {"path": folder, "source": "events"}


def _records(cell: Any) -> list[dict[str, Any]]:
    if not isinstance(cell, list) or not all(isinstance(r, dict) for r in cell):
        raise ClinFuseError("an EHR cell of the request is not a list of event objects", _FIX)
    return cell


def _event(patient_id: str, record: dict[str, Any], zone: ZoneInfo) -> tuple:
    unknown = set(record) - set(RECORD_FIELDS)
    if unknown:
        raise ClinFuseError(f"an EHR event of the request has unknown field(s) {sorted(unknown)}", _FIX)
    time = record.get("time")
    try:
        moment = parse_time(time, zone)[0] if isinstance(time, str) else None
    except (ValueError, OverflowError):
        raise ClinFuseError("an EHR event time of the request is not ISO 8601", "e.g. 2150-03-01T08:30:00") from None
    value = record.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ClinFuseError("an EHR event value of the request is not a number", _FIX)
    text = {field: (str(record[field]) if record.get(field) is not None else None)
            for field in ("kind", "system", "code", "unit", "text")}  # fmt: skip
    return (patient_id, moment, text["kind"], text["system"], None, text["code"],
            None if value is None else float(value), text["unit"], text["text"])  # fmt: skip
