"""Clinical decision metrics of calibrated risks: operating points, calibration slope and intercept, net benefit.

An alert is raised when the calibrated risk is at or above the threshold. Undefined values (PPV when nobody is
alerted, a slope without enough events) are NaN in arrays and None in dictionaries, never a made-up number.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from clinfuse.models.metrics import BATCH_CELLS, bootstrap_samples, resample_counts
from scipy.special import expit, logit
from sklearn.metrics import roc_curve

ALERT_METRICS = ("sensitivity", "specificity", "ppv", "npv", "alerts_per_100")
# A logistic slope is estimated only with at least this many events and as many non-events (the usual
# 10-events-per-parameter rule); below it the estimate is mostly noise.
MIN_EVENTS_FOR_SLOPE = 10
_RISK_CLIP = 1e-7  # keeps logit(p) finite for risks rounded to exactly 0 or 1
_NEWTON_STEPS = 100
_NEWTON_TOLERANCE = 1e-12  # a step this small: quadratic convergence has reached the float precision
_INTERCEPT_BRACKET = 50.0  # |a| beyond it is no calibration intercept of risks clipped to [1e-7, 1 - 1e-7]

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]
# a Statistic of many resamples at once, from how often each patient was drawn into each: (R, N) counts -> (R, k)
BatchedStatistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def alert_statistics(labels: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """(thresholds, ALERT_METRICS) array. With alert = p >= t: sensitivity TP/(TP+FN), specificity TN/(TN+FP),
    PPV TP/(TP+FP), NPV TN/(TN+FN), alerts per 100 patients 100·(TP+FP)/n; NaN where a denominator is 0."""
    labels = np.asarray(labels).astype(bool)
    alerted = np.asarray(probabilities)[None, :] >= np.asarray(thresholds, float)[:, None]
    tp = (alerted & labels).sum(axis=1)
    fp = (alerted & ~labels).sum(axis=1)
    fn, tn = labels.sum() - tp, (~labels).sum() - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack(
            [tp / (tp + fn), tn / (tn + fp), tp / (tp + fp), tn / (tn + fn), 100.0 * (tp + fp) / len(labels)], axis=1
        )


def alert_statistics_batched(labels: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float],
                             counts: np.ndarray) -> np.ndarray:  # fmt: skip
    """alert_statistics of each resample (R, thresholds x ALERT_METRICS, flattened) from its patient counts (R, N):
    the confusion counts are count-weighted sums, so every value is the one of the resample itself."""
    labels = np.asarray(labels).astype(bool)
    alerted = np.asarray(probabilities)[None, :] >= np.asarray(thresholds, float)[:, None]
    tp, fp = counts @ (alerted & labels).T, counts @ (alerted & ~labels).T
    events, patients = counts @ labels, counts.sum(axis=1)
    fn, tn = events[:, None] - tp, (patients - events)[:, None] - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        values = [tp / (tp + fn), tn / (tn + fp), tp / (tp + fp), tn / (tn + fn), 100.0 * (tp + fp) / patients[:, None]]
    return np.stack(values, axis=2).reshape(len(counts), -1)


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float | None:
    """The highest threshold t whose alerts (p >= t) reach sensitivity >= target on these patients: the first
    point of the ROC curve with TPR >= target. None without both outcomes."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    _, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    return float(thresholds[np.argmax(tpr >= target - 1e-12)])


def calibration_intercept(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Calibration-in-the-large: a in logit P(y=1) = a + 1·logit(p), the slope fixed at 1 by an offset. The
    maximum-likelihood a solves Σ y = Σ expit(a + logit p); a > 0 means risks are too low on average. None
    without both outcomes (a is then infinite)."""
    labels = np.asarray(labels, float)
    if labels.min() == labels.max():
        return None
    return float(_intercepts(_logit(probabilities), labels, np.ones((1, len(labels))))[0])


def calibration_slope(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Calibration slope: b in logit P(y=1) = a + b·logit(p), unpenalised logistic regression. b < 1 means risks
    are too extreme, b > 1 too moderate. None without both outcomes or when p separates them (every event's risk
    at or above every non-event's, or below): b then has no finite maximum-likelihood value."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    slope = _slopes(_logit(probabilities), labels, np.ones((1, len(labels))))[0]
    return None if np.isnan(slope) else float(slope)


def calibration_intercept_and_slope(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """[calibration intercept, calibration slope], NaN where undefined (a `Statistic` for the bootstrap)."""
    values = (calibration_intercept(labels, probabilities), calibration_slope(labels, probabilities))
    return np.array([np.nan if v is None else v for v in values])


def calibration_batched(labels: np.ndarray, probabilities: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """calibration_intercept_and_slope of each resample (R, 2) from its patient counts (R, N): the same
    maximum-likelihood fits with each patient weighted by how often it was drawn."""
    scores, labels = _logit(probabilities), np.asarray(labels).astype(bool)
    return np.column_stack([_intercepts(scores, labels.astype(float), counts), _slopes(scores, labels, counts)])


def _intercepts(offset: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per weighting (R, N), the a solving sum w·expit(a + offset) = sum w·y: Newton steps, bisection wherever a
    step would leave the bracket that the signs seen so far leave open. Every row needs both outcomes."""
    events = weights @ labels
    a = np.zeros(len(weights))
    low, high = np.full_like(a, -_INTERCEPT_BRACKET), np.full_like(a, _INTERCEPT_BRACKET)
    for _ in range(_NEWTON_STEPS):
        risk = expit(a[:, None] + offset)
        excess = (weights * risk).sum(axis=1) - events
        low, high = np.where(excess < 0, a, low), np.where(excess > 0, a, high)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = a - excess / (weights * risk * (1.0 - risk)).sum(axis=1)
        following = np.where((newton > low) & (newton < high), newton, (low + high) / 2)
        converged = np.abs(following - a).max() <= _NEWTON_TOLERANCE
        a = following
        if converged:
            break
    return a


def _slopes(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per weighting (R, N), b of the unpenalised logistic regression logit P(y) = a + b·score (the maximum of a
    concave likelihood: Newton steps, halved while the likelihood would fall); NaN where the weighted patients
    are separated by the score, as no finite maximum exists there."""
    slopes = np.full(len(weights), np.nan)
    rows = np.flatnonzero(~_separated(scores, labels, weights))
    if len(rows) == 0:
        return slopes
    weights, y = weights[rows], labels.astype(float)

    def log_likelihood(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = a[:, None] + b[:, None] * scores
        return (weights * (y * z - np.logaddexp(0.0, z))).sum(axis=1)

    a, b = np.zeros(len(rows)), np.ones(len(rows))  # calibrated risks: the answer is near (0, 1)
    current = log_likelihood(a, b)
    for _ in range(_NEWTON_STEPS):
        risk = expit(a[:, None] + b[:, None] * scores)
        residual, curvature = weights * (y - risk), weights * risk * (1.0 - risk)
        g_a, g_b = residual.sum(axis=1), residual @ scores
        h_aa, h_ab, h_bb = curvature.sum(axis=1), curvature @ scores, curvature @ scores**2
        with np.errstate(divide="ignore", invalid="ignore"):  # a curvature lost to rounding: no step there
            determinant = h_aa * h_bb - h_ab**2
            step_a = np.nan_to_num((h_bb * g_a - h_ab * g_b) / determinant, nan=0.0, posinf=0.0, neginf=0.0)
            step_b = np.nan_to_num((h_aa * g_b - h_ab * g_a) / determinant, nan=0.0, posinf=0.0, neginf=0.0)
        fraction = np.ones(len(rows))
        for _ in range(_NEWTON_STEPS):
            trial = log_likelihood(a + fraction * step_a, b + fraction * step_b)
            rises = trial >= current - _NEWTON_TOLERANCE * np.abs(current)
            if rises.all():
                break
            fraction = np.where(rises, fraction, fraction / 2)
        else:  # no rise within the halvings (flat to rounding): stay
            fraction = np.where(rises, fraction, 0.0)
            trial = np.where(rises, trial, current)
        a, b, current = a + fraction * step_a, b + fraction * step_b, trial
        if max(np.abs(fraction * step_a).max(), np.abs(fraction * step_b).max()) <= _NEWTON_TOLERANCE:
            break
    slopes[rows] = b
    return slopes


def _separated(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per weighting, whether the drawn patients' scores put every event at or above every non-event, or at or
    below (an outcome missing counts as separated)."""
    drawn = weights > 0
    events, non_events = drawn & labels, drawn & ~labels
    event_low, event_high = np.where(events, scores, np.inf).min(axis=1), np.where(events, scores, -np.inf).max(axis=1)
    other_low = np.where(non_events, scores, np.inf).min(axis=1)
    other_high = np.where(non_events, scores, -np.inf).max(axis=1)
    return (other_high <= event_low) | (event_high <= other_low)


def group_calibration(
    labels: np.ndarray, probabilities: np.ndarray, min_events: int = MIN_EVENTS_FOR_SLOPE
) -> dict[str, float | str | None]:
    """Observed against mean predicted risk, the calibration intercept (both outcomes needed) and the slope
    (at least `min_events` events and as many non-events, else a 'too few' note) of one group of patients."""
    labels, probabilities = np.asarray(labels, float), np.asarray(probabilities, float)
    events = int(labels.sum())
    non_events = len(labels) - events
    entry: dict[str, float | str | None] = {
        "observed_risk": float(labels.mean()) if len(labels) else None,
        "mean_predicted_risk": float(probabilities.mean()) if len(labels) else None,
        "calibration_intercept": calibration_intercept(labels, probabilities) if len(labels) else None,
        "calibration_slope": None,
    }
    if min(events, non_events) >= min_events:
        entry["calibration_slope"] = calibration_slope(labels, probabilities)
    else:
        entry["calibration_slope_note"] = (
            f"too few: {events} events, {non_events} non-events (a slope needs >= {min_events} of each)"
        )
    return entry


def net_benefit(labels: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Net benefit of alerting at p >= t (Vickers & Elkin 2006): NB(t) = TP/n − FP/n · t/(1−t)."""
    labels = np.asarray(labels).astype(bool)
    thresholds = np.asarray(thresholds, float)
    alerted = np.asarray(probabilities)[None, :] >= thresholds[:, None]
    n = len(labels)
    return (alerted & labels).sum(axis=1) / n - (alerted & ~labels).sum(axis=1) / n * thresholds / (1 - thresholds)


def net_benefit_treat_all(prevalence: float, thresholds: Sequence[float]) -> np.ndarray:
    """Net benefit of treating everyone: prevalence − (1 − prevalence) · t/(1−t) (treating no one is 0)."""
    thresholds = np.asarray(thresholds, float)
    return prevalence - (1 - prevalence) * thresholds / (1 - thresholds)


def bootstrap_percentiles(
    labels: np.ndarray,
    probabilities: np.ndarray,
    statistic: Statistic,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    batched: BatchedStatistic | None = None,
) -> np.ndarray:
    """Percentile bootstrap interval, (k, 2), of each of the k values `statistic` returns, over patients resampled
    with replacement. The draws are those of `metrics.bootstrap_ci` (same seed, resamples with one outcome
    skipped), so every CI of an evaluation comes from the same resamples; a value undefined in a resample (NaN)
    is left out of that value's interval, which is NaN when it was never defined. `batched`, the same statistic
    for many resamples at once (calibration_batched, alert_statistics_batched), replaces the call per resample:
    1,000 calibration fits one at a time took seconds per interval."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    samples = bootstrap_samples(labels, resamples, seed)
    if not len(samples):
        return np.full((len(np.ravel(statistic(labels, probabilities))), 2), np.nan)
    if batched is not None:
        n, chunk = len(labels), max(1, BATCH_CELLS // len(labels))
        stacked = np.concatenate([batched(labels, probabilities, resample_counts(samples[start : start + chunk], n))
                                  for start in range(0, len(samples), chunk)])  # fmt: skip
    else:
        stacked = np.array([np.ravel(statistic(labels[sample], probabilities[sample])) for sample in samples], float)
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is the answer
        return np.nanquantile(stacked, [tail, 1.0 - tail], axis=0).T


def _logit(probabilities: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(probabilities, float), _RISK_CLIP, 1 - _RISK_CLIP))


def format_estimate(value: float | None, interval: list[float] | None, digits: int = 3) -> str:
    """'0.812 [0.700, 0.900]' for reports and model cards; 'n/a' for an undefined value."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")
