"""Feature-table branches before gradient training: pick the architecture of each modality whose kind gives a feature
table (`ModalityKind.feature_table`), fit the linear and tree ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from clinfuse.models.branch_selection import choose_table_branch
from clinfuse.models.encoders.linear_table import LinearTableEncoder
from clinfuse.models.encoders.tree_table import TreeTableEncoder
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.linear_branches import fit_linear_branches
from clinfuse.models.tree_branches import fit_tree_branch
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind

AUTO = "auto"
# The tabular encoders of clinfuse.models.encoders that the selection chooses among (models/branch_selection.py)
TABLE_ARCHITECTURES = ("linear", "xgboost", "mlp", "snn")


def split_table(cache: FeatureCache, name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split's patients: their features in modality `name` (zeros where absent), presence and labels."""
    cohort = cache.cohort
    rows = (cohort["split"] == split).to_numpy()
    values = get_kind(cache.modalities[name]).feature_table(cache, name).drop(columns=["patient"]).to_numpy(np.float64)
    row = cohort[f"row_{name}"].to_numpy()[rows]
    present = row >= 0
    features = np.zeros((rows.sum(), values.shape[1]))
    features[present] = values[row[present]]
    return features, present, cohort["label"].to_numpy()[rows]


def check_table_encoder(requested: str) -> None:
    if requested not in (AUTO, *TABLE_ARCHITECTURES):
        raise ClinFuseError(f"unknown table encoder '{requested}'",
                            f"use --table-encoder with one of {', '.join((AUTO, *TABLE_ARCHITECTURES))}")  # fmt: skip


def choose_table_architectures(cache: FeatureCache, requested: str, seed: int) -> tuple[dict[str, str], dict]:
    """Architecture per table modality: `requested`, or with "auto" the rule of models/branch_selection.py."""
    check_table_encoder(requested)
    chosen, evidence = {}, {}
    for name, kind in cache.modalities.items():
        if get_kind(kind).feature_table(cache, name) is None:
            continue
        if requested != AUTO:
            chosen[name] = requested
            continue
        x_train, has_train, y_train = split_table(cache, name, "train")
        x_val, has_val, y_val = split_table(cache, name, "val")
        choice = choose_table_branch(x_train[has_train], y_train[has_train], x_val[has_val], y_val[has_val], seed)
        chosen[name], evidence[name] = choice.architecture, choice.to_json()
    return chosen, evidence


@dataclass(frozen=True)
class OutsideFit:
    """Branches fitted before gradient training: their summaries, and per cohort row (N, M) the shift from each
    branch's fitted logit to its inner out-of-fold logit (0 outside the fitted splits and for other branches).

    The linear branches are one regression, so their joint shift sits in the first linear branch's column and
    they share one stacking weight (`linear_group`)."""

    summary: dict
    shift: np.ndarray
    linear_group: list[str]


def fit_outside_branches(model: LateFusionModel, cache: FeatureCache, seed: int,
                         splits: tuple[str, ...] = ("train",)) -> OutsideFit:  # fmt: skip
    """Fit the linear branches jointly (models/linear_branches.py) and each tree branch on its own
    (models/tree_branches.py), on the patients of `splits`."""
    shift = np.zeros((len(cache.cohort), len(model.modalities)))
    split_of_row = cache.cohort["split"].to_numpy()
    rows = np.concatenate([np.flatnonzero(split_of_row == split) for split in splits])  # split_table's order
    linear = [n for n, b in model.branches.items() if isinstance(b.encoder, LinearTableEncoder)]
    trees = [n for n, b in model.branches.items() if isinstance(b.encoder, TreeTableEncoder)]
    tables = {name: _stacked_splits(cache, name, splits) for name in linear + trees}
    summary: dict = {}
    if linear:
        labels = tables[linear[0]][2]
        fit = fit_linear_branches({n: tables[n][0] for n in linear}, {n: tables[n][1] for n in linear}, labels,
                                  seed)  # fmt: skip
        for name in linear:
            model.branches[name].encoder.set_coefficients(torch.as_tensor(fit.coefficients[name]),
                                                          torch.as_tensor(fit.feature_centers[name]))  # fmt: skip
        shift[rows, model.modalities.index(linear[0])] = fit.out_of_fold_shift
        summary["linear"] = fit.summary() | {"fitted_on": list(splits)}
    for name in trees:
        features, present, labels = tables[name]
        fit = fit_tree_branch(features[present], labels[present], seed)
        model.branches[name].encoder.set_booster(fit.booster)
        shift[rows[present], model.modalities.index(name)] = fit.out_of_fold_shift
        summary[name] = fit.summary() | {"fitted_on": list(splits)}
    return OutsideFit(summary, shift, linear)


def _stacked_splits(cache: FeatureCache, name: str, splits: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    parts = [split_table(cache, name, split) for split in splits]
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
