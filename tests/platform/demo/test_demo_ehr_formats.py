"""The demo's EHR renderings (`--ehr-format`): each layout's files and columns, and the same events in every one.

Each rendering is parsed here with pandas / pyarrow / json (not with ClinFuse's readers) into (kind, patient,
UTC instant, code, value) and compared with the MIMIC-IV rendering of the same seed.
"""

from __future__ import annotations

import importlib
import json
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clinfuse.platform.config import load_cohort_config

FORMATS = ("mimic4", "omop", "meds", "fhir")
FHIR_TYPES = ("Patient", "Encounter", "Condition", "Procedure", "MedicationRequest", "Observation")
Event = tuple[str, str, datetime, str, float | None]


@pytest.fixture(scope="module")
def cohorts(ehr_format_demos: dict[str, Path]) -> dict[str, Path]:
    """The session's small cohort per EHR format (tests/conftest.py)."""
    return ehr_format_demos


@pytest.fixture(scope="module")
def mimic_events(cohorts: dict[str, Path]) -> Counter[Event]:
    return _mimic_events(cohorts["mimic4"] / "ehr")


def test_default_is_mimic4_and_the_rest_of_the_cohort_does_not_change(cohorts: dict[str, Path]) -> None:
    hosp = cohorts["mimic4"] / "ehr" / "hosp"
    assert {p.name for p in hosp.iterdir()} >= {"patients.csv.gz", "admissions.csv.gz", "d_labitems.csv.gz"}
    items = pd.read_csv(hosp / "d_labitems.csv.gz", dtype=str)
    assert list(items.columns) == ["itemid", "label", "fluid", "category", "loinc_code"]
    assert items.set_index("itemid").loc["50912", "loinc_code"] == "2160-0"
    for name in FORMATS:  # the EHR stream draws the same whatever the layout: everything else is byte-identical
        for file in ("cohort.csv", "ground_truth.json", "imaging_manifest.csv"):
            assert (cohorts[name] / file).read_bytes() == (cohorts["mimic4"] / file).read_bytes(), (name, file)
        ehr = load_cohort_config(cohorts[name] / "cohort.yaml").modality("ehr")
        assert (ehr.source, ehr.timezone, ehr.path) == (name, "UTC", (cohorts[name] / "ehr").resolve())
    assert not (cohorts["omop"] / "ehr" / "hosp").exists()


def test_omop_tables_and_columns(cohorts: dict[str, Path]) -> None:
    ehr = cohorts["omop"] / "ehr"
    names = {
        "person",
        "visit_occurrence",
        "condition_occurrence",
        "procedure_occurrence",
        "drug_exposure",
        "measurement",
        "concept",
        "death",
    }
    assert {p.name for p in ehr.iterdir()} == {f"{n}.csv" for n in names}
    assert pd.read_csv(ehr / "death.csv").empty
    person = pd.read_csv(ehr / "person.csv")
    assert set(person["gender_concept_id"]) <= {8507, 8532}
    assert person["month_of_birth"].isna().all() and "person_source_value" not in person
    mimic = pd.read_csv(cohorts["mimic4"] / "ehr" / "hosp" / "patients.csv.gz")
    expected = dict(zip(mimic["subject_id"], mimic["anchor_year"] - mimic["anchor_age"], strict=True))
    assert dict(zip(person["person_id"], person["year_of_birth"], strict=True)) == expected
    concept = pd.read_csv(ehr / "concept.csv", dtype={"concept_code": str})
    assert set(concept["vocabulary_id"]) == {"ICD10CM", "ICD10PCS", "NDC", "LOINC", "UCUM"}
    assert concept["concept_id"].tolist() == list(range(2_000_000_001, 2_000_000_001 + len(concept)))
    assert concept[["vocabulary_id", "concept_code"]].apply(tuple, axis=1).is_monotonic_increasing
    icd = concept.loc[concept["vocabulary_id"] == "ICD10CM", "concept_code"]
    assert icd.str.fullmatch(r"[A-Z]\d\d(\.[0-9A-Z]+)?").all() and (icd == "I50.22").any()
    standard = concept.set_index("vocabulary_id")["standard_concept"]
    assert set(standard.loc["LOINC"]) == {"S"} and set(standard.loc["UCUM"]) == {"S"}
    measurement = pd.read_csv(ehr / "measurement.csv")
    for column in (
        "measurement_concept_id",
        "unit_concept_id",
        "value_as_number",
        "unit_source_value",
        "measurement_source_value",
        "visit_occurrence_id",
        "value_as_concept_id",
    ):
        assert column in measurement
    visits = pd.read_csv(ehr / "visit_occurrence.csv")
    assert set(visits["visit_concept_id"]) == {9201}
    pd.to_datetime(visits["visit_start_datetime"], format="%Y-%m-%d %H:%M:%S")


def test_meds_files_and_schema(cohorts: dict[str, Path]) -> None:
    ehr = cohorts["meds"] / "ehr"
    data = pq.read_table(ehr / "data" / "train" / "0.parquet")
    # MEDS core plus the two extension columns, spelled out here: the writer's own constant would be circular
    assert data.schema == pa.schema(
        [
            ("subject_id", pa.int64()),
            ("time", pa.timestamp("us")),
            ("code", pa.string()),
            ("numeric_value", pa.float32()),
            ("unit", pa.string()),
            ("text_value", pa.string()),
        ]
    )
    frame = data.to_pandas()
    ordered = frame.sort_values(["subject_id", "time", "code"], na_position="first", kind="stable")
    assert frame.index.equals(ordered.index)
    subjects = frame["subject_id"].nunique()
    assert (frame["code"] == "MEDS_BIRTH").sum() == subjects
    gender = frame[frame["code"].str.startswith("Gender/")]
    assert len(gender) == subjects and gender["time"].isna().all()
    assert frame.loc[~frame["code"].str.startswith("LOINC/"), ["numeric_value", "unit"]].isna().all().all()
    assert {"ICD10CM/I50.22", "ICD10PCS/5A1955Z", "LOINC/2160-0"} <= set(frame["code"])
    assert frame["code"].str.fullmatch(r"ICD10CM/[A-Z]\d\d(\.[0-9A-Z]+)?|(?!ICD10CM/).*").all()
    assert frame.loc[frame["code"].str.startswith("NDC/"), "code"].str.fullmatch(r"NDC/\d{11}").all()
    splits = pq.read_table(ehr / "metadata" / "subject_splits.parquet")
    assert splits.schema == pa.schema([("subject_id", pa.int64()), ("split", pa.string())])
    assert set(splits.column("split").to_pylist()) == {"train"}
    codes = pq.read_table(ehr / "metadata" / "codes.parquet")
    assert codes.schema.field("parent_codes").type == pa.list_(pa.string())
    assert set(codes.column("code").to_pylist()) == set(frame["code"])
    dataset = json.loads((ehr / "metadata" / "dataset.json").read_text())
    assert dataset["meds_version"] == "0.3.3"
    assert {"dataset_name", "dataset_version", "etl_name", "etl_version", "created_at"} <= dataset.keys()


def test_fhir_files_validate_as_r4b_and_mix_offsets(cohorts: dict[str, Path]) -> None:
    ehr = cohorts["fhir"] / "ehr"
    assert {p.name for p in ehr.iterdir()} == {f"{t}.ndjson" for t in FHIR_TYPES}
    offsets = Counter()
    for resource_type in FHIR_TYPES:
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)
        lines = (ehr / f"{resource_type}.ndjson").read_text().splitlines()
        assert lines
        for line in lines:
            resource = model.model_validate_json(line)
            assert resource.get_resource_type() == resource_type
            for stamp in _times(json.loads(line)):
                offsets["Z" if stamp.endswith("Z") else "other"] += 1
    share = offsets["other"] / offsets.total()
    assert 0.2 < share < 0.4, offsets
    patient = json.loads((ehr / "Patient.ndjson").read_text().splitlines()[0])
    assert set(patient) == {"resourceType", "id", "gender", "birthDate"} and len(patient["birthDate"]) == 4


@pytest.mark.parametrize("name", FORMATS[1:])
def test_every_rendering_carries_the_mimic_events(name: str, cohorts: dict[str, Path], mimic_events) -> None:
    events = {"omop": _omop_events, "meds": _meds_events, "fhir": _fhir_events}[name](cohorts[name] / "ehr")
    per_kind = Counter(kind for kind, *_ in events.elements())
    assert per_kind == Counter(kind for kind, *_ in mimic_events.elements())
    assert set(per_kind) == {"diagnosis", "procedure", "drug", "lab"}
    assert events == mimic_events


def test_unknown_ehr_format_is_a_clean_cli_error(clinfuse_exe: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(clinfuse_exe), "demo-data", "--out", str(tmp_path / "c"), "--ehr-format", "nonsense"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--ehr-format" in result.stderr and "mimic4" in result.stderr and "fhir" in result.stderr
    assert not (tmp_path / "c").exists()


def _mimic_events(root: Path) -> Counter[Event]:
    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(root / "hosp" / f"{name}.csv.gz", dtype={"icd_code": str, "ndc": str, "loinc_code": str})

    discharge = read("admissions").set_index("hadm_id")["dischtime"]
    loinc = read("d_labitems").set_index("itemid")["loinc_code"]
    events: Counter[Event] = Counter()
    for kind, table in (("diagnosis", "diagnoses_icd"), ("procedure", "procedures_icd")):
        frame = read(table)
        events.update(
            (kind, str(s), _naive(discharge[h]), c, None)
            for s, h, c in zip(frame["subject_id"], frame["hadm_id"], frame["icd_code"], strict=True)
        )
    drugs = read("prescriptions")
    events.update(
        ("drug", str(s), _naive(t), c, None)
        for s, t, c in zip(drugs["subject_id"], drugs["starttime"], drugs["ndc"], strict=True)
    )
    labs = read("labevents")
    events.update(
        ("lab", str(s), _naive(t), loinc[i], float(v))
        for s, t, i, v in zip(labs["subject_id"], labs["charttime"], labs["itemid"], labs["valuenum"], strict=True)
    )
    return events


def _omop_events(root: Path) -> Counter[Event]:
    concept = pd.read_csv(root / "concept.csv", dtype={"concept_code": str}).set_index("concept_id")["concept_code"]
    events: Counter[Event] = Counter()
    conditions = pd.read_csv(root / "condition_occurrence.csv", dtype={"condition_source_value": str})
    assert (conditions["condition_source_value"] == conditions["condition_source_concept_id"].map(concept)).all()
    events.update(
        ("diagnosis", str(p), _naive(t), c.replace(".", ""), None)
        for p, t, c in zip(
            conditions["person_id"],
            conditions["condition_start_datetime"],
            conditions["condition_source_value"],
            strict=True,
        )
    )
    procedures = pd.read_csv(root / "procedure_occurrence.csv", dtype={"procedure_source_value": str})
    events.update(
        ("procedure", str(p), _naive(t), concept[c], None)
        for p, t, c in zip(
            procedures["person_id"],
            procedures["procedure_datetime"],
            procedures["procedure_source_concept_id"],
            strict=True,
        )
    )
    drugs = pd.read_csv(root / "drug_exposure.csv")
    events.update(
        ("drug", str(p), _naive(t), concept[c], None)
        for p, t, c in zip(
            drugs["person_id"], drugs["drug_exposure_start_datetime"], drugs["drug_source_concept_id"], strict=True
        )
    )
    labs = pd.read_csv(root / "measurement.csv")
    assert (labs["unit_concept_id"].map(concept) == labs["unit_source_value"]).all()
    events.update(
        ("lab", str(p), _naive(t), concept[c], float(v))
        for p, t, c, v in zip(
            labs["person_id"],
            labs["measurement_datetime"],
            labs["measurement_concept_id"],
            labs["value_as_number"],
            strict=True,
        )
    )
    return events


def _meds_events(root: Path) -> Counter[Event]:
    kinds = {"ICD10CM": "diagnosis", "ICD10PCS": "procedure", "NDC": "drug", "LOINC": "lab"}
    data = pq.read_table(root / "data" / "train" / "0.parquet").to_pylist()
    events: Counter[Event] = Counter()
    for row in data:
        vocabulary, _, code = row["code"].partition("/")
        if vocabulary not in kinds:
            assert row["code"] == "MEDS_BIRTH" or vocabulary == "Gender"
            continue
        # float32 holds the 2-decimal lab values; its shortest repr is the value the MIMIC table wrote
        value = None if row["numeric_value"] is None else float(str(np.float32(row["numeric_value"])))
        events[
            (
                kinds[vocabulary],
                str(row["subject_id"]),
                row["time"],
                code.replace(".", "") if vocabulary == "ICD10CM" else code,
                value,
            )
        ] += 1
    return events


def _fhir_events(root: Path) -> Counter[Event]:
    def resources(resource_type: str) -> list[dict]:
        return [json.loads(line) for line in (root / f"{resource_type}.ndjson").read_text().splitlines()]

    events: Counter[Event] = Counter()
    for kind, resource_type, concept, field in (
        ("diagnosis", "Condition", "code", "recordedDate"),
        ("procedure", "Procedure", "code", "performedDateTime"),
        ("drug", "MedicationRequest", "medicationCodeableConcept", "authoredOn"),
        ("lab", "Observation", "code", "effectiveDateTime"),
    ):
        for resource in resources(resource_type):
            code = resource[concept]["coding"][0]["code"]
            assert kind != "diagnosis" or len(code) <= 3 or code[3] == ".", code
            value = resource["valueQuantity"]["value"] if kind == "lab" else None
            patient = resource["subject"]["reference"].removeprefix("Patient/")
            events[
                (kind, patient, _utc(resource[field]), code.replace(".", "") if kind == "diagnosis" else code, value)
            ] += 1
    return events


def _naive(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def _utc(text: str) -> datetime:
    """A FHIR dateTime with an offset as a naive UTC datetime."""
    stamp = datetime.fromisoformat(text)
    assert stamp.tzinfo is not None, text
    return stamp.astimezone(UTC).replace(tzinfo=None)


def _times(resource: dict) -> list[str]:
    """The dateTimes with a time of a resource the demo writes."""
    stamps = [resource.get(k) for k in ("recordedDate", "performedDateTime", "authoredOn", "effectiveDateTime")]
    stamps += list(resource.get("period", {}).values())
    return [s for s in stamps if s]
