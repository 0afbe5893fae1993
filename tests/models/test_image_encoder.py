"""The small CNN's log-sum-exp pooling: a soft maximum that a focal response dominates and a uniform map passes."""

from __future__ import annotations

import torch
from clinfuse.kinds.dicom.encoder import LSE_SHARPNESS, SmallCNN, lse_pool


def test_pooling_lies_between_the_mean_and_the_max_and_tends_to_each() -> None:
    maps = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 3
    pooled = lse_pool(maps, LSE_SHARPNESS)
    assert torch.all(pooled >= maps.mean(dim=(2, 3)) - 1e-6) and torch.all(pooled <= maps.amax(dim=(2, 3)) + 1e-6)
    assert torch.allclose(lse_pool(maps, 1e-4), maps.mean(dim=(2, 3)), atol=1e-3)
    assert torch.allclose(lse_pool(maps, 1e3), maps.amax(dim=(2, 3)), atol=1e-2)
    uniform = torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64)
    assert torch.allclose(lse_pool(uniform, LSE_SHARPNESS), torch.tensor([[0.7]], dtype=torch.float64))


def test_a_focal_spot_weighs_far_more_than_under_average_pooling() -> None:
    maps = torch.zeros(1, 1, 16, 16)
    maps[0, 0, 5, 9] = 2.0  # one strong location in 256
    assert lse_pool(maps, LSE_SHARPNESS).item() > 20 * maps.mean().item()


def test_the_encoder_embeds_any_square_size() -> None:
    encoder = SmallCNN(embed_dim=8).eval()
    for side in (64, 96):
        assert encoder({"image": torch.rand(2, 1, side, side)}).shape == (2, 8)
