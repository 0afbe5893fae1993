"""`check_kind`: does a modality kind provide every part, consistently? (The static half of conformance: the
end-to-end half, ingest -> train -> explain -> score -> dashboard, is tests/kinds/test_conformance.py.)"""

from __future__ import annotations

import importlib.util
import inspect
import re
import typing

from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.base import ModalityKind
from clinfuse.platform.kinds.config import NAME_PATTERN, KindConfig

_ATTRIBUTES = ("name", "label", "config_model", "architectures", "default_architectures")


def check_kind(kind: ModalityKind) -> None:
    """Raise one error naming the first missing or inconsistent part of `kind`."""
    where = f"modality kind {type(kind).__module__}.{type(kind).__qualname__}"
    if not isinstance(kind, ModalityKind):
        raise ClinFuseError(f"{where} is not a ModalityKind", "subclass clinfuse.platform.kinds.ModalityKind")
    missing = [a for a in _ATTRIBUTES if not hasattr(kind, a)]
    if missing:
        raise ClinFuseError(f"{where} lacks {', '.join(missing)}", "set them as class attributes")
    abstract = sorted(getattr(type(kind), "__abstractmethods__", ()))
    if abstract:
        raise ClinFuseError(f"{where} does not implement {', '.join(abstract)}", "implement every abstract part")
    if not re.match(NAME_PATTERN, kind.name):
        raise ClinFuseError(f"{where}: name '{kind.name}' is not a lower-case identifier", "rename the kind")
    model = kind.config_model
    if not (inspect.isclass(model) and issubclass(model, KindConfig)):
        raise ClinFuseError(f"{where}: config_model is not a KindConfig subclass", "derive it from KindConfig")
    literal = typing.get_args(model.model_fields["kind"].annotation)
    if literal != (kind.name,):
        raise ClinFuseError(f"{where}: config_model's `kind` must be Literal['{kind.name}'], not {literal or 'str'}",
                            "declare kind: Literal[...] with the kind's name")  # fmt: skip
    for field in model.path_fields:
        if field not in model.model_fields:
            raise ClinFuseError(f"{where}: path field '{field}' is not a field of its config", "fix path_fields")
    # the top-level package only: finding a submodule imports its parents (MONAI: seconds in every command)
    unimportable = [name for name in kind.worker_modules if importlib.util.find_spec(name.split(".")[0]) is None]
    if unimportable:
        raise ClinFuseError(f"{where}: worker_modules {', '.join(unimportable)} cannot be imported",
                            "list importable module names, or none")  # fmt: skip
    if not kind.architectures:
        raise ClinFuseError(f"{where} names no encoder architecture", "list them in `architectures`")
    for device in ("cpu", "gpu"):
        default = kind.default_architectures.get(device)
        if default not in kind.architectures:
            raise ClinFuseError(f"{where}: default {device} architecture {default!r} is not one of its architectures",
                                "fix default_architectures")  # fmt: skip
