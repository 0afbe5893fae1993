"""Calibration and metrics against cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from clinfuse.models import metrics
from clinfuse.models.calibration import PlattCalibrator, fit_platt_weighted


def test_platt_scaling_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, size=20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    overconfident = (true_logit - 0.5) * 2.0  # the model's logit: slope 2, shifted
    calibrator = PlattCalibrator.fit(overconfident, labels)
    assert abs(calibrator.slope - 0.5) < 0.05 and abs(calibrator.intercept - 0.5) < 0.1
    before = metrics.expected_calibration_error(labels, 1 / (1 + np.exp(-overconfident)))
    after = metrics.expected_calibration_error(labels, calibrator.probability(overconfident))
    assert after < 0.02 < before
    assert PlattCalibrator.from_json(calibrator.to_json()) == calibrator


def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_for_wrong_ones() -> None:
    labels = np.array([0, 0, 0, 1] * 25 + [1, 1, 1, 0] * 25, dtype=float)
    probabilities = np.array([0.25] * 100 + [0.75] * 100)
    assert metrics.expected_calibration_error(labels, probabilities) < 1e-9
    assert metrics.expected_calibration_error(labels, 1 - probabilities) > 0.4


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_patients() -> None:
    rng = np.random.default_rng(1)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        return labels, labels + rng.normal(0, 1.0, n)

    small, large = sample(100), sample(2000)
    ci_small = metrics.bootstrap_ci(*small, metrics.auroc, resamples=300)
    ci_large = metrics.bootstrap_ci(*large, metrics.auroc, resamples=300)
    assert ci_small[0] <= metrics.auroc(*small) <= ci_small[1]
    assert ci_large[1] - ci_large[0] < ci_small[1] - ci_small[0]
    assert metrics.bootstrap_ci(np.ones(10), np.arange(10.0), metrics.auroc) is None


def test_ece_noise_reference_separates_calibrated_from_miscalibrated_predictions() -> None:
    rng = np.random.default_rng(3)
    probabilities = rng.uniform(0.05, 0.95, size=150)
    calibrated_labels = (rng.random(150) < probabilities).astype(int)
    calibrated = metrics.ece_if_perfectly_calibrated(calibrated_labels, probabilities, resamples=400)
    assert 0.04 < calibrated["mean"] < 0.15  # binned ECE is far from 0 on 150 patients even when calibrated
    assert calibrated["p_value"] > 0.05
    overconfident = np.clip(probabilities + 0.3 * np.sign(probabilities - 0.5), 0.01, 0.99)
    wrong = metrics.ece_if_perfectly_calibrated(calibrated_labels, overconfident, resamples=400)
    assert wrong["p_value"] < 0.01


def test_batched_platt_fits_equal_one_fit_per_resample() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=150) * 2
    labels = (rng.random(150) < 1 / (1 + np.exp(-(0.6 * logits - 0.4)))).astype(float)
    samples = [rng.integers(0, 150, 150) for _ in range(5)]
    counts = np.array([np.bincount(s, minlength=150) for s in samples], dtype=float)
    slopes, intercepts = fit_platt_weighted(logits, labels, counts)
    for sample, slope, intercept in zip(samples, slopes, intercepts, strict=True):
        single = PlattCalibrator.fit(logits[sample], labels[sample])
        assert slope == pytest.approx(single.slope, abs=1e-3)
        assert intercept == pytest.approx(single.intercept, abs=1e-3)


@pytest.mark.parametrize("n, decimals", [(150, None), (60, 1), (25, 0)])
@pytest.mark.parametrize("metric", [metrics.auroc, metrics.auprc])
def test_batched_bootstrap_equals_scikit_learn_called_per_resample(n: int, decimals: int | None, metric) -> None:
    """AUROC and AUPRC intervals are computed for all resamples at once: the same draws, and the values
    scikit-learn gives for each resample, ties included (rounded scores)."""
    rng = np.random.default_rng(n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = rng.normal(size=n) + labels
    scores = scores if decimals is None else np.round(scores, decimals)
    draws, values = np.random.default_rng(4), []
    for _ in range(300):
        sample = draws.integers(0, n, size=n)
        if labels[sample].min() != labels[sample].max():
            values.append(metric(labels[sample], scores[sample]))
    expected = [np.quantile(values, 0.025), np.quantile(values, 0.975)]
    np.testing.assert_allclose(metrics.bootstrap_ci(labels, scores, metric, 300, 4), expected, rtol=0, atol=1e-12)


def test_ece_noise_equals_one_draw_and_one_ece_per_resample() -> None:
    """The perfectly-calibrated reference is computed for all draws at once: the same draws and ECEs as a loop,
    and ties with the observed ECE (constant risks make them common) still count towards the p-value."""
    rng = np.random.default_rng(8)
    for probabilities in (rng.uniform(0.02, 0.98, size=90), np.full(12, 0.3)):
        labels = (rng.random(len(probabilities)) < probabilities).astype(int)
        draws = np.random.default_rng(5)
        eces = np.array([metrics.expected_calibration_error(draws.random(len(probabilities)) < probabilities,
                                                            probabilities) for _ in range(200)])  # fmt: skip
        observed = metrics.expected_calibration_error(labels, probabilities)
        result = metrics.ece_if_perfectly_calibrated(labels, probabilities, resamples=200, seed=5)
        assert result["mean"] == pytest.approx(eces.mean(), rel=0, abs=1e-12)
        assert result["p95"] == pytest.approx(np.quantile(eces, 0.95), rel=0, abs=1e-12)
        assert result["p_value"] == np.mean(eces >= observed - 1e-12)
