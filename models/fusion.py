"""Late fusion over any subset of modalities.

Each branch (an injected encoder plus a linear head) yields an embedding and a modality logit. The fusion
head adds the logits of the present modalities to a learnt prior and an interaction term computed from the
masked embeddings and the presence mask:

    fusion_logit(S) = prior + sum_{m in S} w_m * (logit_m - c_m) + a * interaction(embeddings of S, mask of S)

The modality weights w_m and the interaction weight a are not trained by gradient: they start at 1 and are
refitted on the validation split after training (see `models/modality_weights.py`), where the branches'
overfitting shows; a is pulled towards 0, so the interaction MLP stays only where validation asks for it and
the head can reduce to a stacked linear model.

The centres c_m are each branch's average logit over the patients who have the modality, tracked during
training like a batch norm's running mean (training then sets them exactly, in eval mode). Each branch also
learns to predict the outcome alone, so its logit carries its own intercept (about the log-odds of the base
rate); uncentred, every present modality would add that intercept again, the fusion would drift lower the
more modalities a patient has (measured on a demo cohort: mean logit -2.1 with all three against an observed
-0.8), and each modality's Shapley value would carry the intercept instead of what its data says. Centred, a
modality at its average moves the prediction by nothing.

Any subset S, including the empty one (the prior) and a single modality, is a valid input, which is what makes
the exact modality Shapley values cheap: 2^M re-runs of `head` on cached embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

CENTER_MOMENTUM = 0.1  # running-mean step per training batch (batch norm's default)


class ModalityBranch(nn.Module):
    """An encoder (any module mapping the modality's inputs to `embed_dim` features) plus its logit.

    An encoder marked `fitted_outside` (e.g. the logistic-regression table branch) is fitted before training and
    puts its logit in the first embedding unit: the logit layer then reads that unit and is frozen with it.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.logit = nn.Linear(embed_dim, 1)
        if getattr(encoder, "fitted_outside", False):
            with torch.no_grad():
                self.logit.weight.zero_()
                self.logit.weight[0, 0] = 1.0
                self.logit.bias.zero_()
            self.logit.requires_grad_(False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.encoder(inputs)
        return embedding, self.logit(embedding).squeeze(-1)


class FusionHead(nn.Module):
    """prior + weighted sum of present logits + an interaction MLP over masked embeddings (zero at start)."""

    def __init__(self, n_modalities: int, embed_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.prior = nn.Parameter(torch.zeros(()))
        self.register_buffer("modality_weight", torch.ones(n_modalities))
        self.register_buffer("logit_center", torch.zeros(n_modalities))
        # how much of the interaction MLP is kept: refitted on validation after training (modality_weights.py)
        self.register_buffer("interaction_weight", torch.ones(()))
        self.interaction = nn.Sequential(
            nn.Linear(n_modalities * (embed_dim + 1), hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        nn.init.zeros_(self.interaction[-1].weight)
        nn.init.zeros_(self.interaction[-1].bias)

    def forward(self, embeddings: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """embeddings (B, M, D), logits (B, M), mask (B, M) in {0, 1}: the fusion logit (B,)."""
        mask = mask.to(logits.dtype)
        if self.training:
            self._track_centers(logits.detach().float(), mask)
        centred = logits - self.logit_center.to(logits.dtype)
        weighted = (centred * mask * self.modality_weight.to(logits.dtype)).sum(dim=1)
        interaction = self.interaction_weight.to(logits.dtype) * self.interaction_term(embeddings, mask)
        return self.prior + weighted + interaction

    def interaction_term(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The interaction MLP's output (B,) before its validated weight."""
        mask = mask.to(embeddings.dtype)
        masked = embeddings * mask.unsqueeze(-1)
        return self.interaction(torch.cat([masked.flatten(1), mask], dim=1)).squeeze(-1)

    @torch.no_grad()
    def _track_centers(self, logits: torch.Tensor, mask: torch.Tensor) -> None:
        """Move each centre towards this batch's mean logit over the patients the mask shows the modality for."""
        counts = mask.float().sum(dim=0)
        seen = counts > 0
        means = (logits * mask.float()).sum(dim=0) / counts.clamp(min=1.0)
        self.logit_center[seen] = torch.lerp(self.logit_center[seen], means[seen], CENTER_MOMENTUM)


class LateFusionModel(nn.Module):
    """Branches keyed by modality name (from the config, never from code) and one fusion head."""

    def __init__(self, encoders: dict[str, nn.Module], embed_dim: int) -> None:
        super().__init__()
        self.modalities = list(encoders)
        self.embed_dim = embed_dim
        self.branches = nn.ModuleDict({name: ModalityBranch(enc, embed_dim) for name, enc in encoders.items()})
        self.head = FusionHead(len(self.modalities), embed_dim)

    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, M, D) and modality logits (B, M); each branch runs only on patients who have it."""
        present = batch["present"].bool()
        embeddings, logits = [], []
        for column, name in enumerate(self.modalities):
            rows = present[:, column]
            inputs = batch["inputs"][name]
            any_input = next(iter(inputs.values()))
            embedding = any_input.new_zeros((any_input.shape[0], self.embed_dim), dtype=torch.float32)
            logit = any_input.new_zeros((any_input.shape[0],), dtype=torch.float32)
            if rows.any():
                sub_embedding, sub_logit = self.branches[name]({k: v[rows] for k, v in inputs.items()})
                embedding = embedding.to(sub_embedding.dtype).index_put((rows,), sub_embedding)
                logit = logit.to(sub_logit.dtype).index_put((rows,), sub_logit)
            embeddings.append(embedding)
            logits.append(logit)
        return torch.stack(embeddings, dim=1), torch.stack(logits, dim=1)

    def forward(self, batch: dict, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        embeddings, logits = self.encode(batch)
        mask = batch["present"] if mask is None else mask
        return {"fusion_logit": self.head(embeddings, logits, mask), "modality_logits": logits,
                "embeddings": embeddings}  # fmt: skip
