"""Attributions inside one modality, on that modality's branch logit.

table: a linear branch's exact contributions, coefficient x (value - training mean); for other branches SHAP
       values per feature (shap.GradientExplainer: expected gradients against training patients);
ehr:   integrated gradients (captum) over the code tokens and the lab vector, summed per code and per lab item;
dicom: occlusion sensitivity (MONAI): a Gaussian hole slides over the image, and each pixel's heat is how far
       the branch logit falls when its neighbourhood is hidden (the positive part), at the input resolution.
       Measured as the heatmap mass inside the demo cohort's planted finding boxes (8% of the image), on the
       same image models (then average + max pooled): integrated gradients from a blurred copy 0.10-0.15,
       occlusion 0.32-0.50 (Grad-CAM, earlier, 0.05: its spatially averaged gradients barely see a focal finding
       the pooling picks out at one place). Gradients also credit anatomy edges the logit is locally sensitive
       to but does not rest on. With today's log-sum-exp pooled CNN occlusion gives 0.67-0.68 (2,000-patient
       cohorts of seeds 7, 3 and 21, test split).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from clinfuse.models.fusion import ModalityBranch
from torch import nn

OCCLUSION_MASK_SHARE = 1 / 8  # side of the occluding window, as a share of the image side
OCCLUSION_OVERLAP = 0.75  # window overlap: the heatmap's step is a quarter of the window


@dataclass
class AttributionContext:
    """What attributions need besides the patient: background inputs, names and texts, how many to keep."""

    background: dict[str, torch.Tensor] | None = None
    feature_names: list[str] = field(default_factory=list)
    vocabulary: list[str] = field(default_factory=list)
    lab_items: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    top_k: int = 20
    seed: int = 0


@dataclass
class Attribution:
    """Top contributions (name, text, value); a heatmap over the input (an image's pixels, a waveform's leads x
    samples) where the kind has one; `detail`: further JSON values a kind's dashboard section draws (e.g. the
    notes' tokens with their values)."""

    kind: str
    top: list[dict]
    heatmap: np.ndarray | None = None
    detail: dict = field(default_factory=dict)


class _BranchLogit(nn.Module):
    """The branch's logit as a (B, 1) output of one input tensor, as attribution libraries expect."""

    def __init__(self, branch: ModalityBranch, key: str, fixed: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.branch, self.key, self.fixed = branch, key, fixed or {}
        # A new module starts in training mode; tools that switch to eval and back (MONAI's eval_mode) would
        # then leave the branch training, its batch norms on batch statistics, for every later explanation.
        self.train(branch.training)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return self.branch({**self.fixed, self.key: value})[1].unsqueeze(-1)


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
    explainer = shap.GradientExplainer(_BranchLogit(branch, "features"), context.background["features"])
    values = np.asarray(explainer.shap_values(features, nsamples=200, rseed=context.seed))
    return values.reshape(-1)[: features.shape[1]]


def ehr_attribution(
    branch: ModalityBranch, inputs: dict[str, torch.Tensor], context: AttributionContext
) -> Attribution:
    from captum.attr import IntegratedGradients

    encoder = branch.encoder
    tokens, padding = encoder.tokens(inputs)

    def logit(tokens: torch.Tensor, labs: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        pad = padding.expand(tokens.shape[0], -1)
        return branch.logit(encoder.from_tokens(tokens, pad, labs, observed)).squeeze(-1)

    baselines = (torch.zeros_like(tokens), torch.zeros_like(inputs["labs"]), torch.zeros_like(inputs["lab_observed"]))
    token_attr, lab_attr, observed_attr = IntegratedGradients(logit).attribute(
        (tokens.detach(), inputs["labs"], inputs["lab_observed"]), baselines=baselines, n_steps=32
    )
    per_code: dict[str, float] = {}
    codes = inputs["codes"][0].tolist()
    for position, value in enumerate(token_attr[0].sum(dim=-1).tolist()):
        if codes[position] != 0:
            code = context.vocabulary[codes[position]]
            per_code[code] = per_code.get(code, 0.0) + value
    labs = lab_attr[0].numpy().reshape(len(context.lab_items), -1).sum(axis=1) + observed_attr[0].numpy()
    for item, value in zip(context.lab_items, labs, strict=True):
        per_code[item] = per_code.get(item, 0.0) + float(value)
    ranked = sorted(per_code.items(), key=lambda kv: -abs(kv[1]))[: context.top_k]
    top = [{"name": code, "text": context.texts.get(code, ""), "value": float(value),
            "kind": "lab" if code.startswith("LAB:") else "code"} for code, value in ranked]  # fmt: skip
    return Attribution("ehr", top)


def image_attribution(
    branch: ModalityBranch, inputs: dict[str, torch.Tensor], context: AttributionContext
) -> Attribution:
    from monai.visualize import OcclusionSensitivity

    image = inputs["image"]
    logit = _BranchLogit(branch, "image")
    mask = max(4, round(image.shape[-1] * OCCLUSION_MASK_SHARE))
    occlusion = OcclusionSensitivity(logit, mask_size=mask, n_batch=64, verbose=False, mode="gaussian",
                                     overlap=OCCLUSION_OVERLAP, activate=False)  # fmt: skip
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI 1.6 indexes with lists, which torch flags as deprecated; the result is still the documented one
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        occluded, _ = occlusion(image)
        drop = (logit(image)[0, 0] - occluded.reshape(image.shape[2:])).numpy()
    heatmap = np.clip(drop, 0, None)  # where hiding the region lowers the logit: it pushed the risk up
    peak = heatmap.max()
    return Attribution("dicom", top=[], heatmap=(heatmap / peak if peak > 0 else heatmap).astype(np.float32))


ATTRIBUTORS: dict[str, Callable[[ModalityBranch, dict[str, torch.Tensor], AttributionContext], Attribution]] = {
    "table": table_attribution,
    "ehr": ehr_attribution,
    "dicom": image_attribution,
}
