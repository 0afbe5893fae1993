"""Attributions inside an EHR modality: integrated gradients (captum) over the code tokens and the lab vector,
summed per code and per lab item."""

from __future__ import annotations

import torch
from clinfuse.models.explain.within_modality import Attribution, AttributionContext
from clinfuse.models.fusion import ModalityBranch


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
    lab_items = set(context.lab_items)
    top = [{"name": code, "text": context.texts.get(code, ""), "value": float(value),
            "kind": "lab" if code in lab_items else "code"} for code, value in ranked]  # fmt: skip
    return Attribution("ehr", top)
