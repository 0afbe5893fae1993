"""Fit a gradient-boosted tree branch, its depth and number of trees chosen by inner cross-validation.

For each depth in DEPTHS, xgboost.cv runs INNER_FOLDS stratified folds with early stopping on the held-out
log loss; the depth with the lowest held-out log loss wins, with the mean best round count. Fixed settings (a
learning rate of 0.05, row and column subsampling of 0.8) follow XGBoost's tuning guide for small tabular
data. Each fitted patient also gets its out-of-fold margin (the same settings, refitted per inner fold), from
which the fusion head's stacking weights and the calibration are fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from clinfuse.models.linear_branches import inner_folds

DEPTHS = (2, 3, 5)
LEARNING_RATE = 0.05
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
# One thread per booster: xgboost's OpenMP threads spin-wait, and beside any other busy process on a 2-core
# machine a 600 x 6 search took 300 s with every core against 34 s alone.
THREADS = 1


@dataclass(frozen=True)
class TreeBranchFit:
    booster: xgb.Booster
    params: dict
    rounds: int
    inner_cv_log_loss: float
    out_of_fold_shift: np.ndarray  # per fitted patient: out-of-fold margin less the final booster's margin

    def summary(self) -> dict:
        return {"max_depth": self.params["max_depth"], "rounds": self.rounds, "learning_rate": LEARNING_RATE,
                "inner_cv_log_loss": round(self.inner_cv_log_loss, 4)}  # fmt: skip


def tree_params(depth: int, seed: int, threads: int | None = None) -> dict:
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "eta": LEARNING_RATE, "max_depth": depth,
              "subsample": 0.8, "colsample_bytree": 0.8, "tree_method": "hist", "seed": seed}  # fmt: skip
    return params if threads is None else params | {"nthread": threads}


def search_tree_settings(x: np.ndarray, y: np.ndarray, seed: int,
                         threads: int | None = THREADS) -> tuple[dict, int, float]:  # fmt: skip
    """(params, rounds, held-out log loss) of the best depth by inner-fold cross-validation."""
    data = xgb.DMatrix(x, label=y)
    folds = list(inner_folds(y, seed).split(x, y))
    best: tuple[dict, int, float] | None = None
    for depth in DEPTHS:
        params = tree_params(depth, seed, threads)
        history = xgb.cv(params, data, num_boost_round=MAX_ROUNDS, folds=folds,
                         early_stopping_rounds=EARLY_STOPPING_ROUNDS, seed=seed)  # fmt: skip
        loss = float(history["test-logloss-mean"].iloc[-1])
        if best is None or loss < best[2]:
            best = (params, len(history), loss)
    return best


def fit_tree_branch(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> TreeBranchFit:
    """One modality's patients x (N, F) with labels (N,): the booster fitted on all of them."""
    y = np.asarray(labels).astype(int)
    params, rounds, loss = search_tree_settings(x, y, seed)
    out_of_fold = np.zeros(len(y))
    for train, held_out in inner_folds(y, seed).split(x, y):
        booster = xgb.train(params, xgb.DMatrix(x[train], label=y[train]), num_boost_round=rounds)
        out_of_fold[held_out] = booster.predict(xgb.DMatrix(x[held_out]), output_margin=True)
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=rounds)
    shift = out_of_fold - booster.predict(xgb.DMatrix(x), output_margin=True)
    return TreeBranchFit(booster, params, rounds, loss, shift)
