"""Model folders (runs and bundles) are verified by every consumer; nothing half-written or edited is used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from clinfuse.platform.errors import ClinFuseError


@pytest.fixture
def run_copy(nki_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(nki_run, target)
    return target


def _mixed(run: Path, other: Path) -> None:
    """What a retrain killed right after rewriting the weights used to leave: new weights, old everything else."""
    shutil.copy2(other / "model.safetensors", run / "model.safetensors")


@pytest.fixture(scope="module")
def other_run(nki_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model of the same cohort (another seed and encoder): its weights differ from nki_run's."""
    from clinfuse.pipelines.training.train import TrainSettings, train

    run = tmp_path_factory.mktemp("other") / "run"
    train(nki_cache, run, TrainSettings(accelerator="cpu", seed=5, table_encoder="linear", screening_fdr=0.05))
    return run


def test_a_mixed_run_is_refused_by_evaluate_register_and_explain(run_copy, other_run, probe) -> None:
    assert (run_copy / "model.safetensors").read_bytes() != (other_run / "model.safetensors").read_bytes()
    _mixed(run_copy, other_run)
    probe.assert_user_error(probe.run_main(["evaluate", str(run_copy), "--resamples", "100"]),
                            "model.safetensors", "retrain")  # fmt: skip
    probe.assert_user_error(probe.run_main(["models", "register", str(run_copy), "--name", "mixed"]),
                            "model.safetensors")  # fmt: skip
    patient = pd.read_parquet(run_copy / "predictions.parquet")["patient"].iloc[0]
    probe.assert_user_error(probe.run_main(["explain", "--run", str(run_copy), "--patient", patient]), "sha256")


def test_a_run_without_its_manifest_is_refused(run_copy, probe) -> None:
    (run_copy / "MANIFEST.json").unlink()
    probe.assert_user_error(probe.run_main(["evaluate", str(run_copy)]), "MANIFEST.json", "retrain")


def test_a_half_written_evaluation_is_refused_until_evaluate_runs_again(run_copy, probe) -> None:
    (run_copy / "metrics.json").write_text('{"fusion": {"auroc": 0.99')  # a killed evaluate's partial file
    probe.assert_user_error(probe.run_main(["models", "register", str(run_copy), "--name", "half"]),
                            "metrics.json", "clinfuse evaluate")  # fmt: skip
    assert probe.run_main(["evaluate", str(run_copy), "--resamples", "100"]).code == 0
    assert json.loads((run_copy / "metrics.json").read_text())["fusion"]["auroc"] < 0.99


def test_retraining_refuses_to_replace_a_folder_that_is_not_a_run(nki_cache, tmp_path, probe) -> None:
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    outcome = probe.run_main(["train", "--cache", str(nki_cache), "--out", str(precious), "--split"])
    probe.assert_user_error(outcome, "not a ClinFuse run folder", "new or empty folder")
    assert probe.snapshot(precious) and (precious / "thesis.txt").read_text() == "years of work"


def _tampered_scores(nki_scores: Path, tmp_path: Path, tamper) -> Path:
    """A copy of the scores file whose bundle is a tampered copy of the registered one."""
    table = pq.read_table(nki_scores)
    metadata = json.loads(table.schema.metadata[b"clinfuse"])
    bundle = tmp_path / "bundle"
    shutil.copytree(metadata["model_dir"], bundle)
    tamper(bundle)
    metadata["model_dir"] = str(bundle)
    out = tmp_path / "scores.parquet"
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"clinfuse": json.dumps(metadata)}), out)
    return out


def _confident_calibration(bundle: Path) -> None:
    calibration = json.loads((bundle / "calibration.json").read_text())
    calibration["fusion"]["intercept"] = 8.0
    (bundle / "calibration.json").write_text(json.dumps(calibration))


def test_the_dashboard_refuses_a_bundle_edited_after_scoring(nki_scores, tmp_path) -> None:
    from clinfuse.dashboards import data_source

    untouched = _tampered_scores(nki_scores, tmp_path / "a", lambda bundle: None)
    assert len(data_source.load_scores(untouched).table) > 0
    edited = _tampered_scores(nki_scores, tmp_path / "b", _confident_calibration)
    with pytest.raises(ClinFuseError, match="calibration.json does not match"):
        data_source.load_scores(edited)
    with pytest.raises(ClinFuseError, match="calibration.json does not match"):
        data_source.PatientData(edited)


def test_a_bundle_with_a_rewritten_manifest_is_refused_by_its_registered_digest(nki_scores, tmp_path) -> None:
    from clinfuse.dashboards import data_source
    from clinfuse.pipelines.registry.manifest import write_manifest

    def forge(bundle: Path) -> None:
        _confident_calibration(bundle)
        write_manifest(bundle)  # consistent with itself, not with the registration

    with pytest.raises(ClinFuseError, match="differs from the registered one"):
        data_source.load_scores(_tampered_scores(nki_scores, tmp_path, forge))


def test_explaining_from_a_bundle_leaves_it_verifiable(registered_model, demo_cache) -> None:
    """The demo model has an image branch, whose explanation has a heatmap (which used to be written into
    the bundle, so that `score` then refused it)."""
    from clinfuse.pipelines.explain import RunExplainer
    from clinfuse.pipelines.registry.model_folder import open_model
    from clinfuse.pipelines.registry.store import ModelRegistry

    resolved = ModelRegistry().resolve(registered_model)
    explainer = RunExplainer(resolved.path, cache=demo_cache)
    present = explainer.cache.cohort.filter(like="present_").all(axis=1).to_numpy()
    explanation = explainer.explain(explainer.patients[int(present.argmax())])
    assert any(entry.get("heatmap_array") is not None for entry in explanation.within.values())
    open_model(resolved.path, resolved.manifest_sha256)  # still exactly the registered bundle
    assert ModelRegistry().resolve(registered_model).path == resolved.path


def test_a_damaged_local_copy_of_a_bundle_is_fetched_again(nki_model) -> None:
    from clinfuse.pipelines.registry.store import ModelRegistry

    registry = ModelRegistry()
    local = registry.resolve(nki_model).path
    (local / "xgboost.json").write_text("{}")
    resolved = registry.resolve(nki_model)  # no manual deletion: the damaged copy is replaced and verified
    assert (resolved.path / "xgboost.json").read_text() != "{}"


def test_a_damaged_artifact_store_names_what_to_restore(nki_run, tmp_path, monkeypatch, probe) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    assert probe.run_main(["models", "register", str(nki_run), "--name", "store", "--alias", "production"]).code == 0
    stored = next((home / "mlartifacts").rglob("calibration.json"))
    original = stored.read_bytes()
    stored.write_text("{}")
    shutil.rmtree(home / "models", ignore_errors=True)
    outcome = probe.run_main(["models", "show", "store"])
    probe.assert_user_error(outcome, "calibration.json", "artifact store")
    assert not (home / "models" / "store" / "1").exists()  # the bad copy is not kept
    stored.write_bytes(original)  # the operator restores the store from backup: nothing else to delete
    assert probe.run_main(["models", "show", "store"]).code == 0


def test_scoring_a_cohort_without_patients_is_one_error(nki_model, nki_cohort, tmp_path, probe) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(nki_cohort.parent, cohort)
    for csv in cohort.glob("*.csv"):
        header = csv.read_text().splitlines()[0]
        csv.write_text(header + "\n")
    out = tmp_path / "scores.parquet"
    outcome = probe.run_main(["score", "--model", nki_model, "--config", str(cohort / "cohort.yaml"),
                              "--out", str(out)])  # fmt: skip
    probe.assert_user_error(outcome, "no patients")
    assert not out.exists()


def test_a_split_whose_training_patients_lack_a_modality_fails_before_any_fitting(demo_cache, tmp_path) -> None:
    """E.g. a cross-validation fold of a rare modality: refused at once, not after the epochs."""
    import numpy as np
    from clinfuse.pipelines.training.train import TrainSettings, train
    from clinfuse.platform.cache import FeatureCache

    cohort = FeatureCache(demo_cache).cohort
    has_imaging = cohort["present_imaging"].to_numpy()
    splits = np.where(has_imaging, "test", "train").astype(object)
    splits[np.flatnonzero(~has_imaging)[::5]] = "val"
    with pytest.raises(ClinFuseError, match="no training patient has modality 'imaging'"):
        train(demo_cache, tmp_path / "run", TrainSettings(accelerator="cpu", max_epochs=1), splits=splits)
    assert not (tmp_path / "run").exists()
