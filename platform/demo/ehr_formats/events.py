"""The demo's EHR events as every rendering times and codes them, read off the MIMIC-IV tables.

Diagnoses and procedures are timed at their admission's discharge (MIMIC-IV codes them then, and PyHealth's
mimic4_ehr.yaml times them so, not at a procedure's chartdate), drugs at their start and labs at their chart time.
OMOP, MEDS and FHIR are rendered from these frames only, so each gives the events the MIMIC-IV reading gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from clinfuse.platform.icd_titles import icd_titles

TIME = "%Y-%m-%d %H:%M:%S"  # naive UTC wall-clock, whole seconds, as the MIMIC-IV tables hold times


@dataclass(frozen=True)
class EhrEvents:
    """The rendered events, one frame per kind, in the MIMIC tables' row order (times as `TIME` strings).

    persons: subject_id, gender (M/F), year_of_birth. visits: subject_id, hadm_id, admittime, dischtime.
    diagnoses, procedures: subject_id, hadm_id, time, code (ICD-10-CM with its dot / ICD-10-PCS), title.
    drugs: subject_id, hadm_id, time, end, code (11-digit NDC), name.
    labs: subject_id, hadm_id, time, itemid, code (LOINC), name, value, unit.
    """

    persons: pd.DataFrame
    visits: pd.DataFrame
    diagnoses: pd.DataFrame
    procedures: pd.DataFrame
    drugs: pd.DataFrame
    labs: pd.DataFrame


def ehr_events(tables: dict[str, pd.DataFrame]) -> EhrEvents:
    """The events of the MIMIC-IV tables built by `clinfuse.platform.demo.mimic.build_mimic4`."""
    patients, admissions = tables["patients"], tables["admissions"]
    discharge = admissions.set_index("hadm_id")["dischtime"]
    persons = pd.DataFrame(
        {
            "subject_id": patients["subject_id"],
            "gender": patients["gender"],
            "year_of_birth": patients["anchor_year"] - patients["anchor_age"],
        }
    )
    visits = admissions[["subject_id", "hadm_id", "admittime", "dischtime"]]
    titles = icd_titles()

    diagnoses_icd = tables["diagnoses_icd"]
    diagnosis_codes = diagnoses_icd["icd_code"].astype(str)
    diagnoses = pd.DataFrame(
        {
            "subject_id": diagnoses_icd["subject_id"],
            "hadm_id": diagnoses_icd["hadm_id"],
            "time": diagnoses_icd["hadm_id"].map(discharge),
            "code": diagnosis_codes.map(dotted_icd10cm),
            "title": [titles.get(f"ICD10CM:{c}", c) for c in diagnosis_codes],
        }
    )
    procedures_icd = tables["procedures_icd"]
    procedures = pd.DataFrame(
        {
            "subject_id": procedures_icd["subject_id"],
            "hadm_id": procedures_icd["hadm_id"],
            "time": procedures_icd["hadm_id"].map(discharge),
            "code": procedures_icd["icd_code"].astype(str),
            "title": [titles.get(f"ICD10PCS:{c}", c) for c in procedures_icd["icd_code"].astype(str)],
        }
    )
    prescriptions = tables["prescriptions"]
    drugs = pd.DataFrame(
        {
            "subject_id": prescriptions["subject_id"],
            "hadm_id": prescriptions["hadm_id"],
            "time": prescriptions["starttime"],
            "end": prescriptions["stoptime"],
            "code": prescriptions["ndc"].astype(str),
            "name": prescriptions["drug"],
        }
    )
    labevents, items = tables["labevents"], tables["d_labitems"].set_index("itemid")
    labs = pd.DataFrame(
        {
            "subject_id": labevents["subject_id"],
            "hadm_id": labevents["hadm_id"],
            "time": labevents["charttime"],
            "itemid": labevents["itemid"],
            "code": labevents["itemid"].map(items["loinc_code"]),
            "name": labevents["itemid"].map(items["label"]),
            "value": labevents["valuenum"].astype(float),
            "unit": labevents["valueuom"],
        }
    )
    return EhrEvents(persons, visits, diagnoses, procedures, drugs, labs)


def dotted_icd10cm(code: str) -> str:
    """An ICD-10-CM code as OMOP and FHIR write it: a dot after the category (3rd character) when longer."""
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 else code
