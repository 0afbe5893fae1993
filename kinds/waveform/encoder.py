"""A 1D ResNet over the (leads, samples) ECG: a strided stem, four residual stages that halve the time axis,
global average pooling (an ST change repeats in every beat, so the average over time keeps it) and a linear
projection to the embedding."""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = {"resnet1d": (32, 64, 128, 256), "resnet1d_small": (16, 32, 48, 64)}
KERNEL = 7  # 70 ms at 100 Hz in the first stage: about one QRS complex


class _Block(nn.Module):
    """Two Conv1d+BatchNorm layers with a residual connection; the first conv strides by 2."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels_in, channels_out, KERNEL, stride=2, padding=KERNEL // 2, bias=False),
            nn.BatchNorm1d(channels_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(channels_out, channels_out, KERNEL, padding=KERNEL // 2, bias=False),
            nn.BatchNorm1d(channels_out),
        )
        self.skip = nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride=2, bias=False),
                                  nn.BatchNorm1d(channels_out))  # fmt: skip
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


class ResNet1d(nn.Module):
    """inputs["signal"] (B, leads, samples) in mV -> (B, embed_dim)."""

    def __init__(self, leads: int, embed_dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(leads, widths[0], 15, stride=2, padding=7, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU(inplace=True))  # fmt: skip
        self.stages = nn.Sequential(*(_Block(a, b) for a, b in zip((widths[0], *widths[:-1]), widths, strict=True)))
        self.project = nn.Linear(widths[-1], embed_dim)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.stages(self.stem(inputs["signal"].float()))
        return self.project(features.mean(dim=-1))
