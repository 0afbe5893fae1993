"""Score one chunk of cohort rows: runs inside a Dask worker (or in process), loads the model once per process.

Every patient gets a row: a risk when at least one modality is usable, else an error; a batch that fails is
retried patient by patient so one bad patient never costs the others their scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from clinfuse.models.baseline import XGBoostBaseline
from clinfuse.models.calibration import BootstrapInterval, PlattCalibrator
from clinfuse.models.explain.modality_shapley import modality_shapley
from clinfuse.models.fusion import LateFusionModel
from clinfuse.pipelines.data import CacheDataset
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.baseline_features import BaselineFeatures
from clinfuse.pipelines.training.model_io import load_model
from clinfuse.platform.cache import FeatureCache
from torch.utils.data import default_collate

BATCH_SIZE = 64


@dataclass(frozen=True)
class ScoringModel:
    model: LateFusionModel
    calibrator: PlattCalibrator
    interval: BootstrapInterval
    baseline: XGBoostBaseline
    xgb_calibrator: PlattCalibrator


@dataclass(frozen=True)
class ChunkTask:
    """What a worker needs; paths must be visible to the worker (a shared filesystem off this machine)."""

    bundle: str
    manifest_sha256: str
    cache: str
    rows: tuple[int, ...]
    explain: bool
    model_name: str
    model_version: int
    scored_at: str


@cache
def scoring_model(bundle: str, manifest_sha256: str) -> ScoringModel:
    open_model(Path(bundle), manifest_sha256)  # the worker checks what it loads, too
    torch.set_num_threads(1)  # one thread per Dask worker thread: workers x threads never oversubscribe
    calibration = json.loads((Path(bundle) / run_files.CALIBRATION).read_text())
    return ScoringModel(
        model=load_model(Path(bundle)),
        calibrator=PlattCalibrator.from_json(calibration["fusion"]),
        interval=BootstrapInterval.from_json(calibration["fusion_interval"]),
        baseline=XGBoostBaseline.load(Path(bundle) / run_files.XGBOOST_MODEL),
        xgb_calibrator=PlattCalibrator.from_json(calibration["xgboost"]),
    )


@dataclass(frozen=True)
class CohortInputs:
    """What a worker reads from the scoring cache, opened once per process."""

    cache: FeatureCache
    dataset: CacheDataset
    baseline_features: BaselineFeatures


def cohort_inputs(cache_path: str, embed_dim: int) -> CohortInputs:
    feature_cache = FeatureCache(cache_path)
    return CohortInputs(feature_cache, CacheDataset(feature_cache), BaselineFeatures(feature_cache, embed_dim))


# A batch worker scores many chunks of one cache: opened once per process. (Online requests each bring their own
# short-lived cache and must not be kept here: score_task with fresh inputs.)
_inputs = cache(cohort_inputs)


def score_chunk(task: ChunkTask) -> pd.DataFrame:
    """One output row per cohort row of the task, in order."""
    scoring = scoring_model(task.bundle, task.manifest_sha256)
    return score_task(task, scoring, _inputs(task.cache, scoring.model.embed_dim))


def score_task(task: ChunkTask, scoring: ScoringModel, inputs: CohortInputs) -> pd.DataFrame:
    """`score_chunk` with the model and the cache's inputs given."""
    frames = []
    for start in range(0, len(task.rows), BATCH_SIZE):
        rows = np.asarray(task.rows[start : start + BATCH_SIZE])
        try:
            frames.append(_score_rows(scoring, inputs, rows, task.explain))
        except Exception:  # isolate the patient(s) that broke the batch; the others keep their scores
            frames += [_score_one_or_error(scoring, inputs, row, task.explain) for row in rows]
    table = pd.concat(frames, ignore_index=True).reindex(columns=_score_columns(scoring.model.modalities, task.explain))
    _add_cohort_columns(table, inputs.cache, np.asarray(task.rows))
    table["model_name"] = task.model_name
    table["model_version"] = task.model_version
    table["scored_at"] = task.scored_at
    last = ["model_name", "model_version", "scored_at", "warnings", "error"]
    return table[[c for c in table.columns if c not in last] + last]


def _score_columns(names: list[str], explain: bool) -> list[str]:
    contributions = [f"contribution_{name}" for name in names] + ["contribution_base"] if explain else []
    return ["risk", "risk_raw", "risk_lower", "risk_upper", "risk_xgboost", "modalities_present", *contributions,
            "error"]  # fmt: skip


def _score_one_or_error(scoring: ScoringModel, inputs: CohortInputs, row: int, explain: bool) -> pd.DataFrame:
    try:
        return _score_rows(scoring, inputs, np.array([row]), explain)
    except Exception as exc:  # recorded in the patient's row (scores left empty); the run goes on
        return pd.DataFrame({"modalities_present": [""], "error": [f"scoring failed: {type(exc).__name__}: "
                                                                   f"{str(exc)[:200]}"]})  # fmt: skip


@torch.no_grad()
def _score_rows(scoring: ScoringModel, inputs: CohortInputs, rows: np.ndarray, explain: bool) -> pd.DataFrame:
    model = scoring.model
    names = model.modalities
    batch = default_collate([inputs.dataset[int(r)] for r in rows])
    embeddings, logits = model.encode(batch)
    present = batch["present"].numpy() > 0
    fusion_logit = model.head(embeddings, logits, batch["present"]).numpy().astype(np.float64)
    lower, upper = scoring.interval.bounds(fusion_logit)
    features = inputs.baseline_features(embeddings.numpy(), cohort_rows=rows)[0]
    frame = pd.DataFrame(
        {
            "risk": scoring.calibrator.probability(fusion_logit),
            "risk_raw": 1.0 / (1.0 + np.exp(-fusion_logit)),
            "risk_lower": lower,
            "risk_upper": upper,
            "risk_xgboost": scoring.xgb_calibrator.probability(scoring.baseline.logit(features)),
            "modalities_present": ["+".join(n for n, p in zip(names, mask, strict=True) if p) for mask in present],
        }
    )
    if explain:
        for name in names:
            frame[f"contribution_{name}"] = np.nan
        frame["contribution_base"] = np.nan
        for i in range(len(rows)):
            if not present[i].any():
                continue
            shapley = modality_shapley(model.head, embeddings[i].numpy(), logits[i].numpy(), present[i], names,
                                       scoring.calibrator)  # fmt: skip
            for name, value in shapley.probability_values.items():
                frame.loc[i, f"contribution_{name}"] = value
            frame.loc[i, "contribution_base"] = shapley.probability_base
    nothing = ~present.any(axis=1)
    frame.loc[nothing, ["risk", "risk_raw", "risk_lower", "risk_upper", "risk_xgboost"]] = np.nan
    frame["error"] = np.where(nothing, "no usable modality", "")
    return frame


def _add_cohort_columns(table: pd.DataFrame, feature_cache: FeatureCache, rows: np.ndarray) -> None:
    """Pseudonymised id first; sex/age for the dashboard's filters; each modality's problem as a warning."""
    cohort = feature_cache.cohort.iloc[rows].reset_index(drop=True)
    table.insert(0, "patient_id", cohort["patient"].to_numpy())
    for column in ("sex", "age"):
        if column in cohort:
            table[column] = cohort[column].to_numpy()
    issues = pd.DataFrame({name: cohort[f"issue_{name}"].map(lambda s, n=name: f"{n}: {s}" if s else "")
                           for name in feature_cache.modalities})  # fmt: skip
    table["warnings"] = issues.apply(lambda r: "; ".join(v for v in r if v), axis=1).to_numpy()
    no_data = table["error"] == "no usable modality"
    table.loc[no_data, "error"] = "no usable modality" + table.loc[no_data, "warnings"].map(
        lambda w: f" ({w})" if w else " (none of the model's modalities has data for this patient)"
    )
