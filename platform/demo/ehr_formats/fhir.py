"""The demo's EHR as a FHIR R4 bulk-data export: one NDJSON file per resource type, one resource per line.

FHIR dateTimes with a time must carry an offset. About 70% are written in UTC (`Z`) and about 30% with another
offset whose wall time is shifted so that the instant stays the same, as exports from sites in several zones
mix them. Which times get which offset follows from a hash of the resource id and field, so no random stream of
the demo is consumed and equal seeds give equal files.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from clinfuse.platform.demo.ehr_formats.events import TIME, ehr_events

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
NDC = "http://hl7.org/fhir/sid/ndc"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OFFSET_SHARE = 77 / 256  # about 30% of times are written with a non-UTC offset
_OFFSETS = tuple(timedelta(minutes=m) for m in (60, 120, -300, -420, 330, 540, -180))
_SEX = {"M": "male", "F": "female"}


def write_fhir(tables: dict[str, pd.DataFrame], root: Path) -> None:
    """Write the MIMIC-IV `tables`' events as Patient, Encounter, Condition, Procedure, MedicationRequest and
    Observation NDJSON files under `root`."""
    events = ehr_events(tables)
    root.mkdir(parents=True, exist_ok=True)
    resources: dict[str, list[dict]] = {
        "Patient": [
            {"resourceType": "Patient", "id": str(sid), "gender": _SEX[sex], "birthDate": str(year)}
            for sid, sex, year in zip(
                events.persons["subject_id"], events.persons["gender"], events.persons["year_of_birth"], strict=True
            )
        ],
        "Encounter": [
            {
                "resourceType": "Encounter",
                "id": f"enc-{hadm}",
                "status": "finished",
                "class": {"system": _ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
                "subject": _patient(sid),
                "period": {"start": instant(f"enc-{hadm}", "start", start), "end": instant(f"enc-{hadm}", "end", end)},
            }
            for sid, hadm, start, end in events.visits[["subject_id", "hadm_id", "admittime", "dischtime"]].itertuples(
                index=False
            )
        ],
        "Condition": [],
        "Procedure": [],
        "MedicationRequest": [],
        "Observation": [],
    }
    for n, row in enumerate(events.diagnoses.itertuples(index=False), start=1):
        rid = f"cond-{n}"
        resources["Condition"].append(
            {
                "resourceType": "Condition",
                "id": rid,
                "category": [{"coding": [{"system": _CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": ICD10CM, "code": row.code, "display": row.title}]},
                "subject": _patient(row.subject_id),
                "encounter": _encounter(row.hadm_id),
                "recordedDate": instant(rid, "recordedDate", row.time),
            }
        )
    for n, row in enumerate(events.procedures.itertuples(index=False), start=1):
        rid = f"proc-{n}"
        resources["Procedure"].append(
            {
                "resourceType": "Procedure",
                "id": rid,
                "status": "completed",
                "code": {"coding": [{"system": ICD10PCS, "code": row.code, "display": row.title}]},
                "subject": _patient(row.subject_id),
                "encounter": _encounter(row.hadm_id),
                "performedDateTime": instant(rid, "performedDateTime", row.time),
            }
        )
    for n, row in enumerate(events.drugs.itertuples(index=False), start=1):
        rid = f"medreq-{n}"
        resources["MedicationRequest"].append(
            {
                "resourceType": "MedicationRequest",
                "id": rid,
                "status": "completed",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": NDC, "code": row.code, "display": row.name}],
                    "text": row.name,
                },
                "subject": _patient(row.subject_id),
                "encounter": _encounter(row.hadm_id),
                "authoredOn": instant(rid, "authoredOn", row.time),
            }
        )
    for n, row in enumerate(events.labs.itertuples(index=False), start=1):
        rid = f"obs-{n}"
        resources["Observation"].append(
            {
                "resourceType": "Observation",
                "id": rid,
                "status": "final",
                "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "laboratory"}]}],
                "code": {"coding": [{"system": LOINC, "code": row.code, "display": row.name}]},
                "subject": _patient(row.subject_id),
                "encounter": _encounter(row.hadm_id),
                "effectiveDateTime": instant(rid, "effectiveDateTime", row.time),
                "valueQuantity": {"value": float(row.value), "unit": row.unit, "system": UCUM, "code": row.unit},
            }
        )
    for resource_type, items in resources.items():
        lines = (json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n" for item in items)
        (root / f"{resource_type}.ndjson").write_text("".join(lines), encoding="utf-8")


def instant(resource_id: str, field: str, wall: str) -> str:
    """The UTC wall-clock time `wall` as a FHIR dateTime: with `Z`, or (for about 30% of resource id and field
    pairs) with another offset and the wall time shifted to it, the same instant either way."""
    utc = datetime.strptime(wall, TIME)
    digest = hashlib.sha256(f"{resource_id}/{field}".encode()).digest()
    if digest[0] >= OFFSET_SHARE * 256:
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    offset = _OFFSETS[digest[1] % len(_OFFSETS)]
    return (utc + offset).replace(tzinfo=timezone(offset)).isoformat()


def _patient(subject_id: int) -> dict:
    return {"reference": f"Patient/{subject_id}"}


def _encounter(hadm_id: int) -> dict:
    return {"reference": f"Encounter/enc-{hadm_id}"}
