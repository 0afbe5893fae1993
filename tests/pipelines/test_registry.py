"""Model registry on a real MLflow sqlite store: register, list, promote, roll back, verified loading."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clinfuse.pipelines.registry.store import ModelRegistry
from clinfuse.pipelines.training import run_files
from clinfuse.platform.errors import ClinFuseError


@pytest.fixture(scope="module")
def evaluated_run(registered_model: str, demo_run: Path) -> Path:
    return demo_run  # registered_model evaluated it


def test_registered_version_carries_everything_scoring_needs(registered_model: str) -> None:
    resolved = ModelRegistry().resolve(registered_model)
    assert (resolved.name, resolved.version) == ("demo", 1)
    assert "production" in resolved.aliases
    files = {str(p.relative_to(resolved.path)) for p in resolved.path.rglob("*") if p.is_file()}
    for expected in ("model.safetensors", "model_spec.json", "calibration.json", "xgboost.json", "metrics.json",
                     "model_card.md", "provenance.json", "modalities.json", "MANIFEST.json",
                     "alignments/genomics.json", "alignments/ehr.json", "explain_background.safetensors"):  # fmt: skip
        assert expected in files
    # nothing that would be unpickled: weights are safetensors, everything else JSON/markdown/PNG
    assert {Path(f).suffix for f in files} <= {".safetensors", ".json", ".md", ".png"}
    provenance = json.loads((resolved.path / "provenance.json").read_text())
    assert len(provenance["git_commit"].split("+")[0]) in (40, len("unknown"))
    card = (resolved.path / "model_card.md").read_text()
    metrics = json.loads((resolved.path / "metrics.json").read_text())
    assert f"{metrics['fusion']['auroc']:.3f} [{metrics['fusion']['auroc_ci'][0]:.3f}" in card
    assert "## Limitations" in card and "## Subgroups" in card
    noise = metrics["fusion"]["ece_if_perfectly_calibrated"]
    assert f"perfectly calibrated model would show an ECE of {noise['mean']:.3f}" in card


def test_a_version_is_an_mlflow_model_logged_in_its_training_run(registered_model: str, demo_run: Path) -> None:
    """Lineage: version -> the run `clinfuse train` logged -> its data; the model card is the description; the
    MLflow model folder holds the verified bundle and no pickle."""
    registry = ModelRegistry()
    version = registry.client.get_model_version("demo", "1")
    logged = json.loads((demo_run / run_files.RUN_INFO).read_text())["mlflow"]
    assert version.run_id == logged["run_id"] and logged["tracking_uri"] == registry.tracking_uri
    run = registry.client.get_run(version.run_id)
    assert run.inputs.dataset_inputs, "the training data is the run's input"
    assert version.description == (registry.resolve(registered_model).path / "model_card.md").read_text()
    assert version.source.startswith(run.info.artifact_uri)
    model = Path(version.source.removeprefix("file://"))
    assert (model / "MLmodel").is_file() and (model / "artifacts" / "bundle" / "MANIFEST.json").is_file()
    assert not [p for p in model.rglob("*") if p.suffix in (".pkl", ".pickle")]


def test_promote_and_rollback_move_the_alias(evaluated_run: Path) -> None:
    registry = ModelRegistry()
    first = registry.register(evaluated_run, "lifecycle", alias="production")
    second = registry.register(evaluated_run, "lifecycle")
    assert second == first + 1
    assert registry.resolve("models:/lifecycle@production").version == first
    registry.promote("lifecycle", second, "production")
    assert registry.resolve("lifecycle@production").version == second
    assert registry.rollback("lifecycle", "production") == (second, first)
    assert registry.resolve("models:/lifecycle@production").version == first
    with pytest.raises(ClinFuseError, match="no earlier version"):
        registry.rollback("lifecycle", "production")
    listed = {m["name"]: m for m in registry.models()}["lifecycle"]
    assert [v["aliases"] for v in listed["versions"]] == [["production"], []]


def test_unknown_references_fail_clearly(registered_model: str) -> None:
    registry = ModelRegistry()
    with pytest.raises(ClinFuseError, match="no alias 'staging'"):
        registry.resolve("models:/demo@staging")
    with pytest.raises(ClinFuseError, match="no version 99"):
        registry.resolve("models:/demo/99")
    with pytest.raises(ClinFuseError, match="names no version or alias"):
        registry.resolve("demo")


def test_tampered_or_unknown_files_are_refused_and_a_local_copy_fetched_again(evaluated_run: Path) -> None:
    from clinfuse.pipelines.registry.model_folder import open_model
    from clinfuse.pipelines.registry.store import MANIFEST_TAG

    registry = ModelRegistry()
    version = registry.register(evaluated_run, "tamper")
    bundle = registry.resolve(f"tamper/{version}").path
    expected = registry.client.get_model_version("tamper", str(version)).tags[MANIFEST_TAG]
    calibration = bundle / "calibration.json"
    original = calibration.read_text()
    calibration.write_text(original.replace('"slope": ', '"slope": 1'))
    with pytest.raises(ClinFuseError, match="calibration.json does not match its sha256"):
        open_model(bundle, expected)
    assert registry.resolve(f"tamper/{version}").path == bundle  # the local copy was fetched again
    assert calibration.read_text() == original
    (bundle / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ClinFuseError, match="unknown file"):
        open_model(bundle, expected)
    registry.resolve(f"tamper/{version}")
    assert not (bundle / "extra.pkl").exists()
    manifest = json.loads((bundle / "MANIFEST.json").read_text())  # a forger rewriting the manifest too
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest | {"format": 1, "note": "forged"}))
    with pytest.raises(ClinFuseError, match="differs from the registered one"):
        open_model(bundle, expected)
    assert open_model(registry.resolve(f"tamper/{version}").path, expected).kind == "bundle"


def test_unevaluated_run_cannot_be_registered(evaluated_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("metrics.json", "checkpoints", "logs"))
    with pytest.raises(ClinFuseError, match="clinfuse evaluate"):
        ModelRegistry().register(run, "never")


def test_models_cli_lists_and_shows(registered_model: str, clinfuse_exe: Path) -> None:
    listed = subprocess.run([clinfuse_exe, "models", "list"], capture_output=True, text=True, check=True).stdout
    assert "demo" in listed and "@production" in listed
    shown = subprocess.run([clinfuse_exe, "models", "show", "demo:1"], capture_output=True, text=True, check=True)
    assert "# Model card" in shown.stdout
    missing = subprocess.run([clinfuse_exe, "models", "promote", "demo", "42"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no version 42")
