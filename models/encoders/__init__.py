"""Encoders. Each maps its modality's tensors to an embedding of `embed_dim` features; each kind builds its own
(`ModalityKind.build_encoder`), and the tabular ones here serve every kind whose input is a feature table.

`build_encoder` is the one place that builds an encoder from a spec; the fusion model never knows the kind.
"""

from clinfuse.models.encoders.registry import EncoderSpec, build_encoder

__all__ = ["EncoderSpec", "build_encoder"]
