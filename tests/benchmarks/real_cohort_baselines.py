"""Simple strong baselines for the real-cohort benchmark, on the same folds as ClinFuse.

Input: per-modality feature matrices (numpy, NaN allowed), 0/1 labels and a fold assignment (a list of
(train_idx, test_idx)). Every preprocessing step is fitted inside the training fold.

| method          | model                                                                                      |
| --------------- | ------------------------------------------------------------------------------------------ |
| lr:<modality>   | median imputation -> standardisation -> L2 logistic regression, C by inner stratified 5-fold |
|                 | CV on the training fold (LogisticRegressionCV, log loss), one modality alone               |
| lr:concat       | the same on all modalities side by side                                                    |
| xgb:concat      | XGBoost on all modalities side by side (300 trees, depth 3, learning rate 0.05, NaN native)|
| stack:lr        | per-modality lr models; their inner 5-fold out-of-fold logits on the training fold          |
|                 | (cross_val_predict) train a logistic regression; test = meta(each modality's full-fold fit)|

Every method returns pooled out-of-fold probabilities (each patient predicted once, by the model of the fold
that held it out), per-fold AUROC and its total wall time over the folds (fit + predict).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

Folds = Sequence[tuple[np.ndarray, np.ndarray]]
INNER_FOLDS = 5
N_JOBS = 2  # the benchmark machine has 2 cores


@dataclass
class MethodResult:
    """Pooled out-of-fold probabilities of one method and its per-fold AUROC and wall time."""

    method: str
    oof: np.ndarray
    fold_auroc: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    detail: dict[str, float] = field(default_factory=dict)  # e.g. ClinFuse's ingest / train split


def logistic_pipeline(seed: int) -> Pipeline:
    """Median imputation + standardisation + L2 logistic regression with C chosen by inner stratified 5-fold CV."""
    inner = StratifiedKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    model = LogisticRegressionCV(Cs=10, l1_ratios=(0.0,), cv=inner, scoring="neg_log_loss", solver="lbfgs",
                                 max_iter=5000, n_jobs=N_JOBS, use_legacy_attributes=False)  # fmt: skip
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model)


def xgboost_model(seed: int):
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, tree_method="hist", n_jobs=N_JOBS,
                         random_state=seed, eval_metric="logloss")  # fmt: skip


class LogisticStack:
    """Per-modality logistic pipelines stacked by a logistic regression on their inner out-of-fold logits."""

    def __init__(self, modalities: Sequence[str], seed: int) -> None:
        self.modalities = list(modalities)
        self.seed = seed

    def fit(self, blocks: dict[str, np.ndarray], y: np.ndarray) -> LogisticStack:
        inner = StratifiedKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=self.seed + 1)
        logits = np.column_stack([
            cross_val_predict(logistic_pipeline(self.seed), blocks[m], y, cv=inner, method="decision_function")
            for m in self.modalities
        ])  # fmt: skip
        self.meta = LogisticRegression(max_iter=1000).fit(logits, y)
        self.bases = {m: logistic_pipeline(self.seed).fit(blocks[m], y) for m in self.modalities}
        return self

    def predict_proba(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        logits = np.column_stack([self.bases[m].decision_function(blocks[m]) for m in self.modalities])
        return self.meta.predict_proba(logits)[:, 1]


def _safe_auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def run_method(method: str, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], y: np.ndarray,
               folds: Folds) -> MethodResult:  # fmt: skip
    """fit_predict(train_idx, test_idx) -> test probabilities; pooled into one out-of-fold vector."""
    oof = np.full(len(y), np.nan)
    result = MethodResult(method, oof)
    started = time.perf_counter()
    for train_idx, test_idx in folds:
        oof[test_idx] = fit_predict(train_idx, test_idx)
        result.fold_auroc.append(_safe_auroc(y[test_idx], oof[test_idx]))
    result.wall_s = time.perf_counter() - started
    return result


def run_baselines(modalities: dict[str, np.ndarray], y: np.ndarray, folds: Folds, seed: int = 0,
                  methods: Sequence[str] | None = None) -> list[MethodResult]:  # fmt: skip
    """Every baseline on the same folds; `methods` restricts to some of lr:<m>, lr:concat, xgb:concat, stack:lr."""
    y = np.asarray(y, dtype=int)
    names = list(modalities)
    blocks = {m: np.asarray(x, dtype=float) for m, x in modalities.items()}
    concat = np.hstack([blocks[m] for m in names])

    def lr_on(x: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return lambda tr, te: logistic_pipeline(seed).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]

    def xgb(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return xgboost_model(seed).fit(concat[tr], y[tr]).predict_proba(concat[te])[:, 1]

    def stack(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        model = LogisticStack(names, seed).fit({m: b[tr] for m, b in blocks.items()}, y[tr])
        return model.predict_proba({m: b[te] for m, b in blocks.items()})

    plan: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {f"lr:{m}": lr_on(blocks[m]) for m in names}
    plan |= {"lr:concat": lr_on(concat), "xgb:concat": xgb, "stack:lr": stack}
    chosen = [m for m in plan if methods is None or m in methods]
    return [run_method(m, plan[m], y, folds) for m in chosen]


def summarise(result: MethodResult, y: np.ndarray) -> dict[str, float]:
    """Pooled OOF AUROC, AUPRC, Brier; mean and sd of the per-fold AUROC; wall time."""
    y = np.asarray(y, dtype=int)
    p = result.oof
    folds = np.asarray(result.fold_auroc, dtype=float)
    return {
        "auroc": float(roc_auc_score(y, p)),
        "auprc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "fold_auroc_mean": float(np.nanmean(folds)),
        "fold_auroc_sd": float(np.nanstd(folds, ddof=1)) if folds.size > 1 else float("nan"),
        "wall_s": result.wall_s,
    }
