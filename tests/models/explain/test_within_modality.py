"""Attributions inside a modality on small models whose answer is known."""

from __future__ import annotations

import numpy as np
import torch
from clinfuse.kinds.dicom.attribution import image_attribution
from clinfuse.kinds.table.attribution import table_attribution
from clinfuse.models.explain.within_modality import AttributionContext
from clinfuse.models.fusion import ModalityBranch
from torch import nn


class _RegionBrightness(nn.Module):
    """An 'encoder' that only looks at the mean of one square region of the image."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["image"][:, :, 40:56, 8:24].mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2)


def test_image_heatmap_lands_on_the_region_the_model_reads() -> None:
    branch = ModalityBranch(_RegionBrightness(), 2)
    with torch.no_grad():
        branch.logit.weight.fill_(1.0)
    image = torch.full((1, 1, 64, 64), 0.3)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    image[0, 0] += 0.6 * torch.exp(-((yy - 48) ** 2 + (xx - 16) ** 2) / 18)  # finding inside the region
    image[0, 0] += 0.6 * torch.exp(-((yy - 16) ** 2 + (xx - 48) ** 2) / 18)  # a decoy the model ignores
    branch.eval()
    heatmap = image_attribution(branch, {"image": image}, AttributionContext()).heatmap
    assert heatmap.shape == (64, 64)
    assert heatmap[36:60, 4:28].sum() > 0.8 * heatmap.sum()
    assert not branch.training  # explaining leaves the model in eval mode, so later predictions are unchanged


def test_table_shap_ranks_the_features_the_model_uses() -> None:
    torch.manual_seed(0)

    class _Linear(nn.Module):
        def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            weights = torch.zeros(10)
            weights[[2, 7]] = torch.tensor([3.0, -2.0])
            return (inputs["features"] * weights).sum(dim=1, keepdim=True)

    branch = ModalityBranch(_Linear(), 1)
    with torch.no_grad():
        branch.logit.weight.fill_(1.0)
        branch.logit.bias.zero_()
    context = AttributionContext(background={"features": torch.randn(50, 10)},
                                 feature_names=[f"g{i}" for i in range(10)], top_k=3)  # fmt: skip
    patient = torch.ones(1, 10)
    top = table_attribution(branch, {"features": patient}, context).top
    assert [t["name"] for t in top[:2]] == ["g2", "g7"]
    assert top[0]["value"] > 0 > top[1]["value"]
    expected = 3.0 * (1 - context.background["features"][:, 2].mean().item())
    assert np.isclose(top[0]["value"], expected, rtol=0.2)
