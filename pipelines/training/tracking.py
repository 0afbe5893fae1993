"""The MLflow run of a training: what `clinfuse train` fitted, on which data, from which code; evaluation adds its
test metrics and report to the same run, and registering creates the model version from it (version -> run -> data).

The run lives in the model registry's tracking store (the sqlite store under CLINFUSE_HOME, MLFLOW_TRACKING_URI or
--mlflow-uri), in experiment 'clinfuse'. It holds the train settings as params, each epoch's Lightning metrics, the
lineage tags (git commit, cohort name and config hash, the feature cache and the sha256 of its manifest), the cache
as the run's training dataset input, and run.json. run.json names the run under `mlflow` (tracking_uri,
experiment_id, run_id). Cross-validation is one run: each fold's epoch metrics carry the fold folder's name as prefix
(`repeat0_fold1-val_auroc`), each fold's test metrics are `cv_<metric>` with step = fold index over repeats.
MLflow and Lightning are imported only inside functions: they take seconds to import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from clinfuse.pipelines.registry.bundle import git_commit
from clinfuse.pipelines.registry.manifest import sha256_file
from clinfuse.pipelines.registry.model_folder import EVALUATION_FILES
from clinfuse.pipelines.registry.store import ModelRegistry
from clinfuse.pipelines.training import run_files
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.cache.feature_cache import MANIFEST_FILE
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.fingerprint import combine

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from pytorch_lightning.loggers import MLFlowLogger

_log = logging.getLogger(__name__)

DIGEST_CHARS = 32  # of the cache manifest's sha256 as the dataset digest (MLflow keeps at most 36); the tag has all
EVALUATION_ARTIFACTS = "evaluation"
TRAINING_ARTIFACTS = "training"
# Set by torchrun (RANK), Lightning's DDP launcher (LOCAL_RANK, NODE_RANK) and SLURM: only rank 0 records the run.
_RANK_VARIABLES = ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID")
_SETTINGS_NOT_PARAMS = ("mlflow_tracking_uri",)  # where the run is recorded, not how the model was trained
_RUN_INFO_PARAMS = ("accelerator_used", "num_workers_used")
_RUN_INFO_METRICS = ("best_epoch_val_auroc", "epochs_run", "duration_s")
_FOLD_METRICS = tuple(f"{model}_{name}" for model in ("fusion", "xgboost") for name in ("auroc", "auprc", "brier"))


@dataclass(frozen=True)
class TrainingRun:
    """One training's MLflow run; `metric_prefix` names the fold whose epoch metrics a Lightning fit logs."""

    client: MlflowClient
    tracking_uri: str
    experiment_id: str
    run_id: str
    metric_prefix: str = ""

    @property
    def reference(self) -> dict[str, str]:
        """run.json's `mlflow` entry: what evaluation and registration find the run by."""
        return {"tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id, "run_id": self.run_id}

    def for_fold(self, name: str) -> TrainingRun:
        return replace(self, metric_prefix=name)

    def epoch_logger(self) -> MLFlowLogger:
        from clinfuse.pipelines.training.epoch_logger import RunEpochLogger

        return RunEpochLogger(tracking_uri=self.tracking_uri, run_id=self.run_id, prefix=self.metric_prefix)

    def log_run_info(self, run: Path) -> None:
        """The settings training resolved, its summary figures and run.json itself."""
        from mlflow.entities import Param

        info = json.loads((run / run_files.RUN_INFO).read_text())
        params = [Param(key, str(info["settings"][key])) for key in _RUN_INFO_PARAMS if key in info["settings"]]
        metrics = [_metric(key, info.get(key)) for key in _RUN_INFO_METRICS]
        self.client.log_batch(self.run_id, params=params, metrics=[m for m in metrics if m is not None])
        self.client.log_artifact(self.run_id, str(run / run_files.RUN_INFO), TRAINING_ARTIFACTS)

    def log_folds(self, records: list[dict]) -> None:
        """Each cross-validation fold's test metrics as `cv_<metric>`, step = the fold's index over repeats."""
        metrics = [_metric(f"cv_{key}", record.get(key), step) for step, record in enumerate(records)
                   for key in _FOLD_METRICS]  # fmt: skip
        self.client.log_batch(self.run_id, metrics=[m for m in metrics if m is not None])

    def end(self, status: str) -> None:
        """FINISHED, FAILED or KILLED. A store gone by then costs a warning, not the training already on disk."""
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # any driver or server error: the run folder is the record that matters
            _log.warning("could not mark MLflow run %s %s at %s (%s)", self.run_id, status, self.tracking_uri,
                         _one_line(exc))  # fmt: skip


@contextlib.contextmanager
def training_run(cache_path: Path, out: Path, settings: dict, tracking_uri: str | None) -> Iterator[TrainingRun | None]:
    """Create the MLflow run of training `out` from the cache (params, lineage tags, dataset input) and end it
    FINISHED, or FAILED (KILLED on Ctrl-C) when the block raises; None on a non-zero rank of a multi-device run.

    An unreachable store raises ClinFuseError here, before anything is trained. Lightning's MLflow logger sets
    MLflow's process-wide tracking URI (and MLFLOW_TRACKING_URI); it is put back as it was."""
    if any(os.environ.get(name, "0").strip() not in ("", "0") for name in _RANK_VARIABLES):
        yield None
        return
    process_uri = os.environ.get("MLFLOW_TRACKING_URI")
    tracked = _start(Path(cache_path), Path(out), settings, tracking_uri)
    try:
        yield tracked
    except BaseException as exc:
        tracked.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    else:
        tracked.end("FINISHED")
    finally:
        import mlflow

        mlflow.set_tracking_uri(process_uri)  # None: unset, MLflow's default again


def log_evaluation(run: Path, info: dict, result: dict) -> None:
    """Log the test metrics (with CI bounds) and the evaluation files (under 'evaluation/') to the run's MLflow run.

    The results are already in the run folder: an old run without an MLflow run, or a store that is unreachable,
    costs one warning line."""
    reference = info.get("mlflow")
    if not reference:
        _log.warning("run %s has no MLflow run (it was trained before training was tracked): the evaluation is in "
                     "the run folder only", run)  # fmt: skip
        return
    try:
        _log_evaluation(run, reference, result)
    except Exception as exc:  # any driver, server or file error: evaluation itself has succeeded
        _log.warning("evaluation not logged to MLflow run %s at %s (%s): the evaluation is in the run folder only",
                     reference.get("run_id"), reference.get("tracking_uri"), _one_line(exc))  # fmt: skip


def _log_evaluation(run: Path, reference: dict, result: dict) -> None:
    uri = reference["tracking_uri"]
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ClinFuseError(f"the MLflow store {uri} no longer exists")  # opening it would create an empty one
    client = ModelRegistry(uri).client
    metrics = []
    for model in ("fusion", "xgboost"):
        for key in ("auroc", "auprc", "brier", "ece"):
            metrics.append(_metric(f"{model}_{key}", result[model].get(key)))
        for key in ("auroc", "auprc"):
            low, high = result[model].get(f"{key}_ci") or (None, None)
            metrics += [_metric(f"{model}_{key}_ci_low", low), _metric(f"{model}_{key}_ci_high", high)]
    client.log_batch(reference["run_id"], metrics=[m for m in metrics if m is not None])
    for name in EVALUATION_FILES:
        client.log_artifact(reference["run_id"], str(run / name), EVALUATION_ARTIFACTS)


def _start(cache_path: Path, out: Path, settings: dict, tracking_uri: str | None) -> TrainingRun:
    from mlflow.entities import Dataset, DatasetInput, InputTag, Param
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    registry = ModelRegistry(tracking_uri)
    cache = FeatureCache(cache_path)
    manifest_sha256 = sha256_file(cache.path / MANIFEST_FILE)
    fingerprints = cache.manifest["fingerprints"]
    source = str(cache.path.resolve())
    tags = {
        MLFLOW_SOURCE_NAME: "clinfuse train",
        MLFLOW_SOURCE_TYPE: "LOCAL",
        "clinfuse.git_commit": git_commit(),
        "clinfuse.cohort_name": str(cache.manifest.get("cohort_name")),
        "clinfuse.cohort_config_hash": combine(fingerprints["cohort"], fingerprints["modalities"]),
        "clinfuse.cache_manifest_sha256": manifest_sha256,
        "clinfuse.cache": source,
        "clinfuse.run_folder": str(out.resolve()),
    }
    client = registry.client
    experiment_id = registry.experiment_id()
    run_id = client.create_run(experiment_id, run_name=out.name, tags=tags).info.run_id
    tracked = TrainingRun(client, registry.tracking_uri, experiment_id, run_id)
    try:
        params = [Param(key, str(value)) for key, value in settings.items() if key not in _SETTINGS_NOT_PARAMS]
        client.log_batch(run_id, params=params)
        profile = {"patients": len(cache.cohort), "modalities": cache.modalities}
        dataset = Dataset(name=str(cache.manifest.get("cohort_name") or cache.path.name),
                          digest=manifest_sha256[:DIGEST_CHARS], source_type="local",
                          source=json.dumps({"uri": source}), profile=json.dumps(profile))  # fmt: skip
        client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])
    except BaseException:
        tracked.end("FAILED")
        raise
    return tracked


def _metric(key: str, value: float | None, step: int = 0) -> Metric | None:
    """An MLflow metric, or None for a figure that could not be computed (e.g. AUROC of a one-class fold)."""
    from mlflow.entities import Metric

    if value is None:
        return None
    return Metric(key, float(value), int(time.time() * 1000), step)


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
