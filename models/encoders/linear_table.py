"""A logistic-regression branch for a table modality, fitted outside gradient training.

Real cohorts are small and mostly linear: on three public cohorts an L2 logistic regression beat the MLP branch
(docs/experiments.md). This branch *is* that regression: its coefficients are fitted by scikit-learn with the
penalty chosen by inner cross-validation (`models/linear_branches.py`), then stored as buffers, so Lightning
never moves them and scoring, explanations and the bundle treat it like any other branch.

The branch logit is `x . coefficient` (the intercept lives in the fusion head's prior and centres). The
embedding carries that score in its first unit and zeros elsewhere; `ModalityBranch` reads the first unit as
the logit for encoders marked `fitted_outside`. Within-modality attributions are exact:
`coefficient_j * (x_j - center_j)`, with `center` the training patients' feature means, summing to the
branch logit less its training mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearTableEncoder(nn.Module):
    """Linear score of a (patient x feature) table, coefficients set by `set_coefficients`."""

    fitted_outside = True  # no parameters of its own: Lightning leaves it as fitted

    def __init__(self, in_features: int, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.register_buffer("coefficient", torch.zeros(in_features))
        self.register_buffer("feature_center", torch.zeros(in_features))

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return features.to(self.coefficient.dtype) @ self.coefficient

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.pad(self.score(inputs["features"]).unsqueeze(-1), (0, self.embed_dim - 1))

    def set_coefficients(self, coefficient: torch.Tensor, feature_center: torch.Tensor) -> None:
        self.coefficient.copy_(coefficient.to(self.coefficient.dtype))
        self.feature_center.copy_(feature_center.to(self.feature_center.dtype))

    def contributions(self, features: torch.Tensor) -> torch.Tensor:
        """Each feature's exact share of the logit, relative to the training mean: (B, F)."""
        return (features.to(self.coefficient.dtype) - self.feature_center) * self.coefficient
