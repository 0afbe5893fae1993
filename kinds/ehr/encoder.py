"""EHR encoder: code embeddings with their age, summarised by a GRU or a transformer, plus the lab vector."""

from __future__ import annotations

import torch
from torch import nn


class EhrEncoder(nn.Module):
    """Codes (B, T) right-aligned with 0 = padding, code ages in days (B, T), labs (B, L) and observed (B, L')."""

    def __init__(self, vocab_size: int, n_labs: int, n_observed: int, embed_dim: int, sequence: str = "gru",
                 code_dim: int = 32, dropout: float = 0.3) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, code_dim, padding_idx=0)
        self.age = nn.Linear(1, code_dim)
        self.sequence_kind = sequence
        if sequence == "gru":
            self.sequence = nn.GRU(code_dim, code_dim, batch_first=True)
        elif sequence == "transformer":
            layer = nn.TransformerEncoderLayer(code_dim, nhead=4, dim_feedforward=2 * code_dim, batch_first=True)
            self.sequence = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        else:
            raise ValueError(f"unknown EHR sequence model '{sequence}': use gru or transformer")
        self.labs = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_labs + n_observed, code_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        # bag-of-codes (max over the sequence) keeps rare but decisive codes visible next to the summary
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * code_dim, embed_dim), nn.ReLU())

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens, padding = self.tokens(inputs)
        return self.from_tokens(tokens, padding, inputs["labs"], inputs["lab_observed"])

    def tokens(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position code embeddings with their age (B, T, C), and the padding mask (B, T)."""
        codes = inputs["codes"].long()
        padding = codes == 0
        age = torch.log1p(inputs["code_age_days"].clamp(min=0)).unsqueeze(-1) / 8.0
        tokens = self.embedding(codes) + self.age(age) * (~padding).unsqueeze(-1)
        return self.dropout(tokens), padding

    def from_tokens(self, tokens: torch.Tensor, padding: torch.Tensor, labs: torch.Tensor,
                    lab_observed: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The embedding from token vectors: split out so attributions can integrate over tokens."""
        if self.sequence_kind == "gru":
            summary = self.sequence(tokens)[0][:, -1]
        else:
            keep = (~padding).float().unsqueeze(-1)
            encoded = self.sequence(tokens, src_key_padding_mask=padding & ~padding.all(dim=1, keepdim=True))
            summary = (encoded * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        bag = tokens.masked_fill(padding.unsqueeze(-1), -1e4).amax(dim=1).clamp(min=-1.0)
        labs = self.labs(torch.cat([labs, lab_observed], dim=1))
        return self.project(torch.cat([summary, bag, labs], dim=1))
