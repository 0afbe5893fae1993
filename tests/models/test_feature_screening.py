"""Screening of table inputs: informative features pass, noise mostly does not, and the edge cases hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clinfuse.models.encoders.table import TableMLP
from clinfuse.models.feature_screening import screen_features


def _table(seed: int = 0, n: int = 400, informative: int = 8, noise: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-1.5 * score))).astype(int)
    signal = score[:, None] * rng.uniform(0.8, 1.5, informative) + rng.normal(size=(n, informative))
    return np.hstack([signal, rng.normal(size=(n, noise))]), labels


def test_informative_features_pass_and_false_discoveries_stay_near_the_rate() -> None:
    false_discovery_shares = []
    for seed in range(20):
        features, labels = _table(seed)
        keep = screen_features(features, labels, fdr=0.1, min_features=2).keep
        assert keep[:8].all(), seed
        false_discovery_shares.append(keep[8:].sum() / keep.sum())
    assert np.mean(false_discovery_shares) <= 0.15  # Benjamini-Hochberg: expected share <= 0.1


def test_the_summary_lists_kept_features_by_strength() -> None:
    features, labels = _table()
    result = screen_features(features, labels, fdr=0.1, min_features=2)
    summary = result.summary([f"g{i}" for i in range(features.shape[1])])
    assert summary["kept"] == result.keep.sum() and summary["of"] == 308
    listed = [int(name[1:]) for name in summary["kept_features"]]
    assert sorted(listed) == list(np.flatnonzero(result.keep))
    assert list(result.p_values[listed]) == sorted(result.p_values[listed])


def test_a_modality_without_signal_keeps_its_most_associated_features() -> None:
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(200, 50)), rng.integers(0, 2, 200)
    result = screen_features(features, labels, fdr=0.05, min_features=10)
    assert result.keep.sum() == 10
    assert set(np.flatnonzero(result.keep)) == set(np.argsort(result.p_values)[:10])


def test_constant_features_and_a_single_outcome_are_handled() -> None:
    features, labels = _table(noise=20)
    features[:, -1] = 3.0
    result = screen_features(features, labels, fdr=0.1, min_features=1)
    assert result.p_values[-1] == 1.0 and not result.keep[-1]
    assert screen_features(features, np.zeros(len(labels)), fdr=0.1, min_features=1).keep.all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        screen_features(features, labels, fdr=0.0, min_features=1)


def test_a_screened_out_feature_cannot_move_the_table_encoder() -> None:
    encoder = TableMLP(5, 4, dropout=0.0).eval()
    encoder.set_feature_mask(torch.tensor([True, True, False, True, True]))
    features = torch.randn(3, 5)
    changed = features.clone()
    changed[:, 2] += 100.0
    assert torch.equal(encoder({"features": features}), encoder({"features": changed}))
    assert "feature_mask" in encoder.state_dict()  # saved with the weights, so scoring screens the same way
