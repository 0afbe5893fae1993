"""EHR in the MIMIC-IV CSV layout (hosp/, icu/, gzipped) that PyHealth's MIMIC4Dataset reads unchanged.

Each patient has prior admissions before the index time, carrying chronic diagnoses, drugs and labs that
follow the EHR latent, then the index admission that starts at the index time. Everything coded or measured
during the index admission lies after the index time; outcome-related codes there are a leakage trap.
The tables are built first and written second, so that `ehr_formats` can render the same events as OMOP, MEDS
or FHIR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.platform.demo.latent import PatientTruth
from clinfuse.platform.demo.tables import write_csv_deterministic
from clinfuse.platform.demo.vocabulary import (
    BACKGROUND_DIAGNOSES,
    BACKGROUND_DRUGS,
    BACKGROUND_PROCEDURES,
    LAB_ITEMS,
    LEAK_DIAGNOSES,
    PLANTED_DIAGNOSES,
    PLANTED_DRUGS,
    PLANTED_LAB_SHIFTS,
    PLANTED_PROCEDURES,
    LabItem,
)

_TIME = "%Y-%m-%d %H:%M:%S"


# The files of the layout and their columns (given, so that an empty table still has its header).
MIMIC4_FILES: dict[str, str] = {
    "patients": "hosp/patients.csv.gz",
    "admissions": "hosp/admissions.csv.gz",
    "diagnoses_icd": "hosp/diagnoses_icd.csv.gz",
    "procedures_icd": "hosp/procedures_icd.csv.gz",
    "prescriptions": "hosp/prescriptions.csv.gz",
    "labevents": "hosp/labevents.csv.gz",
    "d_labitems": "hosp/d_labitems.csv.gz",
    "icustays": "icu/icustays.csv.gz",
}
_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"),
    "admissions": (
        "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
        "admission_location", "discharge_location", "insurance", "language", "marital_status", "race", "edregtime",
        "edouttime", "hospital_expire_flag",
    ),
    "icustays": ("subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"),
    "diagnoses_icd": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "procedures_icd": ("subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"),
    "prescriptions": (
        "subject_id", "hadm_id", "pharmacy_id", "starttime", "stoptime", "drug_type", "drug", "ndc", "prod_strength",
        "dose_val_rx", "dose_unit_rx", "route",
    ),
    "labevents": (
        "labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id", "charttime", "storetime",
        "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper", "flag", "priority", "comments",
    ),
}  # fmt: skip


@dataclass
class _Tables:
    patients: list[dict] = field(default_factory=list)
    admissions: list[dict] = field(default_factory=list)
    icustays: list[dict] = field(default_factory=list)
    diagnoses_icd: list[dict] = field(default_factory=list)
    procedures_icd: list[dict] = field(default_factory=list)
    prescriptions: list[dict] = field(default_factory=list)
    labevents: list[dict] = field(default_factory=list)


@dataclass
class _Counters:
    hadm: int = 20_000_000
    stay: int = 30_000_000
    lab: int = 1
    specimen: int = 1


def build_mimic4(
    patients: list[PatientTruth], rng: np.random.Generator
) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """The MIMIC-IV tables (by name, as in `MIMIC4_FILES`) of the patients who have an EHR, and per patient the
    planted codes and leaked codes. The other EHR layouts are rendered from these tables."""
    tables, counters, truth = _Tables(), _Counters(), {}
    for patient in patients:
        if not patient.present["ehr"]:
            continue
        truth[patient.patient_id] = _write_patient(patient, tables, counters, rng)
    frames = {name: pd.DataFrame(getattr(tables, name), columns=list(columns)) for name, columns in _COLUMNS.items()}
    frames["d_labitems"] = pd.DataFrame(
        [
            {"itemid": i.itemid, "label": i.label, "fluid": i.fluid, "category": i.category, "loinc_code": i.loinc}
            for i in LAB_ITEMS
        ]
    )
    return frames, truth


def write_mimic4(tables: dict[str, pd.DataFrame], root: Path) -> None:
    """Write the MIMIC-IV tables under `root` (hosp/, icu/), gzipped as PhysioNet ships them."""
    for name, relative in MIMIC4_FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_csv_deterministic(tables[name], root / relative)


def _write_patient(patient: PatientTruth, tables: _Tables, counters: _Counters, rng: np.random.Generator) -> dict:
    sid = int(patient.patient_id)
    severity = patient.ehr_severity
    conditions = [c for c in PLANTED_DIAGNOSES if rng.random() < _sigmoid(-1.0 + 2.5 * severity)]
    tables.patients.append(
        {
            "subject_id": sid,
            "gender": patient.sex,
            "anchor_age": patient.age,
            "anchor_year": patient.index_time.year,
            "anchor_year_group": f"{patient.index_time.year - 1} - {patient.index_time.year + 1}",
            "dod": "",
        }
    )
    n_prior = 1 + min(int(rng.poisson(1.3)), 4)
    days_before = np.sort(rng.uniform(20, 5 * 365, size=n_prior))[::-1]
    for days in days_before:
        admit = patient.index_time - timedelta(days=float(days), hours=float(rng.uniform(0, 12)))
        codes = list(rng.choice(BACKGROUND_DIAGNOSES, size=int(rng.integers(2, 7)), replace=False))
        codes += [c for c in conditions if rng.random() < 0.85]
        procedures = list(rng.choice(BACKGROUND_PROCEDURES, size=int(rng.integers(0, 3)), replace=False))
        if rng.random() < _sigmoid(-2.5 + 1.2 * severity):
            procedures.append(str(rng.choice(PLANTED_PROCEDURES)))
        drugs = [BACKGROUND_DRUGS[i] for i in rng.choice(len(BACKGROUND_DRUGS), size=2, replace=False)]
        drugs += [d for d in PLANTED_DRUGS if rng.random() < _sigmoid(-1.5 + 1.2 * severity)]
        _admission(sid, admit, codes, procedures, drugs, severity, 0.0, tables, counters, rng)

    # Index admission: starts at the index time; its codes and labs are after it and must never be used.
    leaked = [c for c in LEAK_DIAGNOSES if patient.label == 1 and rng.random() < 0.7]
    index_codes = list(rng.choice(BACKGROUND_DIAGNOSES, size=2, replace=False)) + conditions + leaked
    _admission(sid, patient.index_time, index_codes, [], [], severity, 1.0 * patient.label, tables, counters, rng)
    return {"planted_codes": sorted(conditions), "leak_codes": sorted(leaked)}


def _admission(
    sid: int,
    admit: datetime,
    codes: list[str],
    procedures: list[str],
    drugs: list[tuple[str, str, str, str]],
    severity: float,
    outcome_shift: float,
    tables: _Tables,
    counters: _Counters,
    rng: np.random.Generator,
) -> None:
    counters.hadm += 1
    hadm = counters.hadm
    discharge = admit + timedelta(days=float(rng.uniform(1.5, 9.0)))
    tables.admissions.append(
        {
            "subject_id": sid,
            "hadm_id": hadm,
            "admittime": admit.strftime(_TIME),
            "dischtime": discharge.strftime(_TIME),
            "deathtime": "",
            "admission_type": str(rng.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"])),
            "admit_provider_id": f"P{int(rng.integers(10000, 99999))}",
            "admission_location": str(rng.choice(["EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"])),
            "discharge_location": str(rng.choice(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY"])),
            "insurance": str(rng.choice(["Medicare", "Medicaid", "Other"])),
            "language": "ENGLISH",
            "marital_status": str(rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"])),
            "race": str(rng.choice(["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "HISPANIC/LATINO", "OTHER"])),
            "edregtime": "",
            "edouttime": "",
            "hospital_expire_flag": 0,
        }
    )
    if rng.random() < 0.25 + 0.5 * outcome_shift:
        counters.stay += 1
        intime = admit + timedelta(hours=float(rng.uniform(2, 24)))
        los = float(rng.uniform(0.5, 4.0))
        tables.icustays.append(
            {
                "subject_id": sid,
                "hadm_id": hadm,
                "stay_id": counters.stay,
                "first_careunit": "Medical Intensive Care Unit (MICU)",
                "last_careunit": "Medical Intensive Care Unit (MICU)",
                "intime": intime.strftime(_TIME),
                "outtime": (intime + timedelta(days=los)).strftime(_TIME),
                "los": round(los, 4),
            }
        )
    for seq, code in enumerate(codes, start=1):
        tables.diagnoses_icd.append(
            {"subject_id": sid, "hadm_id": hadm, "seq_num": seq, "icd_code": code, "icd_version": 10}
        )
    for seq, code in enumerate(procedures, start=1):
        tables.procedures_icd.append(
            {
                "subject_id": sid,
                "hadm_id": hadm,
                "seq_num": seq,
                "chartdate": (admit + timedelta(days=1)).strftime("%Y-%m-%d"),
                "icd_code": code,
                "icd_version": 10,
            }
        )
    for drug, ndc, dose, unit in drugs:
        start = admit + timedelta(hours=float(rng.uniform(1, 24)))
        tables.prescriptions.append(
            {
                "subject_id": sid,
                "hadm_id": hadm,
                "pharmacy_id": int(rng.integers(10**7, 10**8)),
                "starttime": start.strftime(_TIME),
                "stoptime": (start + timedelta(days=float(rng.uniform(1, 5)))).strftime(_TIME),
                "drug_type": "MAIN",
                "drug": drug,
                "ndc": ndc,
                "prod_strength": f"{dose}{unit} Tab" if unit == "mg" else f"{dose} {unit}/mL",
                "dose_val_rx": dose,
                "dose_unit_rx": unit,
                "route": "PO" if unit == "mg" else "SC",
            }
        )
    for draw in range(int(rng.integers(1, 4))):
        charttime = admit + timedelta(hours=float(2 + 24 * draw + rng.uniform(0, 6)))
        counters.specimen += 1
        for item in LAB_ITEMS:
            if rng.random() < 0.75:
                _lab(sid, hadm, item, charttime, severity, outcome_shift, tables, counters, rng)


def _lab(
    sid: int,
    hadm: int,
    item: LabItem,
    charttime: datetime,
    severity: float,
    outcome_shift: float,
    tables: _Tables,
    counters: _Counters,
    rng: np.random.Generator,
) -> None:
    shift = PLANTED_LAB_SHIFTS.get(item.itemid, 0.0)
    log_value = np.log(item.median) + item.log_sd * rng.normal() + shift * (severity + outcome_shift)
    value = round(float(np.exp(log_value)), 2)
    flag = "abnormal" if (value < item.ref_low or value > item.ref_high) else ""
    tables.labevents.append(
        {
            "labevent_id": counters.lab,
            "subject_id": sid,
            "hadm_id": hadm,
            "specimen_id": counters.specimen,
            "itemid": item.itemid,
            "order_provider_id": "",
            "charttime": charttime.strftime(_TIME),
            "storetime": (charttime + timedelta(hours=1)).strftime(_TIME),
            "value": f"{value:g}",
            "valuenum": value,
            "valueuom": item.unit,
            "ref_range_lower": item.ref_low,
            "ref_range_upper": item.ref_high,
            "flag": flag,
            "priority": "ROUTINE",
            "comments": "",
        }
    )
    counters.lab += 1


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))
