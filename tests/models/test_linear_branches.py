"""Linear table branches: the joint fit is the concatenated logistic regression, explained exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clinfuse.models.branch_selection import choose_table_branch
from clinfuse.models.encoders.linear_table import LinearTableEncoder
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.linear_branches import fit_linear_branches
from clinfuse.models.modality_weights import fit_head_weights
from sklearn.linear_model import LogisticRegression


def _two_modalities(n: int = 240, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    genes, clinical = rng.normal(size=(n, 12)), rng.normal(size=(n, 3))
    logit = 1.2 * genes[:, 0] - 0.8 * genes[:, 1] + 1.0 * clinical[:, 0]
    return {"genes": genes, "clinical": clinical}, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_joint_fit_is_the_concatenated_logistic_regression() -> None:
    features, labels = _two_modalities()
    present = {name: np.ones(len(labels), bool) for name in features}
    fit = fit_linear_branches(features, present, labels, seed=0)
    reference = LogisticRegression(C=fit.inverse_penalty, solver="liblinear", intercept_scaling=10.0, max_iter=5000)
    reference.fit(np.hstack([features["genes"], features["clinical"]]), labels)
    joined = np.concatenate([fit.coefficients["genes"], fit.coefficients["clinical"]])
    np.testing.assert_allclose(joined, reference.coef_[0], rtol=1e-6, atol=1e-8)
    assert fit.inverse_penalty in fit.summary().values() and 0 < fit.inner_cv_log_loss < np.log(2) + 0.05


def test_fusion_of_linear_branches_reproduces_the_regression_and_attributions_are_exact() -> None:
    features, labels = _two_modalities()
    present = {name: np.ones(len(labels), bool) for name in features}
    fit = fit_linear_branches(features, present, labels, seed=0)
    encoders = {name: LinearTableEncoder(x.shape[1], embed_dim=8) for name, x in features.items()}
    model = LateFusionModel(encoders, embed_dim=8).eval()
    assert not any(p.requires_grad for p in model.branches.parameters())  # Lightning cannot move the fit
    for name, encoder in encoders.items():
        encoder.set_coefficients(torch.as_tensor(fit.coefficients[name]), torch.as_tensor(fit.feature_centers[name]))
    batch = {"inputs": {n: {"features": torch.as_tensor(x, dtype=torch.float32)} for n, x in features.items()},
             "present": torch.ones(len(labels), 2)}  # fmt: skip
    with torch.no_grad():
        fused = model(batch)["fusion_logit"].numpy()
    expected = sum(features[n] @ fit.coefficients[n] for n in features)
    np.testing.assert_allclose(fused - fused.mean(), expected - expected.mean(), atol=1e-4)
    encoder = encoders["genes"]
    x = torch.as_tensor(features["genes"][:5], dtype=torch.float32)
    contributions = encoder.contributions(x).numpy()
    centre_score = float(encoder.score(encoder.feature_center.unsqueeze(0).float())[0])
    np.testing.assert_allclose(contributions.sum(axis=1), encoder.score(x).numpy() - centre_score, atol=1e-4)


def test_absent_modality_rows_do_not_shift_the_fit() -> None:
    features, labels = _two_modalities(seed=1)
    present = {"genes": np.ones(len(labels), bool), "clinical": np.arange(len(labels)) % 3 != 0}
    fit = fit_linear_branches(features, present, labels, seed=0)
    np.testing.assert_allclose(fit.feature_centers["clinical"], features["clinical"][present["clinical"]].mean(0))


def test_interaction_weight_is_shrunk_to_zero_when_the_interaction_carries_noise() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(400, 2))
    labels = (rng.random(400) < 1 / (1 + np.exp(-(z[:, 0] + z[:, 1])))).astype(int)
    noise = rng.normal(scale=2.0, size=400)
    weights, kept = fit_head_weights(z, np.ones_like(z), noise, np.zeros(400), labels)
    assert kept < 0.1 and np.all(weights > 0.5)
    signal = 2.0 * z[:, 0] * z[:, 1]
    labels = (rng.random(400) < 1 / (1 + np.exp(-(z[:, 0] + z[:, 1] + signal)))).astype(int)
    _, kept = fit_head_weights(z, np.ones_like(z), signal, np.zeros(400), labels)
    assert kept > 0.7


def test_branch_selection_keeps_linear_signal_linear_and_finds_a_non_linear_one() -> None:
    features, labels = _two_modalities(n=600)
    choice = choose_table_branch(features["genes"], labels, features["genes"][:0], labels[:0], seed=0)
    assert choice.architecture == "linear" and choice.method == "inner-cv"
    small = choose_table_branch(features["genes"][:300], labels[:300], features["genes"][:0], labels[:0], seed=0)
    assert small.architecture == "linear" and small.auroc == {}  # too few patients for a network: no contest
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1200, 4))
    xor = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    flipped = np.where(rng.random(1200) < 0.1, 1 - xor, xor)
    choice = choose_table_branch(x, flipped, x[:0], flipped[:0], seed=0)
    assert choice.architecture in {"xgboost", "mlp"}
    assert choice.auroc[choice.architecture] > choice.auroc["linear"] + 0.2


@pytest.mark.parametrize("n_train", [2500])
def test_large_training_splits_rank_candidates_on_validation(n_train: int) -> None:
    features, labels = _two_modalities(n=n_train + 300, seed=2)
    x = features["genes"]
    choice = choose_table_branch(x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], seed=0)
    assert choice.method == "validation" and choice.architecture == "linear"
