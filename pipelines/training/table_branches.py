"""Table branches before gradient training: pick each table modality's architecture, fit the linear ones."""

from __future__ import annotations

import numpy as np
import torch
from clinfuse.models.branch_selection import choose_table_branch
from clinfuse.models.encoders.registry import TABLE_ARCHITECTURES
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.linear_branches import fit_linear_branches
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError

AUTO = "auto"


def split_table(cache: FeatureCache, name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split's patients: their features in modality `name` (zeros where absent), presence and labels."""
    cohort = cache.cohort
    rows = (cohort["split"] == split).to_numpy()
    values = cache.table(name, "features").drop(columns=["patient"]).to_numpy(np.float64)
    row = cohort[f"row_{name}"].to_numpy()[rows]
    present = row >= 0
    features = np.zeros((rows.sum(), values.shape[1]))
    features[present] = values[row[present]]
    return features, present, cohort["label"].to_numpy()[rows]


def choose_table_architectures(cache: FeatureCache, requested: str, seed: int) -> tuple[dict[str, str], dict]:
    """Architecture per table modality: `requested`, or with "auto" the rule of models/branch_selection.py."""
    if requested not in (AUTO, *TABLE_ARCHITECTURES):
        raise ClinFuseError(f"unknown table encoder '{requested}'",
                            f"use --table-encoder with one of {', '.join((AUTO, *TABLE_ARCHITECTURES))}")  # fmt: skip
    chosen, evidence = {}, {}
    for name, kind in cache.modalities.items():
        if kind != "table":
            continue
        if requested != AUTO:
            chosen[name] = requested
            continue
        x_train, has_train, y_train = split_table(cache, name, "train")
        x_val, has_val, y_val = split_table(cache, name, "val")
        choice = choose_table_branch(x_train[has_train], y_train[has_train], x_val[has_val], y_val[has_val], seed)
        chosen[name], evidence[name] = choice.architecture, choice.to_json()
    return chosen, evidence


def fit_linear_table_branches(model: LateFusionModel, cache: FeatureCache, seed: int,
                              splits: tuple[str, ...] = ("train",)) -> tuple[dict | None, np.ndarray]:  # fmt: skip
    """Fit every linear branch jointly (models/linear_branches.py) on the patients of `splits`.

    Returns the fit's summary (None without linear branches) and, per cohort row, the shift from the final
    fit's logit to the inner out-of-fold logit (0 for rows outside `splits`).
    """
    shift = np.zeros(len(cache.cohort))
    names = [name for name, branch in model.branches.items() if getattr(branch.encoder, "fitted_outside", False)]
    if not names:
        return None, shift
    parts = {name: [split_table(cache, name, split) for split in splits] for name in names}
    tables = {name: tuple(np.concatenate(arrays) for arrays in zip(*per_split, strict=True))
              for name, per_split in parts.items()}  # fmt: skip
    labels = next(iter(tables.values()))[2]
    fit = fit_linear_branches({n: t[0] for n, t in tables.items()}, {n: t[1] for n, t in tables.items()}, labels,
                              seed)  # fmt: skip
    for name in names:
        model.branches[name].encoder.set_coefficients(torch.as_tensor(fit.coefficients[name]),
                                                      torch.as_tensor(fit.feature_centers[name]))  # fmt: skip
    split_of_row = cache.cohort["split"].to_numpy()
    rows = np.concatenate([np.flatnonzero(split_of_row == split) for split in splits])  # split_table's order
    shift[rows] = fit.out_of_fold_shift
    return fit.summary() | {"fitted_on": list(splits)}, shift
