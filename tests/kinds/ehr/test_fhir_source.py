"""The FHIR bulk-export reader: codings, offsets, values, and every line or resource it leaves out is counted."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources import fhir
from clinfuse.kinds.ehr.sources.base import EVENT_SCHEMA
from clinfuse.kinds.ehr.sources.fhir import FhirSource
from clinfuse.platform.errors import ClinFuseError

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "http://hospital.example/dx"
ALL_KINDS = ("diagnosis", "procedure", "drug", "lab", "vital")


def write(folder: Path, name: str, lines: list[Any]) -> Path:
    """An NDJSON file of `lines` (resources are dumped, strings written as given), gzipped for `.gz` names."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    return path


def read(folder: Path, **fields: Any) -> tuple[pl.DataFrame, dict[str, int]]:
    fields.setdefault("events", ALL_KINDS)
    modality = EhrModality(name="ehr", kind="ehr", source="fhir", path=folder, **fields)
    result = FhirSource().read(modality, folder.parent / "scratch", False)
    return result.events.collect(), result.problems


def condition(codings: list[dict[str, str]], onset: Any = "2020-01-01", patient: str = "p1", **extra: Any) -> dict:
    resource = {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
                "code": {"coding": codings, "text": "concept text"}, **extra}  # fmt: skip
    if onset is not None:
        resource["onsetDateTime"] = onset
    return resource


def observation(code: str = "2160-0", **extra: Any) -> dict:
    return {"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2020-01-01T08:00:00Z", "code": {"coding": [{"system": LOINC, "code": code}]},
            **extra}  # fmt: skip


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return tmp_path / "export"


def test_first_coding_of_a_known_system_wins(export: Path) -> None:
    write(export, "Condition.ndjson", [
        condition([{"system": LOCAL, "code": "X1"}, {"system": SNOMED, "code": "84114007", "display": "Heart failure"},
                   {"system": ICD10CM, "code": "I50.9"}]),
        condition([{"system": ICD10CM, "code": "i50.22"}, {"system": SNOMED, "code": "84114007"}]),
    ])  # fmt: skip
    rows = read(export)[0].to_dicts()
    assert [(r["system"], r["code"], r["raw_system"]) for r in rows] == [("SNOMED", "84114007", None),
                                                                         ("ICD10CM", "I5022", None)]  # fmt: skip
    assert [r["text"] for r in rows] == ["Heart failure", "concept text"]
    assert {r["kind"] for r in rows} == {"diagnosis"}


def test_site_code_systems_make_a_uri_known_and_unknown_ones_keep_their_uri(export: Path) -> None:
    write(export, "Condition.ndjson", [condition([{"system": LOCAL, "code": " X1 "}]), condition([{"code": "Y"}])])
    unknown = read(export)[0]
    assert unknown["system"].to_list() == [None, None]
    assert unknown["raw_system"].to_list() == [LOCAL, "(no system)"]
    assert unknown["code"].to_list() == ["X1", "Y"]
    mapped = read(export, code_systems={LOCAL: "LOCAL-DX"})[0]
    assert mapped["system"].to_list() == ["LOCAL-DX", None]
    assert mapped["raw_system"].to_list() == [None, "(no system)"]


def test_observation_value_unit_and_vital_signs(export: Path) -> None:
    vital_category = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                   "code": "vital-signs"}]}]  # fmt: skip
    write(export, "Observation.ndjson", [
        observation(valueQuantity={"value": 1.2, "unit": " mg/dL ", "code": "mg/dL"}),
        observation("8867-4", category=vital_category, valueQuantity={"value": 80, "code": "/min"}),
        observation("72166-2", valueCodeableConcept={"text": "never smoker"}),
    ])  # fmt: skip
    frame = read(export)[0]
    assert frame.select("kind", "code", "value", "unit").rows() == [
        ("lab", "2160-0", 1.2, "mg/dL"), ("vital", "8867-4", 80.0, "/min"), ("lab", "72166-2", None, None)
    ]  # fmt: skip
    assert frame["time"].to_list() == [datetime(2020, 1, 1, 8)] * 3


@pytest.mark.parametrize(
    ("zone", "written", "expected", "converted"),
    [
        ("UTC", "2020-01-01T10:00:00+02:00", datetime(2020, 1, 1, 8), 1),
        ("Europe/Berlin", "2020-01-01T10:00:00+02:00", datetime(2020, 1, 1, 9), 1),
        ("Europe/Berlin", "2020-01-01T10:00:00+01:00", datetime(2020, 1, 1, 10), 0),
        ("Europe/Berlin", "2020-07-01T10:00:00+02:00", datetime(2020, 7, 1, 10), 0),
        ("America/New_York", "2020-01-01T10:00:00.123456789-05:00", datetime(2020, 1, 1, 10, 0, 0, 123456), 0),
        ("UTC", "2020-01-01T10:00:00Z", datetime(2020, 1, 1, 10), 0),
        ("Europe/Berlin", "2020-01-01T10:00:00", datetime(2020, 1, 1, 10), 0),
        ("UTC", "2020-03-04", datetime(2020, 3, 4), 0),
        ("UTC", "2020-03", datetime(2020, 3, 1), 0),
        ("UTC", "2020", datetime(2020, 1, 1), 0),
    ],
)
def test_times_are_converted_to_the_site_zone(
    export: Path, zone: str, written: str, expected: datetime, converted: int
) -> None:
    write(export, "Condition.ndjson", [condition([{"system": SNOMED, "code": "1"}], onset=written)])
    frame, problems = read(export, timezone=zone)
    assert frame["time"].to_list() == [expected]
    assert problems.get(fhir.CONVERTED, 0) == converted


def test_unparseable_and_missing_times_are_null_and_only_unparseable_is_counted(export: Path) -> None:
    write(export, "Condition.ndjson", [
        condition([{"system": SNOMED, "code": "1"}], onset="2020-13-45"),
        condition([{"system": SNOMED, "code": "2"}], onset=20200101),
        condition([{"system": SNOMED, "code": "3"}], onset=None),
        condition([{"system": SNOMED, "code": "4"}], onset=None, onsetPeriod={"start": "2019-05-06T07:08:09Z"}),
    ])  # fmt: skip
    frame, problems = read(export)
    assert frame["time"].to_list() == [None, None, None, datetime(2019, 5, 6, 7, 8, 9)]
    assert problems == {fhir.UNPARSEABLE: 2}


def test_malformed_lines_are_counted_and_reading_goes_on(export: Path) -> None:
    good = condition([{"system": SNOMED, "code": "1"}])
    write(export, "Condition.ndjson", [good, '{"resourceType": "Condition", "subj', "42", "", "  ", "[1, 2]", good])
    with (export / "Condition.ndjson").open("ab") as handle:
        handle.write(b"\xff\xfe not utf-8\n")
    frame, problems = read(export)
    assert frame.height == 2
    assert problems == {fhir.MALFORMED: 4}


def test_gzipped_files_are_read_and_bad_ones_counted_as_unreadable(export: Path) -> None:
    write(export, "a/Condition.ndjson.gz", [condition([{"system": SNOMED, "code": "1"}])])
    (export / "b.ndjson.gz").write_bytes(b"not gzip at all\n")
    truncated = gzip.compress(b"".join(json.dumps(observation()).encode() + b"\n" for _ in range(50)))
    (export / "c.ndjson.gz").write_bytes(truncated[: len(truncated) // 2])
    frame, problems = read(export)
    assert frame.filter(pl.col("kind") == "diagnosis")["code"].to_list() == ["1"]
    assert problems == {fhir.UNREADABLE: 2}


def test_bundle_lines_are_expanded(export: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": condition([{"system": SNOMED, "code": "1"}])},
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"request": {"method": "DELETE"}},
        {"resource": {"resourceType": "Bundle", "entry": [{"resource": condition([{"system": SNOMED, "code": "2"}])}]}},
    ]}  # fmt: skip
    write(export, "Bundle.ndjson", [bundle])
    frame, problems = read(export)
    assert frame["code"].to_list() == ["1", "2"]
    assert problems == {fhir.NOT_EVENTS + "Patient": 1, fhir.NO_BUNDLE_RESOURCE: 1}


def test_patient_references(export: Path) -> None:
    coding = [{"system": SNOMED, "code": "1"}]
    write(export, "Condition.ndjson", [
        condition(coding, patient="a"),
        {**condition(coding), "subject": {"reference": "urn:uuid:b"}},
        {**condition(coding), "subject": {"reference": "https://fhir.example/Patient/c/_history/2"}},
        {**condition(coding), "subject": None, "patient": {"reference": "Patient/d"}},
        {**condition(coding), "subject": {"reference": "Group/secret-group"}},
        {**condition(coding), "subject": {"identifier": {"value": "secret-mrn"}}},
        {key: value for key, value in condition(coding).items() if key != "subject"},
    ])  # fmt: skip
    frame, problems = read(export)
    assert frame["patient_id"].to_list() == ["a", "b", "c", "d"]
    assert problems == {fhir.NO_PATIENT: 3}
    assert not any("secret" in key for key in problems)


def test_resource_types_not_read_as_events_are_counted_by_type(export: Path) -> None:
    write(export, "Other.ndjson", [
        {"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"},
        {"resourceType": "Encounter", "id": "e1"}, {"resourceType": "free text, not a type"}, {"id": "x"},
    ])  # fmt: skip
    frame, problems = read(export)
    assert frame.height == 0
    assert problems == {fhir.NOT_EVENTS + "Patient": 2, fhir.NOT_EVENTS + "Encounter": 1, fhir.NO_TYPE: 2}


def test_only_configured_event_kinds_are_read(export: Path) -> None:
    medication = {"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p1"}, "authoredOn": "2020",
                  "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1"}]}}  # fmt: skip
    write(export, "x.ndjson", [condition([{"system": SNOMED, "code": "1"}]), observation(), medication])
    frame, problems = read(export, events=("diagnosis",))
    assert frame["kind"].to_list() == ["diagnosis"]
    assert problems == {fhir.NOT_CONFIGURED: 2}


def test_medications(export: Path) -> None:
    rxnorm = {"coding": [{"system": RXNORM, "code": "197361", "display": "amlodipine 5 MG"}]}
    subject = {"subject": {"reference": "Patient/p1"}}
    write(export, "Medication.ndjson", [
        {"resourceType": "MedicationRequest", **subject, "authoredOn": "2020-01-02",
         "medicationCodeableConcept": rxnorm},
        {"resourceType": "MedicationStatement", **subject, "dateAsserted": "2020-01-03",
         "medication": {"concept": rxnorm}},
        {"resourceType": "MedicationAdministration", **subject, "effectivePeriod": {"start": "2020-01-04"},
         "medicationCodeableConcept": rxnorm},
        {"resourceType": "MedicationRequest", **subject, "medicationReference": {"reference": "Medication/m1"}},
        {"resourceType": "MedicationRequest", **subject, "medication": {"reference": {"reference": "Medication/m1"}}},
        {"resourceType": "MedicationRequest", **subject, "medicationCodeableConcept": {"text": "uncoded"}},
    ])  # fmt: skip
    frame, problems = read(export)
    assert frame.select("kind", "system", "code", "text").unique().rows() == [
        ("drug", "RXNORM", "197361", "amlodipine 5 MG")
    ]
    assert frame["time"].to_list() == [datetime(2020, 1, d) for d in (2, 3, 4)]
    assert problems == {fhir.BY_REFERENCE: 2, fhir.NO_CODE: 1}


def test_events_are_written_in_chunks_and_all_come_back(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fhir, "CHUNK_ROWS", 2)
    write(export, "a.ndjson", [condition([{"system": SNOMED, "code": str(i)}]) for i in range(3)])
    write(export, "b/c.ndjson", [condition([{"system": SNOMED, "code": str(i)}]) for i in range(3, 5)])
    frame = read(export)[0]
    assert frame["code"].to_list() == [str(i) for i in range(5)]
    assert len(list((export.parent / "scratch").rglob("*.parquet"))) == 3


def test_schema_is_the_event_schema_even_without_events(export: Path) -> None:
    write(export, "Patient.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    modality = EhrModality(name="ehr", kind="ehr", source="fhir", path=export)
    events = FhirSource().read(modality, export.parent / "scratch", False).events
    assert events.collect_schema() == pl.Schema(EVENT_SCHEMA)
    assert events.collect().height == 0
    write(export, "Condition.ndjson", [condition([{"system": SNOMED, "code": "1"}])])
    assert FhirSource().read(modality, export.parent / "scratch", False).events.collect().schema == pl.Schema(
        EVENT_SCHEMA
    )


def test_layout_needs_an_ndjson_file_anywhere_under_the_path(export: Path) -> None:
    export.mkdir()
    (export / "notes.txt").write_text("not an export")
    modality = EhrModality(name="ehr", kind="ehr", source="fhir", path=export)
    with pytest.raises(ClinFuseError, match=r"no \*\.ndjson"):
        FhirSource().check_layout(modality)
    write(export, "deep/er/Condition.ndjson.gz", [])
    FhirSource().check_layout(modality)
