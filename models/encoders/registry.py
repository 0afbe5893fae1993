"""Encoder specs: what is needed to rebuild a modality's encoder, and building it through the modality's kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clinfuse.platform.kinds import get_kind
from torch import nn


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild an encoder: kind, architecture name and input dimensions."""

    kind: str
    architecture: str
    embed_dim: int
    dims: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EncoderSpec:
        return cls(**data)


def build_encoder(spec: EncoderSpec) -> nn.Module:
    """The encoder of `spec`, built by its kind (an architecture the kind does not have is an error)."""
    kind = get_kind(spec.kind)
    if spec.architecture not in kind.architectures:
        raise ValueError(f"unknown {spec.kind} encoder '{spec.architecture}': use one of {kind.architectures}")
    return kind.build_encoder(spec)
