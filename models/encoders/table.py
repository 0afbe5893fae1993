"""Table encoders: an MLP with dropout, or a self-normalising network (SELU + AlphaDropout)."""

from __future__ import annotations

import torch
from torch import nn


class TableMLP(nn.Module):
    """Two-layer perceptron for a (patient x feature) table; `self_normalising` switches to SELU."""

    def __init__(self, in_features: int, embed_dim: int, hidden: int = 32, dropout: float = 0.5,
                 self_normalising: bool = False) -> None:  # fmt: skip
        super().__init__()
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
        return self.net(inputs["features"])
