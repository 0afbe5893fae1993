"""Modality weights of the fusion head, refitted on the validation split (stacked generalisation).

Each branch is trained on the training split, where a wide table branch reaches a training AUROC near 1:
its logits are overconfident, and summing them with weight 1 lets it drown out the other modalities. The
weights that combine the branches must come from patients the branches were not fitted on (Wolpert's stacked
generalisation), so after training they are fitted on the validation split by penalised logistic regression:

    label ~ Bernoulli(sigmoid(c + offset + sum_m w_m * z_m)),  z_m = logit_m - c_m if m is present else 0,

with `offset` the rest of the head (prior + interaction) kept as trained, w_m >= 0 (a weight must not flip
what a modality means) and a ridge pull towards 1, the jointly trained combination, so a small validation
split moves the weights only as far as its evidence goes. The intercept c is discarded: the Platt
calibration fitted afterwards on the same split sets the overall level, and the prior keeps meaning "every
modality masked". sklearn's LogisticRegression has neither offsets nor a ridge towards 1, hence scipy.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

RIDGE_TOWARDS_ONE = 5.0


def fit_modality_weights(modality_logits: np.ndarray, present: np.ndarray, offset: np.ndarray, labels: np.ndarray,
                         ridge: float = RIDGE_TOWARDS_ONE) -> np.ndarray:  # fmt: skip
    """Non-negative weights (M,) for the modality logits (N, M) of the present (N, M) modalities."""
    z = np.where(present > 0, modality_logits, 0.0).astype(np.float64)
    return _fit_weights(z, offset, labels, np.ones(z.shape[1]), [(0.0, None)] * z.shape[1], ridge)


def fit_head_weights(modality_logits: np.ndarray, present: np.ndarray, interaction: np.ndarray, offset: np.ndarray,
                     labels: np.ndarray, ridge: float = RIDGE_TOWARDS_ONE) -> tuple[np.ndarray, float]:  # fmt: skip
    """Modality weights (M,) as above and the interaction MLP's weight a in [0, 1], pulled towards 0.

    The interaction term enters as a further column, `a * interaction`, with the same ridge but towards 0: the
    MLP over embeddings is kept only as far as the validation patients show it helps, so a cohort whose signal
    is additive (most real ones) gets the stacked linear head back.
    """
    z = np.where(present > 0, modality_logits, 0.0).astype(np.float64)
    columns = np.column_stack([z, np.asarray(interaction, np.float64)])
    targets = np.concatenate([np.ones(z.shape[1]), [0.0]])
    bounds = [(0.0, None)] * z.shape[1] + [(0.0, 1.0)]
    weights = _fit_weights(columns, offset, labels, targets, bounds, ridge)
    return weights[:-1], float(weights[-1])


def _fit_weights(z: np.ndarray, offset: np.ndarray, labels: np.ndarray, targets: np.ndarray,
                 bounds: list[tuple[float | None, float | None]], ridge: float) -> np.ndarray:  # fmt: skip
    """Penalised logistic regression with an offset and a ridge towards `targets`; the intercept is dropped."""
    offset = np.asarray(offset, np.float64)
    y = np.asarray(labels, np.float64)

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        intercept, weights = theta[0], theta[1:]
        logit = intercept + offset + z @ weights
        loss = np.sum(np.logaddexp(0.0, logit) - y * logit) + 0.5 * ridge * np.sum((weights - targets) ** 2)
        residual = 1.0 / (1.0 + np.exp(-logit)) - y
        gradient = np.concatenate([[residual.sum()], z.T @ residual + ridge * (weights - targets)])
        return float(loss), gradient

    start = np.concatenate([[0.0], targets])
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=[(None, None), *bounds])
    if not result.success:
        raise RuntimeError(f"fitting the modality weights did not converge: {result.message}")
    return result.x[1:]
