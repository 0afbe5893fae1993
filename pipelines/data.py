"""Tensors from the feature cache: each modality read by its kind's reader, a Dataset over cohort rows (Lightning's
DataModule over it: `data_module.py`, so that scoring, explanations and evaluation do not import Lightning).

Arrays stay memory-mapped (images are never decoded again); a patient without a modality gets zeros and a
0 in the presence mask. Training, evaluation, scoring and explanations all read patients through here.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import get_kind
from torch.utils.data import Dataset


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
