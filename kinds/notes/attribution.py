"""Integrated gradients (captum) over the token embeddings, on the notes branch's logit, summed per position.

The baseline is all-zero embeddings, the [PAD] embedding: the text "taken away". A token's value is how much
its word, in its context, moved the logit; `top` adds the values of the same word over its positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from clinfuse.models.explain.within_modality import Attribution, AttributionContext
from clinfuse.models.fusion import ModalityBranch

IG_STEPS = 32


@dataclass
class NotesAttributionContext(AttributionContext):
    """`vocabulary`: token strings by id (the frozen tokenizer's), so attributions name words, not ids."""

    steps: int = IG_STEPS


def notes_attribution(branch: ModalityBranch, inputs: dict[str, torch.Tensor],
                      context: NotesAttributionContext) -> Attribution:  # fmt: skip
    from captum.attr import IntegratedGradients

    encoder = branch.encoder
    with torch.no_grad():
        tokens, padding = encoder.tokens(inputs)

    def logit(embeddings: torch.Tensor) -> torch.Tensor:
        return branch.logit(encoder.from_tokens(embeddings, padding.expand(embeddings.shape[0], -1))).squeeze(-1)

    values = IntegratedGradients(logit).attribute(tokens, baselines=torch.zeros_like(tokens), n_steps=context.steps)
    ids = inputs["tokens"][0].tolist()
    per_position = values[0].sum(dim=-1).tolist()
    shown = [(context.vocabulary[i], float(v)) for i, v in zip(ids, per_position, strict=True) if i != 0]
    per_token: dict[str, float] = {}
    for token, value in shown:
        per_token[token] = per_token.get(token, 0.0) + value
    ranked = sorted(per_token.items(), key=lambda kv: -abs(kv[1]))[: context.top_k]
    top = [{"name": token, "value": value, "kind": "token"} for token, value in ranked]
    return Attribution("notes", top, detail={"tokens": [[token, value] for token, value in shown]})
