"""A DICOM modality's cache as tensors (the preprocessed images or volumes, never decoded again) with
training-time augmentation, and as XGBoost columns (HAIM used pretrained image embeddings the same way: here the
trained encoder's embedding)."""

from __future__ import annotations

import numpy as np
from clinfuse.kinds.dicom.store import IMAGES, VOLUMES, holds_volumes
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import FeatureBlock, Reader


def image_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    """{"image": (1, S, S)} per patient (2D), or {"image": (1, X, Y, Z)} (volumes); zeros for a missing one."""
    if holds_volumes(cache, name):
        return _volume_reader(cache, name)
    images = cache.array(name, IMAGES)
    size = int(images.shape[-1])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {"image": np.zeros((1, size, size), np.float32)}
        return {"image": np.asarray(images[row], dtype=np.float32)[np.newaxis]}

    return read, {"image_size": size}


def _volume_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    volumes = cache.array(name, VOLUMES)
    shape = tuple(int(n) for n in volumes.shape[1:])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {"image": np.zeros((1, *shape), np.float32)}
        return {"image": np.asarray(volumes[row], dtype=np.float32)[np.newaxis]}

    return read, {"spatial_dims": 3, "size_x": shape[0], "size_y": shape[1], "size_z": shape[2]}


def embedding_block(embed_dim: int) -> FeatureBlock:
    return FeatureBlock([f"embedding_{i}" for i in range(embed_dim)],
                        lambda rows, embeddings: embeddings.astype(np.float32))  # fmt: skip


class ImageAugmenter:
    """Small random shifts, rotations and zooms for images (MONAI RandAffine); no flips: anatomy has a side.
    Volumes get whole-voxel shifts only: a 3D affine resampling costs as much as the 3D network's training step,
    and patients lie on the table the same way up, so rotations add little."""

    def __init__(self, seed: int) -> None:
        from monai.transforms import RandAffine

        self.planar = RandAffine(prob=0.9, rotate_range=0.1, translate_range=(10, 10), scale_range=(0.1, 0.1),
                                 padding_mode="zeros")  # fmt: skip
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.planar.set_random_state(seed=seed)
        self.random = np.random.default_rng(seed)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = inputs["image"]
        if image.ndim == 4:
            return {"image": _shift(image, self.random.integers(-VOLUME_SHIFT, VOLUME_SHIFT, endpoint=True))}
        return {"image": np.asarray(self.planar(image), dtype=np.float32)}


VOLUME_SHIFT = np.array([4, 4, 2])  # largest shift in voxels along R, A, S (20, 20, 10 mm on the default grid)


def _shift(volume: np.ndarray, by: np.ndarray) -> np.ndarray:
    """(1, X, Y, Z) moved by whole voxels, the uncovered edge filled with zeros (as padding is)."""
    out = np.zeros_like(volume, dtype=np.float32)
    source = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(by, volume.shape[1:], strict=True))
    target = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(by, volume.shape[1:], strict=True))
    out[(slice(None), *target)] = volume[(slice(None), *source)]
    return out
