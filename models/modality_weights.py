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
    offset = np.asarray(offset, np.float64)
    y = np.asarray(labels, np.float64)
    n_modalities = z.shape[1]

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        intercept, weights = theta[0], theta[1:]
        logit = intercept + offset + z @ weights
        loss = np.sum(np.logaddexp(0.0, logit) - y * logit) + 0.5 * ridge * np.sum((weights - 1.0) ** 2)
        residual = 1.0 / (1.0 + np.exp(-logit)) - y
        gradient = np.concatenate([[residual.sum()], z.T @ residual + ridge * (weights - 1.0)])
        return float(loss), gradient

    start = np.concatenate([[0.0], np.ones(n_modalities)])
    bounds = [(None, None)] + [(0.0, None)] * n_modalities
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds)
    if not result.success:
        raise RuntimeError(f"fitting the modality weights did not converge: {result.message}")
    return result.x[1:]
