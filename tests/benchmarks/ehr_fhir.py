"""Write a `SyntheticEhr` as an R4 bulk export with the conventions of the demo's FHIR rendering
(platform/demo/ehr_formats/fhir.py): one NDJSON file per resource type (Patient, Encounter, Condition, Procedure,
MedicationRequest, Observation), codings by system URI, times in UTC with `Z`. Resources are JSON-encoded by
polars a chunk of rows at a time and appended to the file, so the writer never holds a whole file's text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
from ehr_synthetic import CONCEPTS, SyntheticEhr

CHUNK_ROWS = 200_000
SYSTEM_URIS = {
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10PCS": "http://www.cms.gov/Medicare/Coding/ICD10",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "LOINC": "http://loinc.org",
}
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INSTANT = "%Y-%m-%dT%H:%M:%SZ"  # the export's times are UTC


def write_fhir(ehr: SyntheticEhr, root: Path) -> None:
    """The NDJSON files under `root` (created)."""
    root.mkdir(parents=True, exist_ok=True)
    _ndjson(ehr.persons, root / "Patient.ndjson", _patient)
    _ndjson(ehr.visits, root / "Encounter.ndjson", _encounter)
    codes = CONCEPTS.filter(pl.col("kind") != "unit").select(
        "concept_id",
        pl.col("vocabulary_id").replace_strict(SYSTEM_URIS).alias("system"),
        pl.col("concept_code").alias("code"),
        pl.col("concept_name").alias("display"),
        "unit",
    )
    for kind, resource_type, encode in (
        ("condition", "Condition", _condition),
        ("procedure", "Procedure", _procedure),
        ("drug", "MedicationRequest", _medication_request),
        ("measurement", "Observation", _observation),
    ):
        rows = ehr.events[kind].join(codes, on="concept_id").sort("event_id")
        _ndjson(rows, root / f"{resource_type}.ndjson", encode)


def _ndjson(frame: pl.DataFrame, path: Path, resource: Callable[[], pl.Expr]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for chunk in frame.iter_slices(CHUNK_ROWS):
            lines = chunk.select(resource().struct.json_encode())[:, 0]
            handle.write("\n".join(lines))
            handle.write("\n")


def _id(prefix: str) -> pl.Expr:
    return pl.lit(prefix) + pl.col("event_id").cast(pl.String)


def _subject() -> pl.Expr:
    return pl.struct(reference=pl.lit("Patient/") + pl.col("person_id").cast(pl.String))


def _encounter_reference() -> pl.Expr:
    return pl.struct(reference=pl.lit("Encounter/enc-") + pl.col("visit_id").cast(pl.String))


def _category(system: str, code: str) -> pl.Expr:
    return pl.concat_list([pl.struct(coding=pl.concat_list([pl.struct(system=pl.lit(system), code=pl.lit(code))]))])


def _concept() -> pl.Expr:
    return pl.struct(coding=pl.concat_list([pl.struct("system", "code", "display")]))


def _instant(column: str) -> pl.Expr:
    return pl.col(column).dt.strftime(INSTANT)


def _patient() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("Patient"),
        id=pl.col("person_id").cast(pl.String),
        gender=pl.when(pl.col("female")).then(pl.lit("female")).otherwise(pl.lit("male")),
        birthDate=pl.col("birth_time").dt.strftime("%Y-%m-%d"),
    )


def _encounter() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("Encounter"),
        id=pl.lit("enc-") + pl.col("visit_id").cast(pl.String),
        status=pl.lit("finished"),
        **{"class": pl.struct(system=pl.lit(ACT_CODE), code=pl.lit("IMP"), display=pl.lit("inpatient encounter"))},
        subject=_subject(),
        period=pl.struct(start=_instant("start"), end=_instant("end")),
    )


def _condition() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("Condition"),
        id=_id("cond-"),
        category=_category(CONDITION_CATEGORY, "encounter-diagnosis"),
        code=_concept(),
        subject=_subject(),
        encounter=_encounter_reference(),
        recordedDate=_instant("start"),
    )


def _procedure() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("Procedure"),
        id=_id("proc-"),
        status=pl.lit("completed"),
        code=_concept(),
        subject=_subject(),
        encounter=_encounter_reference(),
        performedDateTime=_instant("start"),
    )


def _medication_request() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("MedicationRequest"),
        id=_id("medreq-"),
        status=pl.lit("completed"),
        intent=pl.lit("order"),
        medicationCodeableConcept=pl.struct(
            coding=pl.concat_list([pl.struct("system", "code", "display")]), text=pl.col("display")
        ),
        subject=_subject(),
        encounter=_encounter_reference(),
        authoredOn=_instant("start"),
    )


def _observation() -> pl.Expr:
    return pl.struct(
        resourceType=pl.lit("Observation"),
        id=_id("obs-"),
        status=pl.lit("final"),
        category=_category(OBSERVATION_CATEGORY, "laboratory"),
        code=_concept(),
        subject=_subject(),
        encounter=_encounter_reference(),
        effectiveDateTime=_instant("start"),
        valueQuantity=pl.struct(value=pl.col("value"), unit=pl.col("unit"), system=pl.lit(UCUM), code=pl.col("unit")),
    )
