"""Encoders per modality kind. Each maps its modality's tensors to an embedding of `embed_dim` features.

`build_encoder` is the one place that knows which encoder serves which kind; the fusion model never does.
"""

from clinfuse.models.encoders.registry import ENCODER_BUILDERS, EncoderSpec, build_encoder

__all__ = ["ENCODER_BUILDERS", "EncoderSpec", "build_encoder"]
