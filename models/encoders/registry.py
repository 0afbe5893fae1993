"""Which encoder serves which modality kind, and with which input dimensions (read from the cache)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from clinfuse.models.encoders.ehr import EhrEncoder
from clinfuse.models.encoders.image import MonaiDenseNet, SmallCNN
from clinfuse.models.encoders.linear_table import LinearTableEncoder
from clinfuse.models.encoders.table import TableMLP
from clinfuse.models.encoders.tree_table import TreeTableEncoder
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


def _image(spec: EncoderSpec) -> nn.Module:
    if spec.architecture == "small_cnn":
        return SmallCNN(spec.embed_dim)
    if spec.architecture == "densenet121":
        return MonaiDenseNet(spec.embed_dim, spatial_dims=2)
    if spec.architecture == "densenet121_3d":
        return MonaiDenseNet(spec.embed_dim, spatial_dims=3)
    raise ValueError(f"unknown image encoder '{spec.architecture}'")


TABLE_ARCHITECTURES = ("linear", "xgboost", "mlp", "snn")


def _table(spec: EncoderSpec) -> nn.Module:
    if spec.architecture not in TABLE_ARCHITECTURES:
        raise ValueError(f"unknown table encoder '{spec.architecture}'")
    if spec.architecture == "linear":
        return LinearTableEncoder(spec.dims["features"], spec.embed_dim)
    if spec.architecture == "xgboost":
        return TreeTableEncoder(spec.dims["features"], spec.embed_dim)
    return TableMLP(spec.dims["features"], spec.embed_dim, self_normalising=spec.architecture == "snn")


def _ehr(spec: EncoderSpec) -> nn.Module:
    return EhrEncoder(spec.dims["vocabulary"], spec.dims["labs"], spec.dims["lab_observed"], spec.embed_dim,
                      sequence=spec.architecture)  # fmt: skip


ENCODER_BUILDERS: dict[str, Callable[[EncoderSpec], nn.Module]] = {"dicom": _image, "table": _table, "ehr": _ehr}
DEFAULT_ARCHITECTURES: dict[str, dict[str, str]] = {
    # per kind: architecture on GPU, on CPU
    "dicom": {"gpu": "densenet121", "cpu": "small_cnn"},
    "table": {"gpu": "mlp", "cpu": "mlp"},
    "ehr": {"gpu": "gru", "cpu": "gru"},
}


def build_encoder(spec: EncoderSpec) -> nn.Module:
    return ENCODER_BUILDERS[spec.kind](spec)
