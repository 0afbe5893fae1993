"""Choose each table modality's branch architecture from its training data, by an explicit rule.

Candidates: `linear` (L2 logistic regression, penalty by inner CV), `xgboost` (gradient-boosted trees) and `mlp`
(the two-layer perceptron). Each is scored by AUROC on patients it was not fitted on:
- training patients with the modality < LARGE_TRAINING: out-of-fold predictions over INNER_FOLDS stratified
  inner folds of the training split (a validation split of a small cohort holds too few events to rank
  candidates);
- otherwise: fitted on the training split, scored on the validation split.
Below MIN_NONLINEAR_TRAINING training patients the branch is linear without a contest: on a 139-patient real
cohort (NKI-70) the inner-CV comparison picked the MLP in one fold of five by chance, and that fold lost to the
regression. Otherwise the best non-linear candidate must beat the linear branch by MARGIN AUROC: the simpler
branch wins ties, since it is exact to explain and cannot overfit a small cohort the way a network can; trees
win ties with the MLP (exact TreeSHAP, no start-up of gradient training).

The xgboost candidate is scored with fixed settings (300 trees of depth 3, learning rate 0.05): the branch
itself then tunes depth and rounds on inner folds (models/tree_branches.py). The MLP candidate is scored with
scikit-learn's MLPClassifier of the branch's width (one hidden layer of 32,
early stopping on a tenth of the patients) rather than the torch branch itself: one Lightning start per inner
fold would cost more than the whole linear path, and the question asked here is only whether this modality has
non-linear signal a network can find at this sample size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from clinfuse.models.linear_branches import inner_folds, l2_logistic_search
from clinfuse.models.tree_branches import THREADS
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neural_network import MLPClassifier
from xgboost import XGBClassifier

LARGE_TRAINING = 2000
MIN_NONLINEAR_TRAINING = 500
MARGIN = 0.01
CANDIDATES = ("linear", "xgboost", "mlp")  # the non-linear ones in order of preference on a tie


@dataclass(frozen=True)
class BranchChoice:
    architecture: str
    auroc: dict[str, float]
    method: str  # "inner-cv", "validation", or why there was no contest

    def to_json(self) -> dict:
        return {"architecture": self.architecture, "method": self.method,
                "auroc": {k: round(v, 4) for k, v in self.auroc.items()}}  # fmt: skip


def _candidate(name: str, seed: int, labels: np.ndarray):
    if name == "linear":
        return l2_logistic_search(labels, seed, folds=3)
    if name == "xgboost":
        return XGBClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                             tree_method="hist", random_state=seed, n_jobs=THREADS)  # fmt: skip
    return MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-2, early_stopping=True, max_iter=300, random_state=seed)


def choose_table_branch(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                        seed: int = 0) -> BranchChoice:  # fmt: skip
    """The architecture for one table modality, from the patients of each split who have it."""
    y_train = np.asarray(y_train).astype(int)
    y_val = np.asarray(y_val).astype(int)
    if len(y_train) < MIN_NONLINEAR_TRAINING:
        return BranchChoice("linear", {}, f"fewer than {MIN_NONLINEAR_TRAINING} training patients")
    use_validation = len(y_train) >= LARGE_TRAINING and 0 < y_val.sum() < len(y_val)
    scores = {}
    for name in CANDIDATES:
        model = _candidate(name, seed, y_train)
        if use_validation:
            predicted = model.fit(x_train, y_train).predict_proba(x_val)[:, 1]
            scores[name] = float(roc_auc_score(y_val, predicted))
        else:
            folds = inner_folds(y_train, seed)
            predicted = cross_val_predict(model, x_train, y_train, cv=folds, method="predict_proba")[:, 1]
            scores[name] = float(roc_auc_score(y_train, predicted))
    best = max(CANDIDATES[1:], key=lambda name: scores[name])  # max keeps the first of equal scores
    architecture = best if scores[best] >= scores["linear"] + MARGIN else "linear"
    return BranchChoice(architecture, scores, "validation" if use_validation else "inner-cv")
