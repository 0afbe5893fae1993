"""Tensors from the feature cache: each modality read by its kind's reader, a Dataset over cohort rows, a DataModule.

Arrays stay memory-mapped (images are never decoded again); a patient without a modality gets zeros and a
0 in the presence mask. Training, evaluation, scoring and explanations all read patients through here.
"""

from __future__ import annotations

import os

import numpy as np
import pytorch_lightning as pl
import torch
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import get_kind
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset


def _reseed_worker(worker_id: int) -> None:
    """Each loader worker draws its own augmentations (they would otherwise repeat the same stream)."""
    info = torch.utils.data.get_worker_info()
    for augmenter in info.dataset.augmenters.values():
        augmenter.reseed(info.seed % 2**32)


def modality_dims(cache: FeatureCache) -> dict[str, dict[str, int]]:
    """Input dimensions per modality, for building encoders."""
    return {name: get_kind(kind).reader(cache, name)[1] for name, kind in cache.modalities.items()}


class CacheDataset(Dataset):
    """Patients of the cache (optionally one split): inputs per modality, presence mask, label, cohort row."""

    def __init__(self, cache: FeatureCache, split: str | None = None, augment_seed: int | None = None) -> None:
        cohort = cache.cohort
        self.indices = np.flatnonzero(cohort["split"] == split) if split else np.arange(len(cohort))
        self.names = list(cache.modalities)
        kinds = {name: get_kind(kind) for name, kind in cache.modalities.items()}
        self.readers = {name: kind.reader(cache, name)[0] for name, kind in kinds.items()}
        self.rows = np.stack([cache.rows(name) for name in self.names], axis=1)
        self.labels = cohort["label"].to_numpy(np.float32)
        self.augmenters = {}
        if augment_seed is not None:
            augmenters = {name: kind.augmenter(augment_seed) for name, kind in kinds.items()}
            self.augmenters = {name: augmenter for name, augmenter in augmenters.items() if augmenter is not None}

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
        self,
        cache_path: str,
        batch_size: int = 32,
        num_workers: int = 0,
        augment_seed: int | None = 0,
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
            sampler=None if shuffle else self._evaluation_sampler(dataset),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(dataset) > self.batch_size,  # no 1-patient batch for BatchNorm
            worker_init_fn=_reseed_worker if self.num_workers > 0 else None,
        )

    def _evaluation_sampler(self, dataset: CacheDataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP each rank evaluates its share of the patients, each exactly once: Lightning's default sampler
        pads the split by repeating patients, and the validation AUROC that picks the checkpoint and stops training
        would count them twice."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
