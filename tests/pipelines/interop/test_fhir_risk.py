"""FHIR R4 RiskAssessments from scores: one valid resource per patient, subjects by pseudonym unless the key is
given, bands, interval extension, basis by kind, contributions and missing modalities in words, error rows kept."""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

import pandas as pd
import pytest
from clinfuse.pipelines.interop.fhir_risk import (
    BASIS_TYPES,
    INTERVAL_EXTENSION,
    PSEUDONYM_SYSTEM,
    RISK_PROBABILITY,
    read_pseudonym_key,
    risk_assessments,
    risk_band,
    source_ids,
    write_ndjson,
)
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key
from fhir.resources.R4B.riskassessment import RiskAssessment

ERROR = "no usable modality (imaging: truncated file)"
WARNING = "genomics: 3 features out of range"


def _with_error_and_warning(results: ScoreResults) -> ScoreResults:
    """The scores with row 0 failed (as `clinfuse score` writes an error row) and a warning on row 1."""
    table = results.table.copy()
    score_columns = [c for c in table.columns if c.startswith(("risk", "contribution_"))]
    table.loc[0, score_columns] = math.nan
    table.loc[0, ["modalities_present", "error", "warnings"]] = ["", ERROR, "imaging: truncated file"]
    table.loc[1, "warnings"] = WARNING
    return ScoreResults(table, results.metadata)


def _notes(resource: RiskAssessment) -> list[str]:
    return [note.text for note in resource.note or []]


def test_one_valid_assessment_per_patient_with_prediction_band_interval_and_method(demo_scores: Path) -> None:
    results = ScoreResults.open(demo_scores)
    resources = risk_assessments(results)
    assert len(resources) == len(results.table) == 300
    for resource, row in zip(resources, results.table.itertuples(), strict=True):
        RiskAssessment.model_validate_json(resource.model_dump_json())  # round-trips as valid FHIR
        assert resource.status == "final"
        assert resource.subject.reference is None  # no key: the pseudonym only, never a source id
        assert (resource.subject.identifier.system, resource.subject.identifier.value) == (PSEUDONYM_SYSTEM,
                                                                                           row.patient_id)  # fmt: skip
        assert resource.occurrenceDateTime is not None
        prediction = resource.prediction[0]
        assert float(prediction.probabilityDecimal) == pytest.approx(row.risk, abs=5e-5)
        coding = prediction.qualitativeRisk.coding[0]
        assert coding.system == RISK_PROBABILITY and coding.code == risk_band(row.risk)[0]
        interval = {e.url: float(e.valueDecimal) for e in prediction.extension[0].extension}
        assert prediction.extension[0].url == INTERVAL_EXTENSION
        assert interval["low"] == pytest.approx(row.risk_lower, abs=5e-5)
        assert interval["high"] == pytest.approx(row.risk_upper, abs=5e-5)
        assert interval["level"] == 0.95
        assert "clinfuse-demo" in prediction.outcome.text
        assert resource.method.coding[0].code == "demo" and resource.method.coding[0].version == "1"
    assert {resource.prediction[0].qualitativeRisk.coding[0].code for resource in resources} == {
        "low", "moderate", "high"}  # fmt: skip


def test_basis_by_kind_contributions_in_words_and_missing_modalities_stated(demo_scores: Path) -> None:
    results = ScoreResults.open(demo_scores)
    resources = risk_assessments(results)
    kinds = results.modalities
    for resource, row in zip(resources, results.table.to_dict("records"), strict=True):
        present = row["modalities_present"].split("+")
        assert [(b.type, b.display.split()[0]) for b in resource.basis] == [
            (BASIS_TYPES[kinds[name]], name) for name in kinds if name in present]  # fmt: skip
        notes = _notes(resource)
        for name in kinds:
            value = row[f"contribution_{name}"]
            if name not in present:
                assert f"{name}: missing" in notes[-1]
            elif abs(value) >= 0.0005:
                verb = "raised the risk" if value > 0 else "lowered it"
                assert f"{name} {verb} by {abs(value):.3f}" in notes[0]
    assert sum("missing" in " ".join(_notes(r)) for r in resources) > 50  # the demo has patients without some data


def test_error_rows_are_kept_as_cancelled_assessments_stating_the_error(demo_scores: Path) -> None:
    resources = risk_assessments(_with_error_and_warning(ScoreResults.open(demo_scores)))
    failed, warned = resources[0], resources[1]
    assert failed.status == "cancelled" and failed.prediction is None and failed.basis is None
    assert _notes(failed) == [f"Not scored: {ERROR}"]  # the warning is inside the error: stated once
    assert warned.status == "final" and _notes(warned)[-1] == f"Warnings: {WARNING}"


def test_bands_change_at_the_documented_cut_points() -> None:
    assert [risk_band(p)[0] for p in (0.0, 0.0999, 0.1, 0.4999, 0.5, 1.0)] == [
        "low", "low", "moderate", "moderate", "high", "high"]  # fmt: skip


def _key_file(path: Path, key: str) -> Path:
    path.write_text(key)
    path.chmod(0o600)
    return path


def test_the_pseudonym_key_turns_subjects_into_source_patient_references(
    demo_scores: Path, demo_cohort: Path, tmp_path: Path
) -> None:
    results = ScoreResults.open(demo_scores)
    session_key = load_pseudonym_key()  # the key the session's cohorts were ingested with
    key = read_pseudonym_key(_key_file(tmp_path / "pseudonym.key", session_key.decode()))
    resources = risk_assessments(results, source_ids(results, demo_cohort / "cohort.yaml", key))
    pseudonymise = Pseudonymiser(session_key)
    cohort_ids = set(pd.read_csv(demo_cohort / "cohort.csv", dtype={"patient_id": str})["patient_id"])
    for resource in resources:
        source_id = resource.subject.reference.removeprefix("Patient/")
        assert source_id in cohort_ids and pseudonymise(source_id) == resource.subject.identifier.value

    other = _key_file(tmp_path / "other.key", secrets.token_hex(32))
    with pytest.raises(ClinFuseError, match="300 of 300 scored patients are not in the cohort") as error:
        source_ids(results, demo_cohort / "cohort.yaml", read_pseudonym_key(other))
    assert not any(pid in str(error.value) for pid in cohort_ids)  # counts, never ids
    other.chmod(0o644)
    with pytest.raises(ClinFuseError, match="open to other users"):
        read_pseudonym_key(other)


def test_source_ids_that_are_no_fhir_ids_are_refused(demo_scores: Path) -> None:
    results = ScoreResults.open(demo_scores)
    with pytest.raises(ClinFuseError, match="300 source patient ids are not FHIR resource ids"):
        risk_assessments(results, {pid: f"MRN {pid}" for pid in results.table["patient_id"]})


def test_a_cohort_ingested_without_pseudonyms_references_its_ids(demo_scores: Path, tmp_path: Path) -> None:
    """Its scores hold the source ids already; labelling them as pseudonyms would be wrong."""
    results = ScoreResults.open(demo_scores)
    (tmp_path / "ingest_report.json").write_text(json.dumps({"pseudonymised_ids": False}))
    resources = risk_assessments(ScoreResults(results.table, {**results.metadata, "cache": str(tmp_path)}))
    assert [r.subject.reference for r in resources] == [f"Patient/{pid}" for pid in results.table["patient_id"]]
    assert all(r.subject.identifier is None for r in resources)


def test_ndjson_is_written_whole_one_resource_a_line(demo_scores: Path, tmp_path: Path) -> None:
    resources = risk_assessments(_with_error_and_warning(ScoreResults.open(demo_scores)))
    out = tmp_path / "fhir" / "risk.ndjson"
    assert write_ndjson(resources, out) == 300
    lines = out.read_text().splitlines()
    assert lines == [resource.model_dump_json() for resource in resources]
    assert all(RiskAssessment.model_validate_json(line).subject for line in lines)
    assert [p.name for p in out.parent.iterdir()] == ["risk.ndjson"]  # no temporary file left

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ClinFuseError, match="cannot write"):
        write_ndjson(resources, blocker / "risk.ndjson")
