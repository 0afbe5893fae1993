"""The registered model as MLflow's pyfunc model, in this process: its signature, answers equal to `clinfuse score`,
a tampered bundle refused at load, and error rows (never exceptions, never a source id) for rows it cannot score."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.pipelines.registry.store import ModelRegistry
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.pipelines.serving.example import example_request
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

MODALITIES = ("imaging", "genomics", "ehr")
CONTRIBUTIONS = [f"contribution_{name}" for name in (*MODALITIES, "base")]
EXACT = ["risk", "risk_raw", "risk_lower", "risk_upper", "risk_xgboost", *CONTRIBUTIONS]
ANSWER = ["patient_id", "risk", "risk_raw", "risk_lower", "risk_upper", "risk_xgboost", "modalities_present",
          *CONTRIBUTIONS, "model_name", "model_version", "scored_at", "warnings", "error"]  # fmt: skip


@pytest.fixture(scope="module")
def tracking_uri(registered_model: str) -> Iterator[str]:
    """MLflow's own loaders find ClinFuse's private registry only through MLFLOW_TRACKING_URI."""
    with pytest.MonkeyPatch.context() as patch:
        uri = ModelRegistry().tracking_uri
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("CLINFUSE_SERVING_ROOT", raising=False)  # relative DICOM paths must be refused
        yield uri


@pytest.fixture(scope="module")
def model(tracking_uri: str):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model("models:/demo@production")


@pytest.fixture(scope="module")
def patients(demo_truth: dict) -> list[str]:
    """Three source ids with different modalities present: every modality first, then two that lack one."""
    by_present: dict[frozenset, str] = {}
    for pid, truth in demo_truth["patients"].items():
        by_present.setdefault(frozenset(m for m, present in truth["present"].items() if present), pid)
    return [by_present[present] for present in sorted(by_present, key=len, reverse=True)[:3]]


@pytest.fixture(scope="module")
def records(registered_model: str, demo_cohort: Path, patients: list[str]) -> list[dict]:
    """The patients' request rows, read from the demo site's sources (PyHealth: built once)."""
    bundle = ModelRegistry().resolve(registered_model).path
    return example_request(demo_cohort / "cohort.yaml", bundle, patients)["dataframe_records"]


@pytest.fixture(scope="module")
def batch(demo_scores: Path) -> pd.DataFrame:
    return ScoreResults.open(demo_scores).table.set_index("patient_id")


@pytest.fixture(scope="module")
def pseudonym() -> Pseudonymiser:
    return Pseudonymiser(load_pseudonym_key())


def _assert_equals_batch(answer: pd.DataFrame, batch: pd.DataFrame) -> None:
    expected = batch.loc[answer["patient_id"]]
    np.testing.assert_allclose(answer[EXACT].to_numpy(float), expected[EXACT].to_numpy(float), rtol=0, atol=1e-6)
    assert answer["modalities_present"].tolist() == expected["modalities_present"].tolist()
    assert answer["warnings"].tolist() == expected["warnings"].tolist()
    assert (answer["error"] == "").all()


def _assert_no_source_id(answer: pd.DataFrame, source_ids: list[str]) -> None:
    texts = " ".join(answer["error"].fillna("").tolist() + answer["warnings"].fillna("").tolist())
    assert not [pid for pid in source_ids if pid in texts]


def test_signature_names_the_request_and_the_answer(model) -> None:
    inputs = [(c["name"], c["type"], c["required"]) for c in model.metadata.get_input_schema().to_dict()]
    assert inputs == [("patient_id", "string", True), ("index_time", "string", True), ("sex", "string", False),
                      ("age", "double", False), *((name, "any", False) for name in MODALITIES)]  # fmt: skip
    assert model.metadata.get_output_schema().input_names() == ANSWER


def test_answers_equal_the_batch_scores_of_the_same_patients(
    model, records: list[dict], patients: list[str], batch: pd.DataFrame, pseudonym: Pseudonymiser
) -> None:
    from clinfuse.pipelines.scoring.chunk import _inputs

    kept = _inputs.cache_info().currsize
    answer = model.predict(pd.DataFrame(records))
    assert _inputs.cache_info().currsize == kept, "a request's short-lived cache must not be kept by the process"
    assert answer["patient_id"].tolist() == [pseudonym(pid) for pid in patients]
    assert list(answer.columns) == list(batch.reset_index().columns)  # the answer schema, plus sex and age as sent
    assert [c for c in answer.columns if c not in ("sex", "age")] == ANSWER
    _assert_equals_batch(answer, batch)
    present = answer["modalities_present"].str.split("+").map(set)
    assert present.iloc[0] == set(MODALITIES) and (present.iloc[1:].map(len) < len(MODALITIES)).all()
    assert (answer["model_name"] == "demo").all() and (answer["model_version"] == 1).all()


def test_a_tampered_bundle_is_refused_at_load(tracking_uri: str, tmp_path: Path) -> None:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts("models:/demo@production", dst_path=str(tmp_path)))
    weights = local / "artifacts" / "bundle" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ClinFuseError) as refused:
        mlflow.pyfunc.load_model(str(local))
    assert "model.safetensors" in refused.value.problem and "sha256" in refused.value.problem
    assert "re-register the model" in refused.value.fix


def test_malformed_rows_get_error_rows_and_the_good_row_is_still_scored(
    model, records: list[dict], demo_cohort: Path, batch: pd.DataFrame, pseudonym: Pseudonymiser
) -> None:
    good = records[0]
    assert good["imaging"] and good["ehr"]
    others = pd.read_csv(demo_cohort / "cohort.csv", dtype={"patient_id": str})["patient_id"]
    ids = [pid for pid in others if pid != good["patient_id"]][:4]
    relative = os.path.relpath(good["imaging"][0], demo_cohort)
    bad = {
        "an index_time of the request is missing": good | {"patient_id": ids[0], "index_time": None},
        "a table cell of the request is a list": good | {"patient_id": ids[1], "genomics": [1.0, 2.0]},
        "unknown field(s) ['colour']": good | {"patient_id": ids[2], "ehr": [*good["ehr"], {**good["ehr"][0],
                                                                                            "colour": "red"}]},
        "a DICOM path of the request is relative": good | {"patient_id": ids[3], "imaging": [relative]},
    }  # fmt: skip
    answer = model.predict(pd.DataFrame([good, *bad.values()]))
    assert answer["patient_id"].tolist() == [pseudonym(pid) for pid in [good["patient_id"], *ids]]
    _assert_equals_batch(answer.iloc[[0]], batch)
    for (expected, _), (_, row) in zip(bad.items(), answer.iloc[1:].iterrows(), strict=True):
        assert row["error"].startswith("request: ") and expected in row["error"], row["error"]
        assert np.isnan(row[EXACT].to_numpy(float)).all() and row["modalities_present"] == ""
    _assert_no_source_id(answer, [good["patient_id"], *ids])


def test_a_row_without_any_modality_gets_the_no_usable_modality_row(
    model, records: list[dict], patients: list[str], batch: pd.DataFrame, pseudonym: Pseudonymiser
) -> None:
    good, empty = records[1], records[2] | dict.fromkeys(MODALITIES)
    answer = model.predict(pd.DataFrame([good, empty]))
    _assert_equals_batch(answer.iloc[[0]], batch)
    row = answer.iloc[1]
    assert row["patient_id"] == pseudonym(patients[2])
    assert row["error"].startswith("no usable modality") and np.isnan(row["risk"])
    _assert_no_source_id(answer, patients[1:])
