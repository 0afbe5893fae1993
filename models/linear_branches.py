"""Fit every logistic-regression table branch at once, with the penalty chosen by inner cross-validation.

The linear branches are fitted jointly, as one L2 logistic regression on their concatenated features, and the
coefficient vector is then cut back into one branch per modality:

    logit(p) = b + sum_m x_m . beta_m,      beta = argmin  log loss + ||beta||^2 / (2 C),

with C picked from a log grid by the inner folds' log loss (scikit-learn's GridSearchCV). With the
fusion head's weights at 1 this is exactly the concatenated logistic regression a data scientist would write
first; fitting each modality alone and stacking the logits lost to it on a small real cohort (docs/
experiments.md), because correlated modalities then each claim the shared signal. A patient without a
modality has zeros there, which for z-scored features is the training mean, so the branch is neutral.

The fit also returns each patient's out-of-fold logit (inner folds, the chosen C) as a shift from the final
fit's logit: a run whose branches are all linear needs no validation split for early stopping, so it fits on
training + validation patients and calibrates on these out-of-fold logits instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict

C_GRID = np.logspace(-4, 2, 13)
INNER_FOLDS = 5


@dataclass(frozen=True)
class LinearBranchFit:
    """Per modality: coefficients and the training feature means; the chosen C and its inner-CV log loss."""

    coefficients: dict[str, np.ndarray]
    feature_centers: dict[str, np.ndarray]
    inverse_penalty: float
    inner_cv_log_loss: float
    out_of_fold_shift: np.ndarray  # per fitted patient: inner out-of-fold logit less the final fit's logit

    def summary(self) -> dict:
        return {"modalities": list(self.coefficients), "C": float(self.inverse_penalty),
                "inner_cv_log_loss": round(self.inner_cv_log_loss, 4), "penalty": "l2",
                "nonzero_coefficients": {m: int(np.count_nonzero(c))
                                         for m, c in self.coefficients.items()}}  # fmt: skip


def inner_folds(labels: np.ndarray, seed: int, folds: int = INNER_FOLDS) -> StratifiedKFold:
    """Stratified folds, fewer when the minority class is too small for `folds`."""
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    return StratifiedKFold(n_splits=max(2, min(folds, minority)), shuffle=True, random_state=seed)


def l2_logistic_search(labels: np.ndarray, seed: int, folds: int = INNER_FOLDS) -> GridSearchCV:
    """L2 logistic regression whose C is chosen by the inner folds' log loss, refitted on all given patients."""
    # liblinear: about 40x faster than lbfgs on these small problems (measured on a 97 x 80 training split)
    model = LogisticRegression(solver="liblinear", intercept_scaling=10.0, max_iter=5000, random_state=seed)
    return GridSearchCV(model, {"C": C_GRID}, cv=inner_folds(labels, seed, folds),
                        scoring="neg_log_loss")  # fmt: skip


def fit_linear_branches(features: dict[str, np.ndarray], present: dict[str, np.ndarray], labels: np.ndarray,
                        seed: int = 0) -> LinearBranchFit:  # fmt: skip
    """`features[m]` (N, F_m) and `present[m]` (N,) over the same N training patients; labels (N,) in {0, 1}."""
    names = list(features)
    blocks = [np.where(present[m][:, None], np.nan_to_num(features[m]), 0.0) for m in names]
    x = np.concatenate(blocks, axis=1)
    y = np.asarray(labels).astype(int)
    search = l2_logistic_search(y, seed).fit(x, y)
    model = search.best_estimator_
    out_of_fold = cross_val_predict(clone(model), x, y, cv=inner_folds(y, seed), method="decision_function")
    coefficients, centers, start = {}, {}, 0
    for name, block in zip(names, blocks, strict=True):
        width = block.shape[1]
        coefficients[name] = model.coef_[0, start : start + width].copy()
        has = present[name]
        centers[name] = block[has].mean(axis=0) if has.any() else np.zeros(width)
        start += width
    return LinearBranchFit(coefficients, centers, float(search.best_params_["C"]),
                           float(-search.best_score_), out_of_fold - model.decision_function(x))  # fmt: skip
