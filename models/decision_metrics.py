"""Clinical decision metrics of calibrated risks: operating points, calibration slope and intercept, net benefit.

An alert is raised when the calibrated risk is at or above the threshold. Undefined values (PPV when nobody is
alerted, a slope without enough events) are NaN in arrays and None in dictionaries, never a made-up number.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

ALERT_METRICS = ("sensitivity", "specificity", "ppv", "npv", "alerts_per_100")
# A logistic slope is estimated only with at least this many events and as many non-events (the usual
# 10-events-per-parameter rule); below it the estimate is mostly noise.
MIN_EVENTS_FOR_SLOPE = 10
_RISK_CLIP = 1e-7  # keeps logit(p) finite for risks rounded to exactly 0 or 1

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


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
    offset = _logit(probabilities)
    events = labels.sum()
    return float(brentq(lambda a: expit(a + offset).sum() - events, -50.0, 50.0))


def calibration_slope(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Calibration slope: b in logit P(y=1) = a + b·logit(p), unpenalised logistic regression. b < 1 means risks
    are too extreme, b > 1 too moderate. None without both outcomes or when p separates them (every event's risk
    at or above every non-event's, or below): b then has no finite maximum-likelihood value."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    scores = _logit(probabilities)
    if scores[~labels].max() <= scores[labels].min() or scores[labels].max() <= scores[~labels].min():
        return None
    # newton-cholesky: a few exact Newton steps on two parameters, where lbfgs took 10x longer under load
    model = LogisticRegression(C=np.inf, solver="newton-cholesky").fit(scores[:, None], labels)
    return float(model.coef_[0, 0])


def calibration_intercept_and_slope(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """[calibration intercept, calibration slope], NaN where undefined (a `Statistic` for the bootstrap)."""
    values = (calibration_intercept(labels, probabilities), calibration_slope(labels, probabilities))
    return np.array([np.nan if v is None else v for v in values])


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
) -> np.ndarray:
    """Percentile bootstrap interval, (k, 2), of each of the k values `statistic` returns, over patients resampled
    with replacement. The draws are those of `metrics.bootstrap_ci` (same seed, resamples with one outcome
    skipped), so every CI of an evaluation comes from the same resamples; a value undefined in a resample (NaN)
    is left out of that value's interval, which is NaN when it was never defined."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        sample = rng.integers(0, len(labels), size=len(labels))
        if labels[sample].min() == labels[sample].max():
            continue
        values.append(np.ravel(statistic(labels[sample], probabilities[sample])))
    tail = (1.0 - level) / 2.0
    if not values:
        return np.full((len(np.ravel(statistic(labels, probabilities))), 2), np.nan)
    stacked = np.array(values, float)
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
