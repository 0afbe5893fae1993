"""Figures of the clinical decision section: ROC and precision-recall curves, and the decision curve (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    """matplotlib's pyplot on the Agg backend: evaluation runs on servers without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_pr_plot(labels: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> None:
    """ROC and precision-recall curves of each model side by side (scikit-learn's displays, chance levels drawn)."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt = _pyplot()
    figure, (roc, pr) = plt.subplots(1, 2, figsize=(10, 5), dpi=110)
    for index, (name, score) in enumerate(scores.items()):
        RocCurveDisplay.from_predictions(labels, score, name=name, ax=roc, plot_chance_level=index == 0)
        PrecisionRecallDisplay.from_predictions(labels, score, name=name, ax=pr, plot_chance_level=index == 0)
    roc.set_title(f"ROC, test split (n={len(labels)})")
    pr.set_title(f"Precision-recall, test split ({int(np.sum(labels))} events)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def decision_curve_plot(curve: dict, path: Path) -> None:
    """Net benefit against the risk threshold for each model, treat-all and treat-none (Vickers & Elkin)."""
    plt = _pyplot()
    thresholds = np.asarray(curve["thresholds"])
    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=110)
    styles = {
        "treat_all": {"color": "grey", "linewidth": 1},
        "treat_none": {"color": "black", "linewidth": 1, "linestyle": "--"},
    }
    for name, values in curve["net_benefit"].items():
        axis.plot(thresholds, values, label=name.replace("_", " "), **styles.get(name, {"linewidth": 2}))
    best = max(max(values) for values in curve["net_benefit"].values())
    axis.set_ylim(-0.05, max(best, 0.05) * 1.1)
    axis.set_xlim(thresholds.min(), thresholds.max())
    axis.set_xlabel("threshold risk (alert at calibrated risk >= threshold)")
    axis.set_ylabel("net benefit")
    axis.set_title("Decision curve, test split")
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
