"""`clinfuse train --cv K [--repeats R]`: K-fold (x R) cross-validated training, then the deployable refit.

A 15% test split of a 100-patient cohort holds about 20 patients (an AUROC interval of +-0.2); studies of that
size report repeated cross-validation. Each fold is an ordinary run of `train` with its own split of the cohort:
the fold is the test split and a stratified VAL_FRACTION of the remaining patients is that fold's validation
split (early stopping, calibration, the head's weights), so every number a fold reports comes from patients its
model never saw. The deployable model is refitted on every patient (a VAL_FRACTION validation split again)
with the same settings, into RUN itself, so evaluate, register, score and the dashboard use it as any run.

RUN/cv/ holds the fold runs (`repeat<r>_fold<k>/`), `oof_predictions.parquet` (each patient's test-fold
predictions, with `repeat` and `fold`), `fold_validation_predictions.parquet` (each fold model on its own
validation split: where operating thresholds are chosen) and `folds.json` (per-fold sizes and metrics). The ingest's
normalisation (medians, z-scores, code vocabulary) was fitted on the ingest's training split and is shared by
all folds: it uses no labels.

The cross-validation and refit are one MLflow run (tracking.py): the refit's epoch metrics under their own names,
each fold's prefixed with its folder's name (`repeat0_fold1-val_auroc`), and each fold's test metrics as
`cv_<metric>` (cv_fusion_auroc, ...) with step = the fold's index over repeats.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.models import metrics
from clinfuse.pipelines.registry.model_folder import seal_run
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.tracking import TrainingRun
from clinfuse.pipelines.training.train import (
    STAGING_ENV,
    TrainSettings,
    check_run_destination,
    open_tracking,
    train_into,
)
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.staging import StagedFolder
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

VAL_FRACTION = 0.15
SMALL_COHORT = 1000  # below this many patients `clinfuse train` cross-validates unless --split is given


def fold_splits(labels: np.ndarray, folds: int, repeats: int, seed: int) -> list[tuple[int, int, np.ndarray]]:
    """(repeat, fold, split per patient) for every fold: test = the fold, val = a stratified share of the rest."""
    labels = np.asarray(labels).astype(int)
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    if folds < 2 or minority < folds:
        raise ClinFuseError(f"{folds}-fold cross-validation needs at least {folds} patients of each label "
                            f"(the cohort has {minority} of the rarer one)", "use fewer folds with --cv")  # fmt: skip
    result = []
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for index, (rest, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        _, val = train_test_split(rest, test_size=VAL_FRACTION, stratify=labels[rest], random_state=seed + index)
        splits = np.full(len(labels), "train", dtype=object)
        splits[test], splits[val] = "test", "val"
        result.append((index // folds, index % folds, splits))
    return result


def refit_splits(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every patient in training but a stratified validation share (for early stopping and calibration)."""
    _, val = train_test_split(np.arange(len(labels)), test_size=VAL_FRACTION, stratify=labels, random_state=seed)
    splits = np.full(len(labels), "train", dtype=object)
    splits[val] = "val"
    return splits


def train_cv(cache_path: Path, out: Path, settings: TrainSettings, folds: int = 5, repeats: int = 1) -> Path:
    """Refit the deployable model, train every fold and pool their out-of-fold predictions, all in a staging
    folder that is sealed and swapped in as `out` only when the last fold is done."""
    labels = FeatureCache(cache_path).cohort["label"].to_numpy()
    planned = fold_splits(labels, folds, repeats, settings.seed)  # before any training: too many folds fail at once
    check_run_destination(out)
    staged = StagedFolder(out, join_env=STAGING_ENV)
    with open_tracking(cache_path, out, settings) as tracked, staged as staging:
        if train_into(cache_path, staging, settings, refit_splits(labels, settings.seed), tracked) is None:
            return out  # a non-zero rank of a multi-device run
        records = _train_folds(cache_path, staging, settings, planned, folds, repeats, tracked)
        if tracked is not None:
            tracked.log_folds(records)
            tracked.log_run_info(staging)
        seal_run(staging)
        staged.commit()
    return out


def _train_folds(cache_path: Path, run: Path, settings: TrainSettings, planned: list[tuple[int, int, np.ndarray]],
                 folds: int, repeats: int, tracked: TrainingRun | None) -> list[dict]:  # fmt: skip
    """Train every fold and pool their test and validation predictions; returns the folds' records (folds.json)."""
    cv_dir = run / run_files.CROSS_VALIDATION
    oof, validation, records = [], [], []
    for repeat, fold, splits in planned:
        fold_run = cv_dir / f"repeat{repeat}_fold{fold}"
        train_into(
            cache_path, fold_run, settings, splits, tracked and tracked.for_fold(fold_run.name), deployable=False
        )
        shutil.rmtree(fold_run / "checkpoints", ignore_errors=True)  # the weights are in model.safetensors
        predictions = pd.read_parquet(fold_run / run_files.PREDICTIONS)
        test = predictions[predictions["split"] == "test"].assign(repeat=repeat, fold=fold)
        oof.append(test)
        validation.append(predictions[predictions["split"] == "val"].assign(repeat=repeat, fold=fold))
        records.append(_fold_record(repeat, fold, test, fold_run))
    pd.concat(oof, ignore_index=True).to_parquet(cv_dir / run_files.OOF_PREDICTIONS, index=False)
    pd.concat(validation, ignore_index=True).to_parquet(cv_dir / run_files.FOLD_VALIDATION_PREDICTIONS, index=False)
    summary = {"folds": folds, "repeats": repeats, "val_fraction": VAL_FRACTION, "seed": settings.seed,
               "per_fold": records}  # fmt: skip
    (cv_dir / run_files.FOLDS_FILE).write_text(json.dumps(summary, indent=1))
    info = json.loads((run / run_files.RUN_INFO).read_text())
    info["cross_validation"] = {k: v for k, v in summary.items() if k != "per_fold"} | {
        "refit": "every patient, a stratified validation share for early stopping and calibration"
    }
    (run / run_files.RUN_INFO).write_text(json.dumps(info, indent=1))
    return records


def _fold_record(repeat: int, fold: int, test: pd.DataFrame, fold_run: Path) -> dict:
    labels = test["label"].to_numpy()
    info = json.loads((fold_run / run_files.RUN_INFO).read_text())
    record = {"repeat": repeat, "fold": fold, "n_test": len(test), "events": int(labels.sum()),
              "architectures": info.get("architectures"), "duration_s": info.get("duration_s")}  # fmt: skip
    for model in ("fusion", "xgboost"):
        record[f"{model}_auroc"] = metrics.auroc(labels, test[f"{model}_logit"].to_numpy())
        record[f"{model}_auprc"] = metrics.auprc(labels, test[f"{model}_logit"].to_numpy())
        record[f"{model}_brier"] = metrics.brier(labels, test[f"{model}_prob"].to_numpy())
    return record
