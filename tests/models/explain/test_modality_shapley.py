"""Exact modality Shapley values: efficiency, symmetry, null player, absent modalities, known games."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.models.explain.modality_shapley import modality_shapley, shapley_from_values, subset_masks
from clinfuse.models.fusion import FusionHead
from torch import nn

NAMES = ["a", "b", "c"]


def _random_head(seed: int, n: int = 3, d: int = 4) -> FusionHead:
    torch.manual_seed(seed)
    head = FusionHead(n, d)
    for parameter in head.parameters():
        nn.init.normal_(parameter, std=0.7)
    return head.eval()  # as loaded for explaining: in training, every call would move the logit centres


def test_values_and_base_sum_exactly_to_the_prediction() -> None:
    rng = np.random.default_rng(0)
    calibrator = PlattCalibrator(slope=0.8, intercept=-0.3)
    for seed in range(5):
        head = _random_head(seed)
        embeddings, logits = rng.normal(size=(3, 4)), rng.normal(size=3)
        for present in ([1, 1, 1], [1, 0, 1], [0, 1, 0]):
            result = modality_shapley(head, embeddings, logits, np.array(present, float), NAMES, calibrator)
            assert abs(result.logit_base + sum(result.logit_values.values()) - result.logit_prediction) < 1e-5
            total = result.probability_base + sum(result.probability_values.values())
            assert abs(total - result.probability_prediction) < 1e-5
            as_tensor = [torch.tensor(a, dtype=torch.float32)[None] for a in (embeddings, logits, present)]
            expected = calibrator.logit(head(*as_tensor).detach().numpy())
            assert abs(result.logit_prediction - float(expected[0])) < 1e-5


def test_absent_modalities_get_no_value() -> None:
    result = modality_shapley(_random_head(1), np.ones((3, 4)), np.ones(3), np.array([1.0, 0.0, 1.0]), NAMES,
                              PlattCalibrator())  # fmt: skip
    assert set(result.logit_values) == {"a", "c"} and result.absent == ["b"]


def test_interchangeable_modalities_get_equal_values() -> None:
    head = _random_head(2)
    with torch.no_grad():  # make the interaction symmetric in a and b: equal weights for their blocks
        weight = head.interaction[0].weight  # columns: [a emb(4), b emb(4), c emb(4), mask a, b, c]
        weight[:, 4:8] = weight[:, 0:4]
        weight[:, 13] = weight[:, 12]
    embedding = np.random.default_rng(3).normal(size=4)
    embeddings = np.stack([embedding, embedding, np.zeros(4)])
    result = modality_shapley(head, embeddings, np.array([0.7, 0.7, -0.2]), np.ones(3), NAMES, PlattCalibrator())
    assert abs(result.logit_values["a"] - result.logit_values["b"]) < 1e-6


def test_a_modality_the_model_ignores_gets_zero() -> None:
    head = _random_head(4)
    with torch.no_grad():  # the head never looks at c: no interaction weight, and c's logit is 0
        head.interaction[0].weight[:, 8:12] = 0.0
        head.interaction[0].weight[:, 14] = 0.0
    embeddings = np.random.default_rng(5).normal(size=(3, 4))
    result = modality_shapley(head, embeddings, np.array([0.4, -1.0, 0.0]), np.ones(3), NAMES, PlattCalibrator())
    assert abs(result.logit_values["c"]) < 1e-6
    assert abs(result.probability_values["c"]) < 1e-6


def test_shapley_of_a_known_game() -> None:
    # v(S) = 1 for {0,1} together (glove game); singletons and empty 0; player 2 adds 2 on its own
    players = np.array([0, 1, 2])
    masks = subset_masks(3, np.ones(3))
    values = np.array([float(m[0] and m[1]) + 2.0 * m[2] for m in masks])
    shapley = shapley_from_values(masks, values, players)
    assert np.allclose([shapley[0], shapley[1], shapley[2]], [0.5, 0.5, 2.0])
    assert len(masks) == 8 and not masks[0].any() and masks[-1].all()
    assert {tuple(m) for m in masks} == set(itertools.product([0.0, 1.0], repeat=3))
