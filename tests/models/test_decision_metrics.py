"""Operating points, calibration slope and intercept, net benefit: hand-computed cases and known properties."""

from __future__ import annotations

import numpy as np
import pytest
from clinfuse.models import decision_metrics as dm
from clinfuse.models import metrics
from scipy.special import expit, logit


def _calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Risks p and outcomes drawn from them: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    probabilities = expit(rng.normal(-1.0, 1.5, n))
    return (rng.random(n) < probabilities).astype(int), probabilities


def test_alert_statistics_match_a_hand_counted_confusion_matrix() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05, 0.5])
    # at 0.5: alerts 0.9, 0.6 (events) and 0.7, 0.5 (non-events): TP 2, FP 2, FN 1, TN 3
    at_half, at_095 = dm.alert_statistics(labels, probabilities, [0.5, 0.95])
    np.testing.assert_allclose(at_half, [2 / 3, 3 / 5, 2 / 4, 3 / 4, 50.0])
    assert at_095[0] == 0 and at_095[1] == 1 and np.isnan(at_095[2]), "no alerts: PPV undefined, not 0"
    assert at_095[3] == pytest.approx(5 / 8) and at_095[4] == 0


def test_threshold_for_target_sensitivity_is_the_highest_that_reaches_it() -> None:
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    probabilities = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.85, 0.5, 0.1])
    assert dm.threshold_for_sensitivity(labels, probabilities, 0.6) == 0.7  # 3 of 5 events at p >= 0.7
    assert dm.threshold_for_sensitivity(labels, probabilities, 0.8) == 0.4
    assert dm.threshold_for_sensitivity(np.zeros(4), np.linspace(0, 1, 4), 0.8) is None

    validation_labels, validation = _calibrated_sample(400, seed=5)
    for target in (0.8, 0.9):
        threshold = dm.threshold_for_sensitivity(validation_labels, validation, target)
        sensitivity = dm.alert_statistics(validation_labels, validation, [threshold])[0, 0]
        assert sensitivity >= target
        higher = np.min(validation[validation > threshold])  # the next stricter threshold misses the target
        assert dm.alert_statistics(validation_labels, validation, [higher])[0, 0] < target


def test_perfectly_calibrated_model_has_slope_one_and_intercept_zero() -> None:
    labels, probabilities = _calibrated_sample(20000, seed=0)
    assert dm.calibration_slope(labels, probabilities) == pytest.approx(1.0, abs=0.05)
    assert dm.calibration_intercept(labels, probabilities) == pytest.approx(0.0, abs=0.05)
    overconfident = expit(2.0 * logit(probabilities))  # risks twice as extreme on the logit scale
    assert dm.calibration_slope(labels, overconfident) == pytest.approx(0.5, abs=0.03)
    too_low = expit(logit(probabilities) - 1.0)  # every risk one logit too low
    assert dm.calibration_intercept(labels, too_low) == pytest.approx(1.0, abs=0.05)
    assert dm.calibration_slope(labels, too_low) == pytest.approx(1.0, abs=0.05)


def test_calibration_intercept_by_hand_and_undefined_cases() -> None:
    # constant risk 0.2, observed rate 0.5: a = logit(0.5) - logit(0.2) = log(4)
    labels, constant = np.array([1, 0] * 20), np.full(40, 0.2)
    assert dm.calibration_intercept(labels, constant) == pytest.approx(np.log(4.0))
    assert dm.calibration_intercept(np.ones(5), np.full(5, 0.3)) is None
    assert dm.calibration_slope(np.ones(5), np.full(5, 0.3)) is None
    separated = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert dm.calibration_slope(np.array([0, 0, 0, 1, 1, 1]), separated) is None, "no finite slope when separated"


def test_group_calibration_says_too_few_below_the_minimum_events() -> None:
    labels, probabilities = _calibrated_sample(300, seed=2)
    entry = dm.group_calibration(labels, probabilities)
    assert isinstance(entry["calibration_slope"], float) and "calibration_slope_note" not in entry
    assert entry["observed_risk"] == pytest.approx(labels.mean())
    assert entry["mean_predicted_risk"] == pytest.approx(probabilities.mean())
    few = np.r_[np.flatnonzero(labels)[: dm.MIN_EVENTS_FOR_SLOPE - 1], np.flatnonzero(labels == 0)[:50]]
    small = dm.group_calibration(labels[few], probabilities[few])
    assert small["calibration_slope"] is None and small["calibration_slope_note"].startswith("too few: 9 events")
    assert small["calibration_intercept"] is not None


def test_net_benefit_by_hand_treat_all_and_a_perfect_model() -> None:
    labels = np.array([1, 1, 0, 0])
    probabilities = np.array([0.8, 0.3, 0.6, 0.1])
    # t = 0.5: TP 1, FP 1 -> 1/4 - 1/4 * 1; t = 0.25: TP 2, FP 1 -> 2/4 - 1/4 * (1/3)
    np.testing.assert_allclose(dm.net_benefit(labels, probabilities, [0.5, 0.25]), [0.0, 0.5 - 1 / 12])

    outcomes, risks = _calibrated_sample(500, seed=4)
    thresholds = np.linspace(0.01, 0.5, 50)
    prevalence = outcomes.mean()
    treat_all = prevalence - (1 - prevalence) * thresholds / (1 - thresholds)
    np.testing.assert_allclose(dm.net_benefit_treat_all(prevalence, thresholds), treat_all)
    np.testing.assert_allclose(dm.net_benefit(outcomes, np.ones_like(risks), thresholds), treat_all)
    np.testing.assert_allclose(dm.net_benefit(outcomes, outcomes.astype(float), thresholds), prevalence)
    model = dm.net_benefit(outcomes, risks, thresholds)
    assert np.all(model >= np.maximum(treat_all, 0) - 0.02), "a calibrated model is never clearly worse than both"


def test_bootstrap_percentiles_draw_the_same_resamples_as_the_auroc_interval() -> None:
    labels, probabilities = _calibrated_sample(120, seed=6)
    interval = dm.bootstrap_percentiles(
        labels, probabilities, lambda y, p: np.array([metrics.auroc(y, p)]), resamples=200, seed=3
    )
    # the same resamples: equal up to float rounding (the AUROC interval is computed for all resamples at once)
    np.testing.assert_allclose(interval[0], metrics.bootstrap_ci(labels, probabilities, metrics.auroc, 200, 3),
                               rtol=0, atol=1e-12)  # fmt: skip
    undefined = dm.bootstrap_percentiles(labels, probabilities, lambda y, p: np.array([np.nan, 1.0]), 50, 0)
    assert np.isnan(undefined[0]).all() and undefined[1].tolist() == [1.0, 1.0]


def test_calibration_fits_are_the_maximum_likelihood_estimates() -> None:
    """The intercept solves its score equation and the slope is scikit-learn's unpenalised logistic regression
    solved to full precision."""
    from sklearn.linear_model import LogisticRegression

    labels, probabilities = _calibrated_sample(300, seed=9)
    risks = expit(1.7 * logit(probabilities) - 0.4)
    intercept = dm.calibration_intercept(labels, risks)
    assert expit(intercept + logit(risks)).sum() == pytest.approx(labels.sum(), rel=1e-12)
    exact = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-14, max_iter=1000)
    assert dm.calibration_slope(labels, risks) == pytest.approx(exact.fit(logit(risks)[:, None], labels).coef_[0, 0],
                                                                rel=1e-9)  # fmt: skip


def test_batched_bootstrap_statistics_equal_the_statistic_on_each_resample() -> None:
    """calibration_batched and alert_statistics_batched (every resample at once, patients weighted by their
    draw counts) give each resample's own values: separated resamples (no slope) and alert-free ones (no PPV)
    included, and the same intervals as the loop over resamples."""
    labels, probabilities = _calibrated_sample(30, seed=3)
    probabilities = expit(3.0 * logit(probabilities))  # sharp risks: some resamples are separated
    samples = metrics.bootstrap_samples(labels, 60, seed=1)
    counts = metrics.resample_counts(samples, len(labels))
    thresholds = (0.2, 0.5, 0.99)
    calibration = dm.calibration_batched(labels, probabilities, counts)
    alerts = dm.alert_statistics_batched(labels, probabilities, thresholds, counts)
    for sample, fitted, alerted in zip(samples, calibration, alerts, strict=True):
        np.testing.assert_allclose(fitted, dm.calibration_intercept_and_slope(labels[sample], probabilities[sample]),
                                   rtol=0, atol=1e-12)  # fmt: skip
        np.testing.assert_array_equal(alerted, dm.alert_statistics(labels[sample], probabilities[sample],
                                                                   thresholds).ravel())  # fmt: skip
    assert np.isnan(calibration[:, 1]).any() and np.isfinite(calibration[:, 1]).any()
    assert np.isnan(alerts).any()
    looped = dm.bootstrap_percentiles(labels, probabilities, dm.calibration_intercept_and_slope, 60, 1)
    batched = dm.bootstrap_percentiles(labels, probabilities, dm.calibration_intercept_and_slope, 60, 1,
                                       batched=dm.calibration_batched)  # fmt: skip
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-12)
