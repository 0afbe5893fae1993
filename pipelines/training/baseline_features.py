"""The XGBoost baseline's feature matrix: per modality kind, simple features; NaN where a modality is absent.

dicom: the trained image encoder's embedding (HAIM used pretrained embeddings the same way); table: the
aligned, normalised features; ehr: counts of each vocabulary code plus the lab vector. Columns are named
'<modality>:<feature>' so TreeSHAP values can be summed per modality.
"""

from __future__ import annotations

import numpy as np
from clinfuse.platform.cache import FeatureCache


def baseline_features(
    cache: FeatureCache, embeddings: np.ndarray, cohort_rows: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """(patients x features) and the feature names, for every cohort patient or for `cohort_rows` only.
    `embeddings` is (patients, M, D), in the same order."""
    blocks, names = [], []
    for column, (name, kind) in enumerate(cache.modalities.items()):
        rows = cache.rows(name) if cohort_rows is None else cache.rows(name)[cohort_rows]
        present = rows >= 0
        if kind == "dicom":
            values, labels = (
                embeddings[:, column, :].astype(np.float32),
                [f"embedding_{i}" for i in range(embeddings.shape[2])],
            )
        elif kind == "table":
            table = cache.table(name, "features").drop(columns=["patient"])
            values, labels = _spread(table.to_numpy(np.float32), rows), list(table.columns)
        elif kind == "ehr":
            vocabulary = cache.json(name, "alignment")["vocabulary"]
            used = np.unique(rows[present])  # only the modality rows asked for are read
            codes = np.asarray(cache.array(name, "codes")[used])
            counts = np.zeros((codes.shape[0], len(vocabulary)), np.float32)
            np.add.at(counts, (np.repeat(np.arange(codes.shape[0]), codes.shape[1]), codes.ravel()), 1.0)
            lab_names = _lab_feature_names(cache.json(name, "alignment")["lab_items"])
            labs = np.concatenate([cache.array(name, "labs")[used], cache.array(name, "lab_observed")[used]], axis=1)
            compact = np.where(present, np.searchsorted(used, rows), -1)
            values = _spread(np.concatenate([counts[:, 2:], labs], axis=1), compact)  # drop <pad>, keep <unk>
            labels = [f"count {c}" for c in vocabulary[2:]] + lab_names
        else:
            raise ValueError(f"no baseline features for modality kind '{kind}'")
        values = values.copy()
        values[~present] = np.nan
        blocks.append(values)
        names += [f"{name}:{label}" for label in labels]
    return np.concatenate(blocks, axis=1), names


def _spread(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a modality's array placed at cohort positions (NaN where absent)."""
    out = np.full((len(rows), values.shape[1]), np.nan, np.float32)
    out[rows >= 0] = values[rows[rows >= 0]]
    return out


def _lab_feature_names(items: list[str]) -> list[str]:
    return [f"{item}:{stat}" for item in items for stat in ("last", "mean", "max")] + [
        f"{item}:observed" for item in items
    ]
