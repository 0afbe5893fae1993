"""SHAP backgrounds for the table branches, stored with the model so explanations need no training data.

Each feature-table modality's background is the k-means centroids of the training patients' aligned features: a
summary of the training distribution, never an individual patient's row (the model bundle may travel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.kinds import get_kind
from safetensors.numpy import load_file, save_file
from sklearn.cluster import KMeans

CENTROIDS = 50


def fit_backgrounds(cache: FeatureCache, seed: int = 0) -> dict[str, np.ndarray]:
    """Per feature-table modality, (≤ CENTROIDS, features) centroids of the training split's rows."""
    train = set(cache.cohort.loc[cache.cohort["split"] == "train", "patient"])
    backgrounds = {}
    for name, kind in cache.modalities.items():
        table = get_kind(kind).feature_table(cache, name)
        if table is None:
            continue
        values = table[table["patient"].isin(train)].drop(columns=["patient"]).to_numpy(np.float32)
        clusters = min(CENTROIDS, len(values))
        model = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(values)
        backgrounds[name] = model.cluster_centers_.astype(np.float32)
    return backgrounds


def save_backgrounds(backgrounds: dict[str, np.ndarray], path: Path) -> None:
    save_file({name: np.ascontiguousarray(values) for name, values in backgrounds.items()}, str(path))


def load_backgrounds(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))
