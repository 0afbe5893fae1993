"""An EHR modality's cache as tensors and as XGBoost columns (counts of each vocabulary code plus the lab vector)."""

from __future__ import annotations

import numpy as np
from clinfuse.kinds.ehr.ingest import ARRAY_FILES
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import FeatureBlock, Reader


def ehr_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    arrays = {key: cache.array(name, key) for key in ARRAY_FILES}
    vocabulary = len(cache.json(name, "alignment")["vocabulary"])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {key: np.zeros(a.shape[1:], a.dtype) for key, a in arrays.items()}
        return {key: np.array(a[row]) for key, a in arrays.items()}  # a copy: tensors need writable memory

    dims = {"vocabulary": vocabulary, "max_codes": arrays["codes"].shape[1], "labs": arrays["labs"].shape[1],
            "lab_observed": arrays["lab_observed"].shape[1]}  # fmt: skip
    return read, dims


def ehr_block(cache: FeatureCache, name: str) -> FeatureBlock:
    alignment = cache.json(name, "alignment")
    vocabulary = alignment["vocabulary"]
    names = [f"count {c}" for c in vocabulary[2:]] + _lab_feature_names(alignment["lab_items"])

    def values(rows: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        used = np.unique(rows)  # only the modality rows asked for are read
        codes = np.asarray(cache.array(name, "codes")[used])
        counts = np.zeros((codes.shape[0], len(vocabulary)), np.float32)
        np.add.at(counts, (np.repeat(np.arange(codes.shape[0]), codes.shape[1]), codes.ravel()), 1.0)
        labs = np.concatenate([cache.array(name, "labs")[used], cache.array(name, "lab_observed")[used]], axis=1)
        block = np.concatenate([counts[:, 2:], labs], axis=1)  # drop <pad>, keep <unk>
        return block[np.searchsorted(used, rows)]

    return FeatureBlock(names, values)


def _lab_feature_names(items: list[str]) -> list[str]:
    return [f"{item}:{stat}" for item in items for stat in ("last", "mean", "max")] + [
        f"{item}:observed" for item in items
    ]
