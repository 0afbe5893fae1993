"""Exact Shapley values of modalities for one patient, from the fusion head alone.

The game: v(S) = the fusion head's output with only the modalities in S present, on the patient's cached
embeddings and modality logits. Because the head accepts any subset, all 2^k subsets of the k present
modalities are one batched head evaluation; absent modalities are not players (they get no value). The base
value is v(empty set), the fitted prior, and base + sum of values = v(all present) exactly (efficiency).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import factorial

import numpy as np
import torch
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.models.fusion import FusionHead


@dataclass(frozen=True)
class ModalityShapley:
    """Shapley values per present modality on the calibrated logit and on the calibrated probability."""

    present: list[str]
    absent: list[str]
    logit_values: dict[str, float]
    logit_base: float
    logit_prediction: float
    probability_values: dict[str, float]
    probability_base: float
    probability_prediction: float


def subset_masks(n_modalities: int, present: np.ndarray) -> np.ndarray:
    """All subsets of the present modalities as 0/1 masks, shape (2^k, M); row 0 is the empty set."""
    players = np.flatnonzero(present)
    masks = []
    for chosen in itertools.product([0, 1], repeat=len(players)):
        mask = np.zeros(n_modalities, np.float32)
        mask[players[np.array(chosen, bool)]] = 1.0
        masks.append(mask)
    return np.stack(masks)


def shapley_from_values(masks: np.ndarray, values: np.ndarray, players: np.ndarray) -> dict[int, float]:
    """Exact Shapley value of each player from the values of every subset (rows of `masks`)."""
    k = len(players)
    index = {tuple(m.astype(int)): v for m, v in zip(masks, values, strict=True)}
    result = {}
    for player in players:
        total = 0.0
        for mask, value in zip(masks, values, strict=True):
            if mask[player]:
                continue
            with_player = mask.copy()
            with_player[player] = 1.0
            size = int(mask.sum())
            weight = factorial(size) * factorial(k - size - 1) / factorial(k)
            total += weight * (index[tuple(with_player.astype(int))] - value)
        result[int(player)] = float(total)
    return result


@torch.no_grad()
def modality_shapley(head: FusionHead, embeddings: np.ndarray, logits: np.ndarray, present: np.ndarray,
                     names: list[str], calibrator: PlattCalibrator) -> ModalityShapley:  # fmt: skip
    """Exact modality Shapley values for one patient: embeddings (M, D), logits (M,), present (M,)."""
    masks = subset_masks(len(names), present)
    n = len(masks)
    raw = (
        head(
            torch.as_tensor(embeddings, dtype=torch.float32).expand(n, *embeddings.shape),
            torch.as_tensor(logits, dtype=torch.float32).expand(n, *logits.shape),
            torch.as_tensor(masks),
        )
        .numpy()
        .astype(np.float64)
    )
    calibrated_logit = calibrator.logit(raw)
    probability = 1.0 / (1.0 + np.exp(-calibrated_logit))
    players = np.flatnonzero(present)
    on_logit = shapley_from_values(masks, calibrated_logit, players)
    on_probability = shapley_from_values(masks, probability, players)
    full = n - 1  # the last product row has every player present
    return ModalityShapley(
        present=[names[i] for i in players],
        absent=[names[i] for i in range(len(names)) if not present[i]],
        logit_values={names[i]: v for i, v in on_logit.items()},
        logit_base=float(calibrated_logit[0]),
        logit_prediction=float(calibrated_logit[full]),
        probability_values={names[i]: v for i, v in on_probability.items()},
        probability_base=float(probability[0]),
        probability_prediction=float(probability[full]),
    )
