"""The XGBoost baseline's feature matrix: each modality's columns from its kind (`ModalityKind.baseline_features`),
NaN where a modality is absent. Columns are named '<modality>:<feature>' so TreeSHAP values can be summed per
modality.
"""

from __future__ import annotations

import numpy as np
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import FeatureBlock, get_kind


class BaselineFeatures:
    """Builds feature rows for one cache. Each kind reads what it needs once here, because scoring and the
    dashboard's explanations ask for a few patients at a time."""

    def __init__(self, cache: FeatureCache, embed_dim: int) -> None:
        self.cache = cache
        self.blocks: dict[str, FeatureBlock] = {
            name: get_kind(kind).baseline_features(cache, name, embed_dim) for name, kind in cache.modalities.items()
        }

    def __call__(self, embeddings: np.ndarray, cohort_rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """(patients x features) and the feature names, for every cohort patient or for `cohort_rows` only.
        `embeddings` is (patients, M, D), in the same order."""
        blocks, names = [], []
        for column, (name, block) in enumerate(self.blocks.items()):
            rows = self.cache.rows(name) if cohort_rows is None else self.cache.rows(name)[cohort_rows]
            present = rows >= 0
            values = np.full((len(rows), len(block.names)), np.nan, np.float32)
            if present.any():
                values[present] = block.values(rows[present], embeddings[present, column, :])
            blocks.append(values)
            names += [f"{name}:{label.translate(_XGBOOST_SAFE)}" for label in block.names]
        return np.concatenate(blocks, axis=1), names


# XGBoost refuses feature names holding [, ] or <, which token names ("[type:ds]") and codes may contain.
_XGBOOST_SAFE = str.maketrans({"[": "(", "]": ")", "<": "‹"})
