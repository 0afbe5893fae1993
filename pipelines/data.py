"""Tensors from the feature cache: one reader per modality kind, a Dataset over cohort rows, a DataModule.

Arrays stay memory-mapped (images are never decoded again); a patient without a modality gets zeros and a
0 in the presence mask. Training, evaluation, scoring and explanations all read patients through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from clinfuse.platform.cache import FeatureCache
from torch.utils.data import DataLoader, Dataset

Reader = Callable[[int], dict[str, np.ndarray]]


def _dicom_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    images = cache.array(name, "images")
    size = int(images.shape[-1])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {"image": np.zeros((1, size, size), np.float32)}
        return {"image": np.asarray(images[row], dtype=np.float32)[np.newaxis]}

    return read, {"image_size": size}


def _table_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    values = cache.table(name, "features").drop(columns=["patient"]).to_numpy(np.float32, copy=True)

    def read(row: int) -> dict[str, np.ndarray]:
        return {"features": values[row] if row >= 0 else np.zeros(values.shape[1], np.float32)}

    return read, {"features": values.shape[1]}


def _ehr_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    arrays = {key: cache.array(name, key) for key in ("codes", "code_age_days", "labs", "lab_observed")}
    vocabulary = len(cache.json(name, "alignment")["vocabulary"])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {key: np.zeros(a.shape[1:], a.dtype) for key, a in arrays.items()}
        return {key: np.array(a[row]) for key, a in arrays.items()}  # a copy: tensors need writable memory

    dims = {"vocabulary": vocabulary, "max_codes": arrays["codes"].shape[1], "labs": arrays["labs"].shape[1],
            "lab_observed": arrays["lab_observed"].shape[1]}  # fmt: skip
    return read, dims


READERS: dict[str, Callable[[FeatureCache, str], tuple[Reader, dict[str, int]]]] = {
    "dicom": _dicom_reader,
    "table": _table_reader,
    "ehr": _ehr_reader,
}


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


# Training-time augmentation per modality kind (kinds without an entry are used as stored).
AUGMENTERS: dict[str, Callable[[int], ImageAugmenter]] = {"dicom": ImageAugmenter}


def _reseed_worker(worker_id: int) -> None:
    """Each loader worker draws its own augmentations (they would otherwise repeat the same stream)."""
    info = torch.utils.data.get_worker_info()
    for augmenter in info.dataset.augmenters.values():
        augmenter.reseed(info.seed % 2**32)


def modality_dims(cache: FeatureCache) -> dict[str, dict[str, int]]:
    """Input dimensions per modality, for building encoders."""
    return {name: READERS[kind](cache, name)[1] for name, kind in cache.modalities.items()}


class CacheDataset(Dataset):
    """Patients of the cache (optionally one split): inputs per modality, presence mask, label, cohort row."""

    def __init__(self, cache: FeatureCache, split: str | None = None, augment_seed: int | None = None) -> None:
        cohort = cache.cohort
        self.indices = np.flatnonzero(cohort["split"] == split) if split else np.arange(len(cohort))
        self.names = list(cache.modalities)
        self.readers = {name: READERS[kind](cache, name)[0] for name, kind in cache.modalities.items()}
        self.rows = np.stack([cache.rows(name) for name in self.names], axis=1)
        self.labels = cohort["label"].to_numpy(np.float32)
        self.augmenters = (
            {}
            if augment_seed is None
            else {name: AUGMENTERS[kind](augment_seed) for name, kind in cache.modalities.items() if kind in AUGMENTERS}
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict:
        index = int(self.indices[item])
        rows = self.rows[index]
        inputs = {}
        for i, name in enumerate(self.names):
            values = self.readers[name](int(rows[i]))
            if name in self.augmenters and rows[i] >= 0:
                values = self.augmenters[name](values)
            inputs[name] = {k: torch.from_numpy(v) for k, v in values.items()}
        return {
            "inputs": inputs,
            "present": torch.from_numpy((rows >= 0).astype(np.float32)),
            "label": torch.tensor(self.labels[index]),
            "index": torch.tensor(index),
        }  # fmt: skip


def default_num_workers(accelerator: str) -> int:
    """Loader workers: none on CPU-only runs (the model competes for the same cores), else half the cores."""
    if accelerator == "cpu":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) // 2))


class CacheDataModule(pl.LightningDataModule):
    """Train/val/test loaders over one feature cache."""

    def __init__(
        self, cache_path: str, batch_size: int = 32, num_workers: int = 0, augment_seed: int | None = 0,
        splits: list[str] | None = None,
    ) -> None:
        """`splits`: a split per cohort row replacing the cache's own (cross-validation folds)."""
        super().__init__()
        self.splits = splits
        self.augment_seed = augment_seed
        self.cache_path = cache_path
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, CacheDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        cache = FeatureCache(self.cache_path)
        if self.splits is not None:
            cache = cache.with_splits(np.asarray(self.splits))
        self.datasets = {
            "train": CacheDataset(cache, "train", augment_seed=self.augment_seed),
            "val": CacheDataset(cache, "val"),
            "test": CacheDataset(cache, "test"),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(dataset) > self.batch_size,  # no 1-patient batch for BatchNorm
            worker_init_fn=_reseed_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
