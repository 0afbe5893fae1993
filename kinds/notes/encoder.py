"""Notes encoders: token ids (B, T), right-padded with 0, to (B, embed_dim).

cnn:         word embeddings, 1D convolutions of widths 1, 2 and 3 (words, bigrams, trigrams: "no evidence of
             consolidation" can be learnt as a context of its own, apart from "consolidation"), each max-pooled
             over the windows that lie inside the text, then a projection.
transformer: word plus position embeddings, two small self-attention layers, masked mean and max pooling.

Both split into `tokens()` (the word embeddings and the padding mask) and `from_tokens()`, so integrated
gradients can run over the token embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn

WIDTHS = (1, 2, 3)


class NotesCNN(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, word_dim: int = 64, channels: int = 64,
                 dropout: float = 0.3) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.convolutions = nn.ModuleList(nn.Conv1d(word_dim, channels, width) for width in WIDTHS)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(len(WIDTHS) * channels, embed_dim), nn.ReLU())

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.from_tokens(*self.tokens(inputs))

    def tokens(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word embeddings (B, T, E) and the padding mask (B, T)."""
        ids = inputs["tokens"].long()
        return self.dropout(self.embedding(ids)), ids == 0

    def from_tokens(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        channels_first = tokens.transpose(1, 2)
        pooled = []
        for width, convolution in zip(WIDTHS, self.convolutions, strict=True):
            features = F.relu(convolution(channels_first))  # (B, C, T - width + 1)
            # a window is inside the text when none of its positions is padding
            outside = F.max_pool1d(padding.float().unsqueeze(1), width, stride=1) > 0
            pooled.append(features.masked_fill(outside, 0.0).amax(dim=-1))  # ReLU >= 0: an empty text gives 0
        return self.project(torch.cat(pooled, dim=1))


class NotesTransformer(nn.Module):
    def __init__(self, vocab_size: int, max_tokens: int, embed_dim: int, word_dim: int = 64, layers: int = 2,
                 heads: int = 4, dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.position = nn.Embedding(max_tokens, word_dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(word_dim, nhead=heads, dim_feedforward=2 * word_dim, dropout=dropout,
                                           batch_first=True)  # fmt: skip
        self.sequence = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * word_dim, embed_dim), nn.ReLU())

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.from_tokens(*self.tokens(inputs))

    def tokens(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word embeddings (B, T, E), without positions (added in `from_tokens`: the attribution baseline keeps
        them), and the padding mask (B, T)."""
        ids = inputs["tokens"].long()
        return self.dropout(self.embedding(ids)), ids == 0

    def from_tokens(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        positions = self.position(torch.arange(tokens.shape[1], device=tokens.device))
        # an empty text attends to everything rather than to nothing (which would give NaN)
        mask = padding & ~padding.all(dim=1, keepdim=True)
        encoded = self.sequence(tokens + positions, src_key_padding_mask=mask)
        keep = (~padding).unsqueeze(-1).to(encoded.dtype)
        mean = (encoded * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        peak = encoded.masked_fill(padding.unsqueeze(-1), -1e4).amax(dim=1).clamp(min=-1e3) * keep.amax(dim=1)
        return self.project(torch.cat([mean, peak], dim=1))
