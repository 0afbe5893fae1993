"""Attributions inside a table modality: exact for a linear branch, expected gradients (SHAP) otherwise."""

from __future__ import annotations

import numpy as np
import torch
from clinfuse.models.explain.within_modality import Attribution, AttributionContext, BranchLogit
from clinfuse.models.fusion import ModalityBranch


def table_attribution(
    branch: ModalityBranch, inputs: dict[str, torch.Tensor], context: AttributionContext
) -> Attribution:
    values = _table_values(branch, inputs["features"], context)
    order = np.argsort(-np.abs(values))[: context.top_k]
    top = [{"name": context.feature_names[i], "value": float(values[i]),
            "input": float(inputs["features"][0, i])} for i in order]  # fmt: skip
    return Attribution("table", top)


def _table_values(branch: ModalityBranch, features: torch.Tensor, context: AttributionContext) -> np.ndarray:
    """Per-feature values of one patient: exact for a linear branch, expected gradients (SHAP) otherwise."""
    if hasattr(branch.encoder, "contributions"):  # coefficient x centred value: the exact Shapley values
        with torch.no_grad():
            return branch.encoder.contributions(features)[0].numpy()
    import shap

    torch.manual_seed(context.seed)
    explainer = shap.GradientExplainer(BranchLogit(branch, "features"), context.background["features"])
    values = np.asarray(explainer.shap_values(features, nsamples=200, rseed=context.seed))
    return values.reshape(-1)[: features.shape[1]]
