"""What attributions inside one modality share: the result type, the context, the branch logit as a function.

Each kind computes its own attributions on its branch's logit (`ModalityKind.attribute`, in kinds/<kind>/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from clinfuse.models.fusion import ModalityBranch
from torch import nn


@dataclass
class AttributionContext:
    """What attributions need besides the patient: background inputs, names and texts, how many to keep."""

    background: dict[str, torch.Tensor] | None = None
    feature_names: list[str] = field(default_factory=list)
    vocabulary: list[str] = field(default_factory=list)
    lab_items: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    top_k: int = 20
    seed: int = 0


@dataclass
class Attribution:
    """Top contributions (name, text, value); a heatmap over the input (an image's pixels, a waveform's leads x
    samples) where the kind has one; `detail`: further JSON values a kind's dashboard section draws (e.g. the
    notes' tokens with their values)."""

    kind: str
    top: list[dict]
    heatmap: np.ndarray | None = None
    detail: dict = field(default_factory=dict)


class BranchLogit(nn.Module):
    """The branch's logit as a (B, 1) output of one input tensor, as attribution libraries expect."""

    def __init__(self, branch: ModalityBranch, key: str, fixed: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.branch, self.key, self.fixed = branch, key, fixed or {}
        # A new module starts in training mode; tools that switch to eval and back (MONAI's eval_mode) would
        # then leave the branch training, its batch norms on batch statistics, for every later explanation.
        self.train(branch.training)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return self.branch({**self.fixed, self.key: value})[1].unsqueeze(-1)
