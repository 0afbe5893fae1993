"""Univariate feature screening with false-discovery-rate control, fitted on the training split only.

An expression table has about a thousand genes for a few hundred patients. A network trained on all of them
spreads small weights over every gene, so a patient's attributions rank noise genes beside the informative
ones, and the branch overfits. Screening first (Fan and Lv's sure independence screening, with the
Benjamini-Hochberg procedure deciding how many to keep) is the usual remedy in omics models: each feature's
association with the label is tested alone (scikit-learn's ANOVA F-test), and the encoder sees only the
features that pass. The mask is part of the model, so scoring and explanations use the same features, and a
screened-out feature's attribution is exactly zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.feature_selection import f_classif


@dataclass(frozen=True)
class ScreeningResult:
    """Which features passed, their p-values, and the settings that chose them."""

    keep: np.ndarray  # bool, one per feature
    p_values: np.ndarray
    fdr: float
    min_features: int

    def summary(self, names: list[str], listed: int = 50) -> dict:
        """What run.json records: how many were kept of how many, and the kept names by p-value (first `listed`)."""
        kept = np.flatnonzero(self.keep)
        ordered = kept[np.argsort(self.p_values[kept], kind="stable")]
        return {"kept": int(self.keep.sum()), "of": int(self.keep.size), "fdr": self.fdr,
                "min_features": self.min_features, "kept_features": [names[i] for i in ordered[:listed]]}  # fmt: skip


def screen_features(features: np.ndarray, labels: np.ndarray, fdr: float, min_features: int) -> ScreeningResult:
    """Keep the features whose association with the label survives Benjamini-Hochberg at `fdr`, and never fewer
    than `min_features` (the most associated ones), so a weak modality still has inputs.

    `features` must be complete (the feature cache imputes); a constant feature gets p = 1. With one outcome
    only there is nothing to test, and every feature is kept.
    """
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"the screening FDR must lie between 0 and 1, got {fdr}")
    if len(np.unique(labels)) < 2:  # nothing to test against: keep every feature
        return ScreeningResult(np.ones(features.shape[1], bool), np.ones(features.shape[1]), fdr, min_features)
    with warnings.catch_warnings():  # constant features: reported as p = 1 below
        warnings.simplefilter("ignore", (UserWarning, RuntimeWarning))
        _, p_values = f_classif(np.asarray(features, dtype=np.float64), np.asarray(labels))
    p_values = np.where(np.isfinite(p_values), p_values, 1.0)
    keep = stats.false_discovery_control(p_values) <= fdr
    floor = min(min_features, p_values.size)
    if keep.sum() < floor:
        keep[np.argsort(p_values, kind="stable")[:floor]] = True
    return ScreeningResult(keep=keep, p_values=p_values, fdr=fdr, min_features=min_features)
