"""Table encoders: an MLP with dropout, or a self-normalising network (SELU + AlphaDropout).

Both carry a group-lasso penalty on the first layer, one group per input feature (the sparse-input network of
Feng and Simon, "Sparse-Input Neural Networks for High-dimensional Nonparametric Regression and
Classification", 2017): an expression table has a thousand genes and a few hundred patients, and without it
the branch spreads small weights over every gene, so a patient's attributions rank noise genes beside the
informative ones. The training loss adds `penalty()`. Training may also screen the inputs first
(models/feature_screening.py): `feature_mask` zeroes the screened-out features, and is saved with the weights.
"""

from __future__ import annotations

import torch
from torch import nn


class TableMLP(nn.Module):
    """Two-layer perceptron for a (patient x feature) table; `self_normalising` switches to SELU."""

    def __init__(self, in_features: int, embed_dim: int, hidden: int = 32, dropout: float = 0.5,
                 self_normalising: bool = False, input_sparsity: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        self.input_sparsity = input_sparsity
        self.register_buffer("feature_mask", torch.ones(in_features))
        activation: nn.Module = nn.SELU() if self_normalising else nn.ReLU()
        drop: nn.Module = nn.AlphaDropout(dropout) if self_normalising else nn.Dropout(dropout)
        self.net = nn.Sequential(
            nn.Dropout(dropout / 2) if not self_normalising else nn.Identity(),  # input dropout: wide, small tables
            nn.Linear(in_features, hidden),
            activation,
            drop,
            nn.Linear(hidden, embed_dim),
            nn.SELU() if self_normalising else nn.ReLU(),
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["features"] * self.feature_mask)

    def set_feature_mask(self, keep: torch.Tensor) -> None:
        """Use only the features where `keep` is true (the rest are multiplied by 0)."""
        self.feature_mask.copy_(keep.to(self.feature_mask.dtype))

    def penalty(self) -> torch.Tensor:
        """Group lasso over input features: the sum of each feature's first-layer weight norm."""
        first = next(m for m in self.net if isinstance(m, nn.Linear))
        return self.input_sparsity * first.weight.norm(dim=0).sum()
