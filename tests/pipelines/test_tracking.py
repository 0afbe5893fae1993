"""A training is one MLflow run (params, epoch metrics, lineage tags, the cache as dataset input) that evaluation
completes with its test metrics and files: on the default sqlite store and on a real MLflow tracking server."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from clinfuse.pipelines.evaluation.evaluate import evaluate
from clinfuse.pipelines.registry.manifest import sha256_file
from clinfuse.pipelines.registry.model_folder import EVALUATION_FILES, seal_run
from clinfuse.pipelines.registry.store import ModelRegistry
from clinfuse.pipelines.training import run_files, tracking
from clinfuse.pipelines.training.train import TrainSettings, train
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.fingerprint import combine

TRACKING_LOGGER = tracking.__name__


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mlflow_run(run: Path):
    from mlflow import MlflowClient

    reference = json.loads((run / run_files.RUN_INFO).read_text())["mlflow"]
    client = MlflowClient(reference["tracking_uri"])
    return client, client.get_run(reference["run_id"])


def _assert_training_lineage(run: Path, cache: Path) -> None:
    """The run.json entry names a FINISHED run holding the settings, every epoch's metrics, the lineage tags and the
    cache as training dataset."""
    info = json.loads((run / run_files.RUN_INFO).read_text())
    assert set(info["mlflow"]) == {"tracking_uri", "experiment_id", "run_id"}
    client, mlflow_run = _mlflow_run(run)
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.experiment_id == info["mlflow"]["experiment_id"]
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "clinfuse"
    params = mlflow_run.data.params
    assert "mlflow_tracking_uri" not in params
    assert {key: params[key] for key in info["settings"] if key != "mlflow_tracking_uri"} == {
        key: str(value) for key, value in info["settings"].items() if key != "mlflow_tracking_uri"
    }

    epochs = pd.read_csv(next((run / "logs").glob("version_*/metrics.csv")))["val_auroc"].dropna()
    history = client.get_metric_history(mlflow_run.info.run_id, "val_auroc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(epochs.tolist())
    assert len(history) == info["epochs_run"] >= 1

    tags = mlflow_run.data.tags
    fingerprints = info["cache_fingerprints"]
    manifest_sha256 = sha256_file(cache / "manifest.json")
    assert tags["clinfuse.cohort_config_hash"] == combine(fingerprints["cohort"], fingerprints["modalities"])
    assert tags["clinfuse.cache_manifest_sha256"] == manifest_sha256
    assert tags["clinfuse.cache"] == info["cache"] == str(cache.resolve())
    assert tags["clinfuse.cohort_name"] == info["cohort_name"] and len(tags["clinfuse.git_commit"]) >= 7

    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    assert manifest_sha256.startswith(dataset_input.dataset.digest) and len(dataset_input.dataset.digest) == 32
    assert json.loads(dataset_input.dataset.source) == {"uri": info["cache"]}
    assert {(t.key, t.value) for t in dataset_input.tags} == {("mlflow.data.context", "training")}
    assert [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "training")] == ["training/run.json"]


def _assert_evaluation_logged(run: Path, tmp_path: Path) -> None:
    client, mlflow_run = _mlflow_run(run)
    metrics = json.loads((run / run_files.METRICS).read_text())
    logged = mlflow_run.data.metrics
    for model in ("fusion", "xgboost"):
        for key in ("auroc", "auprc", "brier", "ece"):
            assert logged[f"{model}_{key}"] == pytest.approx(metrics[model][key])
        for key in ("auroc", "auprc"):
            low, high = metrics[model][f"{key}_ci"]
            assert (logged[f"{model}_{key}_ci_low"], logged[f"{model}_{key}_ci_high"]) == pytest.approx((low, high))
    listed = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "evaluation")}
    assert listed == {f"evaluation/{name}" for name in EVALUATION_FILES}
    tmp_path.mkdir(exist_ok=True)
    fetched = client.download_artifacts(mlflow_run.info.run_id, "evaluation/metrics.json", str(tmp_path))
    assert json.loads(Path(fetched).read_text()) == metrics


def test_training_is_one_mlflow_run_in_the_registry_store(demo_run: Path, demo_cache: Path) -> None:
    info = json.loads((demo_run / run_files.RUN_INFO).read_text())
    assert info["mlflow"]["tracking_uri"] == ModelRegistry().tracking_uri  # the default sqlite store
    assert "MLFLOW_TRACKING_URI" not in os.environ, "training left MLflow's tracking URI set for the whole process"
    _assert_training_lineage(demo_run, demo_cache)


def test_evaluation_is_logged_to_the_training_run(demo_run: Path, tmp_path: Path) -> None:
    evaluate(demo_run, resamples=200)
    _assert_evaluation_logged(demo_run, tmp_path)


def test_a_training_that_raises_ends_its_run_failed(demo_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ClinFuseError, match="unknown --accelerator"):
        train(demo_cache, out, TrainSettings(accelerator="tpu"))
    registry = ModelRegistry()
    (failed,) = registry.client.search_runs([registry.experiment_id()],
                                            f"tags.`clinfuse.run_folder` = '{out.resolve()}'")  # fmt: skip
    assert failed.info.status == "FAILED" and not out.exists()


def test_an_unreachable_store_fails_before_training(demo_cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    started = time.perf_counter()
    with pytest.raises(ClinFuseError, match="cannot open the model registry"):
        train(demo_cache, tmp_path / "run", TrainSettings(accelerator="cpu"))
    assert time.perf_counter() - started < 60, "MLflow's minutes of retries were not cut short"
    assert list(tmp_path.iterdir()) == []
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored after opening the store


def test_only_rank_zero_of_a_multi_device_run_records_it(demo_cache: Path, tmp_path: Path, monkeypatch) -> None:
    registry = ModelRegistry()
    before = len(registry.client.search_runs([registry.experiment_id()], max_results=1000))
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's DDP launcher gives the processes it starts
    with tracking.training_run(demo_cache, tmp_path / "run", {}, None) as tracked:
        assert tracked is None
    assert len(registry.client.search_runs([registry.experiment_id()], max_results=1000)) == before


@pytest.mark.parametrize("mlflow_entry", ["absent", "unreachable server", "store deleted"])
def test_evaluate_finishes_with_one_warning_when_the_run_cannot_be_logged(
    mlflow_entry: str, demo_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    info = json.loads((run / run_files.RUN_INFO).read_text())
    gone = tmp_path / "gone.db"
    if mlflow_entry == "absent":  # a run trained before training was tracked
        del info["mlflow"]
    else:
        uri = f"http://127.0.0.1:{_free_port()}" if mlflow_entry == "unreachable server" else f"sqlite:///{gone}"
        info["mlflow"]["tracking_uri"] = uri
    (run / run_files.RUN_INFO).write_text(json.dumps(info, indent=1))
    seal_run(run)
    with caplog.at_level(logging.WARNING):
        result = evaluate(run, resamples=50)
    assert json.loads((run / run_files.METRICS).read_text()) == json.loads(json.dumps(result))
    (warning,) = [r for r in caplog.records if r.name == TRACKING_LOGGER]
    message = warning.getMessage()
    assert warning.levelno == logging.WARNING and "\n" not in message and "the run folder only" in message
    assert not gone.exists(), "a vanished sqlite store is not recreated empty"


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server (sqlite backend, artifacts served over HTTP) on a free local port."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--serve-artifacts"],
        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job workers to outlive it
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "the MLflow server exited while starting"
                assert time.monotonic() < deadline, "the MLflow server did not answer within 180 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_training_and_evaluation_are_one_run_on_a_tracking_server(
    tracking_server: str, demo_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    run = train(demo_cache, tmp_path / "run", TrainSettings(max_epochs=1, accelerator="cpu", seed=2, patience=1))
    assert json.loads((run / run_files.RUN_INFO).read_text())["mlflow"]["tracking_uri"] == tracking_server
    _assert_training_lineage(run, demo_cache)
    evaluate(run, resamples=50)
    _assert_evaluation_logged(run, tmp_path / "downloads")
    # registering on the server: the version comes from the training run, and MLflow's own loader serves it
    registry = ModelRegistry()
    version = registry.register(run, "served", alias="production")
    entry = registry.client.get_model_version("served", str(version))
    assert entry.run_id == json.loads((run / run_files.RUN_INFO).read_text())["mlflow"]["run_id"]
    assert registry.resolve("models:/served@production").path.joinpath("MANIFEST.json").is_file()
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/served@production")
    assert [c.name for c in model.metadata.get_input_schema().inputs][:2] == ["patient_id", "index_time"]
