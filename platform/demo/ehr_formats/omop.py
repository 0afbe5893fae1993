"""The demo's EHR as OMOP CDM 5.4 CSV tables, the columns PyHealth's OMOPDataset and ClinFuse's reader use.

Source codes are unmapped (concept_id 0 for the standard concepts) and carried by source concepts in a local
`concept.csv` (ids from 2000000001, the CDM's range for local concepts), as a site's ETL leaves codes it has
not mapped yet. Labs are the exception: LOINC is standard, so measurement_concept_id is the LOINC concept.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from clinfuse.platform.demo.ehr_formats.events import EhrEvents, ehr_events
from clinfuse.platform.demo.tables import write_csv_deterministic

LOCAL_CONCEPT_START = 2_000_000_001
EHR_RECORD = 32817  # type concept "EHR"
INPATIENT_VISIT = 9201
GENDER_CONCEPTS = {"M": 8507, "F": 8532}
# vocabulary_id -> (domain_id, concept_class_id, standard_concept)
_VOCABULARIES = {
    "ICD10CM": ("Condition", "ICD10 code", ""),
    "ICD10PCS": ("Procedure", "ICD10PCS", ""),
    "NDC": ("Drug", "11-digit NDC", ""),
    "LOINC": ("Measurement", "Lab Test", "S"),
    "UCUM": ("Unit", "Unit", "S"),
}
_DEATH_COLUMNS = (
    "person_id",
    "death_date",
    "death_datetime",
    "death_type_concept_id",
    "cause_concept_id",
    "cause_source_value",
    "cause_source_concept_id",
)


def write_omop(tables: dict[str, pd.DataFrame], root: Path) -> None:
    """Write the MIMIC-IV `tables`' events as person, visit_occurrence, condition/procedure_occurrence,
    drug_exposure, measurement, concept and an empty death table (PyHealth's OMOPDataset always loads it), CSV
    files under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    events = ehr_events(tables)
    concepts = _concepts(events)
    keys = zip(concepts["vocabulary_id"], concepts["concept_code"], strict=True)
    ids = dict(zip(keys, concepts["concept_id"], strict=True))

    def concept_ids(vocabulary: str, codes: pd.Series) -> list[int]:
        return [ids[(vocabulary, code)] for code in codes]

    persons, visits = events.persons, events.visits
    omop = {
        "person": pd.DataFrame(
            {
                "person_id": persons["subject_id"],
                "gender_concept_id": persons["gender"].map(GENDER_CONCEPTS),
                "year_of_birth": persons["year_of_birth"],
                "month_of_birth": "",
                "day_of_birth": "",
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
            }
        ),
        "visit_occurrence": pd.DataFrame(
            {
                "visit_occurrence_id": visits["hadm_id"],
                "person_id": visits["subject_id"],
                "visit_concept_id": INPATIENT_VISIT,
                "visit_start_date": visits["admittime"].str[:10],
                "visit_start_datetime": visits["admittime"],
                "visit_end_date": visits["dischtime"].str[:10],
                "visit_end_datetime": visits["dischtime"],
                "visit_type_concept_id": EHR_RECORD,
            }
        ),
        "condition_occurrence": pd.DataFrame(
            {
                "condition_occurrence_id": range(1, len(events.diagnoses) + 1),
                "person_id": events.diagnoses["subject_id"],
                "condition_concept_id": 0,
                "condition_start_date": events.diagnoses["time"].str[:10],
                "condition_start_datetime": events.diagnoses["time"],
                "condition_end_date": "",
                "condition_end_datetime": "",
                "condition_type_concept_id": EHR_RECORD,
                "visit_occurrence_id": events.diagnoses["hadm_id"],
                "condition_source_value": events.diagnoses["code"],
                "condition_source_concept_id": concept_ids("ICD10CM", events.diagnoses["code"]),
            }
        ),
        "procedure_occurrence": pd.DataFrame(
            {
                "procedure_occurrence_id": range(1, len(events.procedures) + 1),
                "person_id": events.procedures["subject_id"],
                "procedure_concept_id": 0,
                "procedure_date": events.procedures["time"].str[:10],
                "procedure_datetime": events.procedures["time"],
                "procedure_type_concept_id": EHR_RECORD,
                "visit_occurrence_id": events.procedures["hadm_id"],
                "procedure_source_value": events.procedures["code"],
                "procedure_source_concept_id": concept_ids("ICD10PCS", events.procedures["code"]),
            }
        ),
        "drug_exposure": pd.DataFrame(
            {
                "drug_exposure_id": range(1, len(events.drugs) + 1),
                "person_id": events.drugs["subject_id"],
                "drug_concept_id": 0,
                "drug_exposure_start_date": events.drugs["time"].str[:10],
                "drug_exposure_start_datetime": events.drugs["time"],
                "drug_exposure_end_date": events.drugs["end"].str[:10],
                "drug_exposure_end_datetime": events.drugs["end"],
                "drug_type_concept_id": EHR_RECORD,
                "visit_occurrence_id": events.drugs["hadm_id"],
                "drug_source_value": events.drugs["name"],
                "drug_source_concept_id": concept_ids("NDC", events.drugs["code"]),
            }
        ),
        "measurement": pd.DataFrame(
            {
                "measurement_id": range(1, len(events.labs) + 1),
                "person_id": events.labs["subject_id"],
                "measurement_concept_id": concept_ids("LOINC", events.labs["code"]),
                "measurement_date": events.labs["time"].str[:10],
                "measurement_datetime": events.labs["time"],
                "measurement_type_concept_id": EHR_RECORD,
                "value_as_number": events.labs["value"],
                "value_as_concept_id": "",
                "unit_concept_id": concept_ids("UCUM", events.labs["unit"]),
                "visit_occurrence_id": events.labs["hadm_id"],
                "measurement_source_value": events.labs["itemid"],
                "unit_source_value": events.labs["unit"],
            }
        ),
        "concept": concepts,
        "death": pd.DataFrame(columns=list(_DEATH_COLUMNS)),
    }
    for name, table in omop.items():
        write_csv_deterministic(table, root / f"{name}.csv")


def _concepts(events: EhrEvents) -> pd.DataFrame:
    """One local concept per (vocabulary, code) the events use, ids assigned in (vocabulary_id, code) order."""
    named = {("ICD10CM", c): t for c, t in zip(events.diagnoses["code"], events.diagnoses["title"], strict=True)}
    named |= {("ICD10PCS", c): t for c, t in zip(events.procedures["code"], events.procedures["title"], strict=True)}
    named |= {("NDC", c): name for c, name in zip(events.drugs["code"], events.drugs["name"], strict=True)}
    named |= {("LOINC", c): name for c, name in zip(events.labs["code"], events.labs["name"], strict=True)}
    named |= {("UCUM", unit): unit for unit in events.labs["unit"]}
    rows = []
    for offset, (vocabulary, code) in enumerate(sorted(named)):
        domain, concept_class, standard = _VOCABULARIES[vocabulary]
        rows.append(
            {
                "concept_id": LOCAL_CONCEPT_START + offset,
                "concept_name": named[(vocabulary, code)],
                "domain_id": domain,
                "vocabulary_id": vocabulary,
                "concept_class_id": concept_class,
                "standard_concept": standard,
                "concept_code": code,
                "valid_start_date": "1970-01-01",
                "valid_end_date": "2099-12-31",
                "invalid_reason": "",
            }
        )
    columns = [
        "concept_id",
        "concept_name",
        "domain_id",
        "vocabulary_id",
        "concept_class_id",
        "standard_concept",
        "concept_code",
        "valid_start_date",
        "valid_end_date",
        "invalid_reason",
    ]
    return pd.DataFrame(rows, columns=columns)
