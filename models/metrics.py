"""Discrimination and calibration metrics with percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

Metric = Callable[[np.ndarray, np.ndarray], float]
BATCH_CELLS = 2_000_000  # resamples x patients per batched step (memory: a few arrays of this many floats)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def auprc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(average_precision_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(brier_score_loss(labels, probabilities))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by bin size."""
    predicted, observed, counts = reliability_curve(labels, probabilities, bins)
    return float(np.sum(counts * np.abs(observed - predicted)) / len(labels))


def ece_if_perfectly_calibrated(labels: np.ndarray, probabilities: np.ndarray, resamples: int = 1000, seed: int = 0,
                                bins: int = 10) -> dict[str, float]:  # fmt: skip
    """The ECE's sampling noise at this test size: the ECE a perfectly calibrated model with these predictions
    would show, with labels drawn from the predictions themselves. Binned ECE is biased upwards on small
    splits (on 150 patients a perfectly calibrated model averages about 0.08), so an observed ECE is only
    evidence of miscalibration where it exceeds this distribution; `p_value` is the share of draws at least
    as large as the observed ECE."""
    rng = np.random.default_rng(seed)
    probabilities = np.asarray(probabilities, np.float64)
    n = len(probabilities)
    chunk = max(1, BATCH_CELLS // max(n, 1))
    # successive blocks of one stream: the draws of one rng.random(n) per resample, in order
    draws = np.concatenate([_ece_rows(rng.random((min(chunk, resamples - start), n)) < probabilities, probabilities,
                                      bins) for start in range(0, resamples, chunk)])  # fmt: skip
    observed = _ece_rows(np.asarray(labels)[None, :], probabilities, bins)[0]  # the draws' arithmetic: ties stay ties
    return {"mean": float(draws.mean()), "p95": float(np.quantile(draws, 0.95)),
            "p_value": float(np.mean(draws >= observed))}  # fmt: skip


def _ece_rows(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> np.ndarray:
    """expected_calibration_error of each row of outcomes (R, N) against the same probabilities (N,)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    members = (which[:, None] == np.unique(which)[None, :]).astype(float)  # (N, non-empty bins)
    counts = members.sum(axis=0)
    predicted = probabilities @ members / counts
    observed = labels.astype(float) @ members / counts
    return np.sum(counts * np.abs(observed - predicted), axis=1) / labels.shape[1]


def describe_ece_noise(ece: float, noise: dict[str, float], n_test: int) -> str:
    """One sentence for reports and model cards: the observed ECE against `ece_if_perfectly_calibrated`."""
    return (f"On {n_test} test patients a perfectly calibrated model would show an ECE of {noise['mean']:.3f} "
            f"on average (95th percentile {noise['p95']:.3f}); the observed {ece:.3f} has p = "
            f"{noise['p_value']:.2f}.")  # fmt: skip


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> tuple[np.ndarray, ...]:
    """Mean predicted, observed rate and count per non-empty equal-width bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    kept = [b for b in range(bins) if (which == b).any()]
    predicted = np.array([probabilities[which == b].mean() for b in kept])
    observed = np.array([labels[which == b].mean() for b in kept])
    counts = np.array([(which == b).sum() for b in kept])
    return predicted, observed, counts


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, metric: Metric, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:  # fmt: skip
    """Percentile bootstrap interval of `metric` over patients resampled with replacement. AUROC and AUPRC are
    computed for all resamples at once from each resample's patient counts (a loop of 1,000 scikit-learn calls took
    1-2 s per interval, and an evaluation asks for about ten); any other metric is called per resample."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if len(np.unique(labels)) < 2:
        return None
    samples = bootstrap_samples(labels, resamples, seed)
    batched = _BATCHED.get(metric)
    if batched is not None:
        values = batched(labels, scores, resample_counts(samples, len(labels)))
    else:
        values = np.array([metric(labels[sample], scores[sample]) for sample in samples])
    tail = (1.0 - level) / 2.0
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))]


def bootstrap_samples(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(kept resamples, n) patient indices drawn with replacement; resamples holding one outcome only are left out
    (no discrimination or calibration figure is defined there). Every bootstrap of an evaluation draws these."""
    n = len(labels)
    samples = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # = one resample per call, in order
    drawn = np.asarray(labels)[samples]
    return samples[drawn.min(axis=1) != drawn.max(axis=1)]


def resample_counts(samples: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n): how often each patient was drawn into each resample."""
    offsets = np.arange(len(samples))[:, None] * n
    return np.bincount((samples + offsets).ravel(), minlength=len(samples) * n).reshape(len(samples), n).astype(float)


def _tie_groups(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray, descending: bool):
    """Per resample and distinct score (in score order), the drawn positives and negatives: (R, G) each."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    positive = (labels[order] == labels.max()).astype(float)
    weights = counts[:, order]
    return np.add.reduceat(weights * positive, starts, axis=1), np.add.reduceat(
        weights * (1 - positive), starts, axis=1
    )


def _auroc_batched(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC of each resample (ties count one half): scikit-learn's roc_auc_score on the resample."""
    positives, negatives = _tie_groups(labels, scores, counts, descending=False)
    below = np.cumsum(negatives, axis=1) - negatives
    wins = np.sum(positives * (below + 0.5 * negatives), axis=1)
    return wins / (positives.sum(axis=1) * negatives.sum(axis=1))


def _auprc_batched(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of each resample, sum over thresholds of (recall gain x precision): scikit-learn's
    average_precision_score on the resample (scores absent from a resample add no recall, so no term)."""
    positives, negatives = _tie_groups(labels, scores, counts, descending=True)
    true_pos, false_pos = np.cumsum(positives, axis=1), np.cumsum(negatives, axis=1)
    flagged = true_pos + false_pos
    precision = np.divide(true_pos, flagged, out=np.zeros_like(true_pos), where=flagged > 0)
    recall = true_pos / true_pos[:, -1:]
    gain = np.diff(recall, axis=1, prepend=0.0)
    return np.sum(gain * precision, axis=1)


_BATCHED: dict[Metric, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    auroc: _auroc_batched,
    auprc: _auprc_batched,
}
