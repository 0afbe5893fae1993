"""The dicom kind's 3D encoders and occlusion heatmaps on volumes; the 2D small CNN is the network it was."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from clinfuse.kinds.dicom.attribution import image_attribution
from clinfuse.kinds.dicom.encoder import MonaiDenseNet, SmallCNN
from clinfuse.models.explain.within_modality import AttributionContext
from clinfuse.models.fusion import ModalityBranch
from sklearn.metrics import roc_auc_score
from torch import nn

SHAPE = (24, 24, 16)  # voxels along R, A, S
RADIUS = 3.5

# The 2D network as it was before volumes: names and shapes of every parameter and buffer, in order.
SMALL_CNN_2D = [
    ("features.0.weight", (16, 1, 3, 3)),
    *[(f"features.1.{n}", (16,)) for n in ("weight", "bias", "running_mean", "running_var")],
    ("features.1.num_batches_tracked", ()),
    ("features.3.weight", (32, 16, 3, 3)),
    *[(f"features.4.{n}", (32,)) for n in ("weight", "bias", "running_mean", "running_var")],
    ("features.4.num_batches_tracked", ()),
    ("features.6.weight", (64, 32, 3, 3)),
    *[(f"features.7.{n}", (64,)) for n in ("weight", "bias", "running_mean", "running_var")],
    ("features.7.num_batches_tracked", ()),
    ("features.9.weight", (64, 64, 3, 3)),
    *[(f"features.10.{n}", (64,)) for n in ("weight", "bias", "running_mean", "running_var")],
    ("features.10.num_batches_tracked", ()),
    ("project.0.weight", (8, 64)),
    ("project.0.bias", (8,)),
]


def _volumes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise volumes of random overall brightness (so the mean tells nothing); every second one holds a bright
    sphere at a random place. Returns volumes (n, 1, X, Y, Z), labels (n,), each volume's sphere mask (n, X, Y, Z)."""
    volumes = 0.2 + 0.3 * torch.rand(n, 1, 1, 1, 1, generator=generator)
    volumes = volumes + 0.05 * torch.randn(n, 1, *SHAPE, generator=generator)
    labels = torch.arange(n) % 2
    margin = int(RADIUS) + 2
    centres = torch.stack([torch.randint(margin, side - margin, (n,), generator=generator) for side in SHAPE], 1)
    grid = torch.stack(torch.meshgrid(*[torch.arange(side) for side in SHAPE], indexing="ij"))
    spheres = ((grid[None] - centres[:, :, None, None, None]) ** 2).sum(1) <= RADIUS**2
    volumes[:, 0] += 0.5 * (spheres & (labels[:, None, None, None] == 1))
    return volumes.clamp(0, 1), labels.float(), spheres


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Convolutions this small spend more time synchronising two threads than computing (8x the CPU time here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_the_3d_heatmap_of_a_trained_cnn_lands_on_the_sphere_it_detects() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    volumes, labels, _ = _volumes(256, generator)
    branch = ModalityBranch(SmallCNN(8, width=8, spatial_dims=3), 8)
    optimiser = torch.optim.Adam(branch.parameters(), 3e-3)
    for _ in range(8):
        for batch in torch.randperm(len(volumes)).split(32):
            loss = nn.functional.binary_cross_entropy_with_logits(branch({"image": volumes[batch]})[1], labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    branch.eval()
    held_out, held_out_labels, spheres = _volumes(64, generator)
    with torch.no_grad():
        assert roc_auc_score(held_out_labels, branch({"image": held_out})[1]) > 0.95

    sphere_share = spheres[0].float().mean().item()  # 1.9% of the volume
    for i in (1, 3, 5, 7):  # positives
        heatmap = image_attribution(branch, {"image": held_out[i : i + 1]}, AttributionContext()).heatmap
        assert heatmap.shape == SHAPE and heatmap.max() == 1.0
        inside = heatmap[spheres[i].numpy()].sum() / heatmap.sum()
        assert inside > 10 * sphere_share, (i, inside)  # 0.29-0.59 over seeds 0-3
    assert not branch.training


def test_the_3d_small_cnn_embeds_volumes_of_any_shape() -> None:
    encoder = SmallCNN(embed_dim=8, spatial_dims=3).eval()
    convolutions = [m for m in encoder.features if isinstance(m, nn.Conv2d | nn.Conv3d)]
    assert len(convolutions) == 4 and all(isinstance(m, nn.Conv3d) for m in convolutions)
    for shape in ((32, 32, 24), (40, 36, 16)):
        assert encoder({"image": torch.rand(2, 1, *shape)}).shape == (2, 8)


def test_the_3d_densenet_embeds_a_tiny_volume() -> None:
    encoder = MonaiDenseNet(embed_dim=6, spatial_dims=3).eval()
    with torch.no_grad():
        embedding = encoder({"image": torch.rand(2, 1, 32, 32, 32)})
    assert embedding.shape == (2, 6) and torch.all(embedding >= 0)


def test_the_2d_small_cnn_is_the_network_it_was() -> None:
    torch.manual_seed(5)
    default = SmallCNN(8)
    torch.manual_seed(5)
    explicit = SmallCNN(8, spatial_dims=2)
    assert [(name, tuple(v.shape)) for name, v in default.state_dict().items()] == SMALL_CNN_2D
    pairs = zip(default.state_dict().values(), explicit.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    image = torch.rand(2, 1, 64, 64)
    assert np.array_equal(default.eval()({"image": image}).detach(), explicit.eval()({"image": image}).detach())
