"""Lightning's DataModule over the feature cache: train/val/test loaders of `CacheDataset` (imported only where
gradient training runs: Lightning and what it imports cost seconds in every process that loads it)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from clinfuse.pipelines.data import CacheDataset
from clinfuse.platform.cache import FeatureCache
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader


def _reseed_worker(worker_id: int) -> None:
    """Each loader worker draws its own augmentations (they would otherwise repeat the same stream)."""
    info = torch.utils.data.get_worker_info()
    for augmenter in info.dataset.augmenters.values():
        augmenter.reseed(info.seed % 2**32)


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
