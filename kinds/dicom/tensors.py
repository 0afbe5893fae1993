"""A DICOM modality's cache as tensors (the preprocessed images, never decoded again) with training-time
augmentation, and as XGBoost columns (HAIM used pretrained image embeddings the same way: here the trained
encoder's embedding)."""

from __future__ import annotations

import numpy as np
from clinfuse.kinds.dicom.ingest import IMAGES_FILE
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import FeatureBlock, Reader

IMAGES = IMAGES_FILE.removesuffix(".npy")


def image_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    images = cache.array(name, IMAGES)
    size = int(images.shape[-1])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {"image": np.zeros((1, size, size), np.float32)}
        return {"image": np.asarray(images[row], dtype=np.float32)[np.newaxis]}

    return read, {"image_size": size}


def embedding_block(embed_dim: int) -> FeatureBlock:
    return FeatureBlock([f"embedding_{i}" for i in range(embed_dim)],
                        lambda rows, embeddings: embeddings.astype(np.float32))  # fmt: skip


class ImageAugmenter:
    """Small random shifts, rotations and zooms (MONAI RandAffine); no flips: anatomy has a side."""

    def __init__(self, seed: int) -> None:
        from monai.transforms import RandAffine

        self.affine = RandAffine(prob=0.9, rotate_range=0.1, translate_range=(10, 10), scale_range=(0.1, 0.1),
                                 padding_mode="zeros")  # fmt: skip
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.affine.set_random_state(seed=seed)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"image": np.asarray(self.affine(inputs["image"]), dtype=np.float32)}
