"""The XGBoost baseline's feature matrix: per modality kind, simple features; NaN where a modality is absent.

dicom: the trained image encoder's embedding (HAIM used pretrained embeddings the same way); table: the
aligned, normalised features; ehr: counts of each vocabulary code plus the lab vector. Columns are named
'<modality>:<feature>' so TreeSHAP values can be summed per modality.
"""

from __future__ import annotations

import numpy as np
from clinfuse.platform.cache import FeatureCache


class BaselineFeatures:
    """Builds feature rows for one cache. Tables and alignments are read once here, because scoring and the
    dashboard's explanations ask for a few patients at a time."""

    def __init__(self, cache: FeatureCache) -> None:
        self.cache = cache
        self.tables: dict[str, tuple[np.ndarray, list[str]]] = {}
        self.ehr: dict[str, tuple[int, list[str]]] = {}
        for name, kind in cache.modalities.items():
            if kind == "table":
                table = cache.table(name, "features").drop(columns=["patient"])
                self.tables[name] = (table.to_numpy(np.float32), list(table.columns))
            elif kind == "ehr":
                alignment = cache.json(name, "alignment")
                vocabulary = alignment["vocabulary"]
                labels = [f"count {c}" for c in vocabulary[2:]] + _lab_feature_names(alignment["lab_items"])
                self.ehr[name] = (len(vocabulary), labels)
            elif kind != "dicom":
                raise ValueError(f"no baseline features for modality kind '{kind}'")

    def __call__(self, embeddings: np.ndarray, cohort_rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """(patients x features) and the feature names, for every cohort patient or for `cohort_rows` only.
        `embeddings` is (patients, M, D), in the same order."""
        blocks, names = [], []
        for column, (name, kind) in enumerate(self.cache.modalities.items()):
            rows = self.cache.rows(name) if cohort_rows is None else self.cache.rows(name)[cohort_rows]
            present = rows >= 0
            if kind == "dicom":
                values = embeddings[:, column, :].astype(np.float32)
                labels = [f"embedding_{i}" for i in range(embeddings.shape[2])]
            elif kind == "table":
                table, labels = self.tables[name]
                values = _spread(table, rows)
            else:
                values, labels = self._ehr_values(name, rows, present)
            values = values.copy()
            values[~present] = np.nan
            blocks.append(values)
            names += [f"{name}:{label}" for label in labels]
        return np.concatenate(blocks, axis=1), names

    def _ehr_values(self, name: str, rows: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, list[str]]:
        vocabulary_size, labels = self.ehr[name]
        used = np.unique(rows[present])  # only the modality rows asked for are read
        codes = np.asarray(self.cache.array(name, "codes")[used])
        counts = np.zeros((codes.shape[0], vocabulary_size), np.float32)
        np.add.at(counts, (np.repeat(np.arange(codes.shape[0]), codes.shape[1]), codes.ravel()), 1.0)
        labs = np.concatenate(
            [self.cache.array(name, "labs")[used], self.cache.array(name, "lab_observed")[used]], axis=1
        )
        compact = np.where(present, np.searchsorted(used, rows), -1)
        return _spread(np.concatenate([counts[:, 2:], labs], axis=1), compact), labels  # drop <pad>, keep <unk>


def _spread(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a modality's array placed at cohort positions (NaN where absent)."""
    out = np.full((len(rows), values.shape[1]), np.nan, np.float32)
    out[rows >= 0] = values[rows[rows >= 0]]
    return out


def _lab_feature_names(items: list[str]) -> list[str]:
    return [f"{item}:{stat}" for item in items for stat in ("last", "mean", "max")] + [
        f"{item}:observed" for item in items
    ]
