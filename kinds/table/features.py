"""A table modality's cache as tensors and as XGBoost columns: the aligned, normalised features."""

from __future__ import annotations

import numpy as np
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import FeatureBlock, Reader

FEATURES = "features"


def table_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    values = cache.table(name, FEATURES).drop(columns=["patient"]).to_numpy(np.float32, copy=True)

    def read(row: int) -> dict[str, np.ndarray]:
        return {"features": values[row] if row >= 0 else np.zeros(values.shape[1], np.float32)}

    return read, {"features": values.shape[1]}


def table_block(cache: FeatureCache, name: str) -> FeatureBlock:
    """The features as they are (read once: scoring and the dashboard ask for a few patients at a time)."""
    table = cache.table(name, FEATURES).drop(columns=["patient"])
    values = table.to_numpy(np.float32)
    return FeatureBlock(list(table.columns), lambda rows, embeddings: values[rows])
