"""Synthetic EHR events for the EHR source benchmark, generated with whole-array numpy operations.

Each patient has three visits (two in the years before the index time, the third starting shortly before it and
ending after it), and per patient on average 12 diagnoses, 3 procedures, 8 drug exposures and 75 lab results
over 12 LOINC labs, each at a random time inside one of the patient's visits: about 100 events per patient, most
of them before the index time and the rest (in the third visit) after it. The same events are written as OMOP,
MEDS and FHIR by the `ehr_omop`, `ehr_meds` and `ehr_fhir` writers, so the sources can be compared.

Codes are real ICD-10-CM, ICD-10-PCS, NDC and LOINC codes; every code (and every UCUM unit) is one row of
`CONCEPTS`, keyed by an OMOP-style concept id from 2,000,000,001, and events name their code by that id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

FIRST_PERSON_ID = 1_000_001
FIRST_CONCEPT_ID = 2_000_000_001
VISITS_PER_PATIENT = 3
DAY_S = 86_400
_INDEX_RANGE_S = (1_451_606_400, 1_703_980_800)  # index times between 2016-01-01 and 2023-12-31 (UTC)
_THIRD_VISIT_BEFORE_INDEX = 0.75  # share of the third visit's length that lies before the index time

# (code, name) per vocabulary; names are the codes' titles (commas avoided only for readability, CSV quotes them)
DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("I10", "Essential (primary) hypertension"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease"),
    ("I50.22", "Chronic systolic (congestive) heart failure"),
    ("N18.4", "Chronic kidney disease, stage 4 (severe)"),
    ("I48.91", "Unspecified atrial fibrillation"),
    ("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("F32.9", "Major depressive disorder, single episode, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("M54.50", "Low back pain, unspecified"),
    ("Z87.891", "Personal history of nicotine dependence"),
    ("E66.9", "Obesity, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("G47.33", "Obstructive sleep apnea (adult) (pediatric)"),
    ("F41.9", "Anxiety disorder, unspecified"),
    ("E03.9", "Hypothyroidism, unspecified"),
    ("K59.00", "Constipation, unspecified"),
    ("M19.90", "Unspecified osteoarthritis, unspecified site"),
    ("R07.89", "Other chest pain"),
    ("Z79.01", "Long term (current) use of anticoagulants"),
    ("D64.9", "Anemia, unspecified"),
    ("E55.9", "Vitamin D deficiency, unspecified"),
    ("I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("R53.83", "Other fatigue"),
    ("H40.9", "Unspecified glaucoma"),
)
PROCEDURES: tuple[tuple[str, str], ...] = (
    ("BW03ZZZ", "Plain Radiography of Chest"),
    ("B246ZZZ", "Ultrasonography of Right and Left Heart"),
    ("0DJ08ZZ", "Inspection of Upper Intestinal Tract, Via Natural or Artificial Opening Endoscopic"),
    ("3E0336Z", "Introduction of Nutritional Substance into Peripheral Vein, Percutaneous Approach"),
    ("02HV33Z", "Insertion of Infusion Device into Superior Vena Cava, Percutaneous Approach"),
    ("0BH17EZ", "Insertion of Endotracheal Airway into Trachea, Via Natural or Artificial Opening"),
    ("5A1955Z", "Respiratory Ventilation, Greater than 96 Consecutive Hours"),
    ("5A1D70Z", "Performance of Urinary Filtration, Intermittent, Less than 6 Hours Per Day"),
)
DRUGS: tuple[tuple[str, str], ...] = (
    ("00904198861", "Acetaminophen 325 MG Oral Tablet"),
    ("00093505898", "Atorvastatin 40 MG Oral Tablet"),
    ("00172375810", "Lisinopril 10 MG Oral Tablet"),
    ("00008084199", "Pantoprazole 40 MG Delayed Release Oral Tablet"),
    ("63323026201", "Heparin 5000 UNT/ML Injectable Solution"),
    ("00904718059", "Docusate Sodium 100 MG Oral Capsule"),
    ("00054829725", "Furosemide 40 MG Oral Tablet"),
    ("51079025520", "Metoprolol Tartrate 25 MG Oral Tablet"),
    ("00088222033", "Insulin Glargine 100 UNT/ML Injectable Solution"),
)


@dataclass(frozen=True)
class Lab:
    """A LOINC lab with its UCUM unit and a log-normal distribution (median, sd of the log)."""

    code: str
    name: str
    unit: str
    median: float
    log_sd: float
    latent_shift: float = 0.0  # log-units per unit of the outcome latent: the labs that carry the signal


LABS: tuple[Lab, ...] = (
    Lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9, 0.25, 0.35),
    Lab("2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 1.3, 0.3, 0.2),
    Lab("33762-6", "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma", "pg/mL",
        120.0, 0.9, 0.8),
    Lab("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 16.0, 0.3),
    Lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 139.0, 0.02),
    Lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.2, 0.1),
    Lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 105.0, 0.25),
    Lab("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.8, 0.12),
    Lab("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.5, 0.3),
    Lab("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 240.0, 0.3),
    Lab("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 0.4),
    Lab("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.9, 0.12),
)  # fmt: skip


@dataclass(frozen=True)
class EventKind:
    """One event table: its OMOP vocabulary and domain, mean events per patient, and its codes."""

    name: str
    vocabulary_id: str
    domain_id: str
    concept_class_id: str
    per_patient: float
    codes: tuple[tuple[str, str], ...]


KINDS: tuple[EventKind, ...] = (
    EventKind("condition", "ICD10CM", "Condition", "ICD10 code", 12.0, DIAGNOSES),
    EventKind("procedure", "ICD10PCS", "Procedure", "ICD10PCS", 3.0, PROCEDURES),
    EventKind("drug", "NDC", "Drug", "11-digit NDC", 8.0, DRUGS),
    EventKind("measurement", "LOINC", "Measurement", "Lab Test", 75.0, tuple((lab.code, lab.name) for lab in LABS)),
)
UNITS: tuple[str, ...] = tuple(dict.fromkeys(lab.unit for lab in LABS))


def _concepts() -> pl.DataFrame:
    """Every code and unit as a concept row: concept_id, kind, vocabulary_id, domain_id, concept_class_id,
    standard_concept, concept_code, concept_name, unit (the lab's unit; null for other kinds)."""
    rows: list[dict] = []
    for kind in KINDS:
        units = [lab.unit for lab in LABS] if kind.name == "measurement" else [None] * len(kind.codes)
        for (code, name), unit in zip(kind.codes, units, strict=True):
            standard = "S" if kind.vocabulary_id == "LOINC" else None
            rows.append({"kind": kind.name, "vocabulary_id": kind.vocabulary_id, "domain_id": kind.domain_id,
                         "concept_class_id": kind.concept_class_id, "standard_concept": standard,
                         "concept_code": code, "concept_name": name, "unit": unit})  # fmt: skip
    for unit in UNITS:
        rows.append({"kind": "unit", "vocabulary_id": "UCUM", "domain_id": "Unit", "concept_class_id": "Unit",
                     "standard_concept": "S", "concept_code": unit, "concept_name": unit, "unit": None})  # fmt: skip
    return (
        pl.DataFrame(rows)
        .with_row_index("concept_id", offset=FIRST_CONCEPT_ID)
        .with_columns(pl.col("concept_id").cast(pl.Int64))
    )


CONCEPTS = _concepts()


def concept_ids(kind: str) -> np.ndarray:
    return CONCEPTS.filter(pl.col("kind") == kind)["concept_id"].to_numpy()


@dataclass(frozen=True)
class SyntheticEhr:
    """Patients, visits and events of one synthetic export.

    persons: person_id, female, birth_time, index_time, age, label.
    visits: visit_id, person_id, start, end.
    events: per kind name, event_id, person_id, visit_id, concept_id, start, end (drugs only), value (labs only).
    """

    persons: pl.DataFrame
    visits: pl.DataFrame
    events: dict[str, pl.DataFrame]

    @property
    def event_count(self) -> int:
        return sum(len(frame) for frame in self.events.values())

    def events_before_index(self) -> int:
        """Events strictly before their patient's index time: what an ingest should keep."""
        index = self.persons.select("person_id", "index_time")
        before = pl.col("start") < pl.col("index_time")
        return sum(frame.join(index, on="person_id").filter(before).height for frame in self.events.values())


def generate(patients: int, seed: int) -> SyntheticEhr:
    """`patients` synthetic patients, their visits and about 100 events each, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    ids = np.arange(FIRST_PERSON_ID, FIRST_PERSON_ID + patients, dtype=np.int64)
    index_s = rng.integers(*_INDEX_RANGE_S, size=patients)
    age_years = rng.uniform(18.0, 90.0, size=patients)
    latent = rng.standard_normal(patients)
    label = (rng.random(patients) < 1.0 / (1.0 + np.exp(1.2 - 1.5 * latent))).astype(np.int8)
    persons = pl.DataFrame(
        {
            "person_id": ids,
            "female": rng.random(patients) < 0.5,
            "birth_time": _times(index_s - np.round(age_years * 365.25 * DAY_S).astype(np.int64)),
            "index_time": _times(index_s),
            "age": np.floor(age_years).astype(np.int16),
            "label": label,
        }
    )

    # visits: two in the 30 days to 4 years before the index time, the third straddling it
    length_s = np.round(rng.uniform(1.0, 6.0, size=(patients, VISITS_PER_PATIENT)) * DAY_S).astype(np.int64)
    earlier = np.sort(rng.uniform(30.0, 1460.0, size=(patients, VISITS_PER_PATIENT - 1)), axis=1)[:, ::-1]
    start_s = np.empty((patients, VISITS_PER_PATIENT), dtype=np.int64)
    start_s[:, :-1] = index_s[:, None] - np.round(earlier * DAY_S).astype(np.int64)
    start_s[:, -1] = index_s - np.round(_THIRD_VISIT_BEFORE_INDEX * length_s[:, -1]).astype(np.int64)
    start_s, length_s = start_s.ravel(), length_s.ravel()
    visit_ids = np.arange(1, patients * VISITS_PER_PATIENT + 1, dtype=np.int64)
    visits = pl.DataFrame(
        {
            "visit_id": visit_ids,
            "person_id": np.repeat(ids, VISITS_PER_PATIENT),
            "start": _times(start_s),
            "end": _times(start_s + length_s),
        }
    )

    events = {}
    for kind in KINDS:
        owner = np.repeat(np.arange(patients), rng.poisson(kind.per_patient, size=patients))
        visit_row = owner * VISITS_PER_PATIENT + rng.integers(0, VISITS_PER_PATIENT, size=owner.size)
        at_s = start_s[visit_row] + np.floor(rng.random(owner.size) * length_s[visit_row]).astype(np.int64)
        code = rng.choice(len(kind.codes), size=owner.size, p=_zipf(len(kind.codes)))
        columns = {
            "event_id": np.arange(1, owner.size + 1, dtype=np.int64),
            "person_id": ids[owner],
            "visit_id": visit_ids[visit_row],
            "concept_id": concept_ids(kind.name)[code],
            "start": _times(at_s),
        }
        if kind.name == "drug":
            columns["end"] = _times(at_s + rng.integers(1, 31, size=owner.size) * DAY_S)
        if kind.name == "measurement":
            columns["value"] = _lab_values(code, latent[owner], rng)
        events[kind.name] = pl.DataFrame(columns)
    return SyntheticEhr(persons, visits, events)


def _times(seconds: np.ndarray) -> pl.Series:
    return pl.Series((seconds * 1_000_000).astype("datetime64[us]"))


def _zipf(n: int) -> np.ndarray:
    """Code frequencies falling with rank, as in real exports (a few codes are most of the events)."""
    weights = 1.0 / np.arange(1, n + 1) ** 0.8
    return weights / weights.sum()


def _lab_values(lab: np.ndarray, latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    median = np.array([x.median for x in LABS])[lab]
    log_sd = np.array([x.log_sd for x in LABS])[lab]
    shift = np.array([x.latent_shift for x in LABS])[lab]
    values = median * np.exp(log_sd * rng.standard_normal(lab.size) + shift * latent)
    return np.round(values, 2)
