"""Image encoders: MONAI DenseNet121 (2D default on GPU, 3D option) and a small CNN for CPU runs."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Four strided conv blocks, then global average and max pooling (a focal finding survives max pooling)."""

    def __init__(self, embed_dim: int, width: int = 16) -> None:
        super().__init__()
        channels = [1, width, 2 * width, 4 * width, 4 * width]
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*blocks)
        self.project = nn.Sequential(nn.Linear(2 * channels[-1], embed_dim), nn.ReLU())

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = self.features(inputs["image"] - 0.5)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return self.project(pooled)


class MonaiDenseNet(nn.Module):
    """MONAI DenseNet121 (randomly initialised: nothing is downloaded) with an embedding output."""

    def __init__(self, embed_dim: int, spatial_dims: int = 2) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet121

        self.spatial_dims = spatial_dims
        self.net = DenseNet121(spatial_dims=spatial_dims, in_channels=1, out_channels=embed_dim)
        self.activation = nn.ReLU()

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = inputs["image"] - 0.5
        if self.spatial_dims == 3 and image.dim() == 4:  # (B, 1, H, W) stored 2D: treat as a one-slice volume
            image = image.unsqueeze(2)
        return self.activation(self.net(image))
