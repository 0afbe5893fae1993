"""Modality kinds as plug-ins: the `ModalityKind` base class, its config base, the registry and the checks."""

from clinfuse.platform.kinds.base import Augmenter, FeatureBlock, ModalityKind, Reader, SectionData
from clinfuse.platform.kinds.config import KindConfig
from clinfuse.platform.kinds.conformance import check_kind
from clinfuse.platform.kinds.registry import get_kind, kinds, use_kinds

__all__ = ["Augmenter", "FeatureBlock", "KindConfig", "ModalityKind", "Reader", "SectionData", "check_kind", "get_kind",
           "kinds", "use_kinds"]  # fmt: skip
