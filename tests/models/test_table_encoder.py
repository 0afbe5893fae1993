"""The table encoder's group lasso concentrates its first layer on the informative features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from clinfuse.models.encoders.table import TableMLP
from torch import nn


def _fit(input_sparsity: float) -> torch.Tensor:
    """Train on 3 informative of 60 features; return each feature's first-layer weight norm."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    features = torch.randn(300, 60, generator=generator)
    labels = (features[:, :3].sum(dim=1) + 0.5 * torch.randn(300, generator=generator) > 0).float()
    encoder, head = TableMLP(60, 8, dropout=0.0, input_sparsity=input_sparsity), nn.Linear(8, 1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(300):
        logit = head(encoder({"features": features})).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logit, labels) + encoder.penalty()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return encoder.net[1].weight.detach().norm(dim=0)


def test_group_lasso_shifts_the_first_layer_onto_the_informative_features() -> None:
    plain, sparse = _fit(0.0), _fit(0.01)
    share = lambda norms: float(norms[:3].sum() / norms.sum())  # noqa: E731
    assert share(plain) < 0.15  # without it the 57 noise features carry most of the weight
    assert share(sparse) > 3 * share(plain)


def test_penalty_is_the_weighted_sum_of_per_feature_norms() -> None:
    encoder = TableMLP(5, 4, input_sparsity=0.5)
    expected = 0.5 * encoder.net[1].weight.norm(dim=0).sum()
    assert torch.isclose(encoder.penalty(), expected)
    assert TableMLP(5, 4, input_sparsity=0.0).penalty() == 0
