"""The installed modality kinds, found through the `clinfuse.kinds` entry points.

Entry points rather than a list in the code: ClinFuse's own kinds are declared in pyproject.toml exactly as a
hospital declares a private kind in its own package (`[project.entry-points."clinfuse.kinds"]`), so a private
kind needs no change here and is checked the same way. Discovery reads installed metadata, not import side
effects; a kind's module is imported when the registry is first asked for. `use_kinds` puts a kind in place
for a block of code (tests, or trying a kind before packaging it).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points

from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.base import ModalityKind
from clinfuse.platform.kinds.conformance import check_kind

ENTRY_POINT_GROUP = "clinfuse.kinds"
_lock = threading.Lock()
_installed: dict[str, ModalityKind] | None = None
_broken: dict[str, str] = {}  # installed kinds that failed to load or to pass check_kind: name -> why
_overrides: dict[str, ModalityKind] = {}


def kinds() -> dict[str, ModalityKind]:
    """Every usable kind by its `kind:` name (installed ones, then any put in place by `use_kinds`)."""
    return {**_load_installed(), **_overrides}


def get_kind(name: str) -> ModalityKind:
    """The kind called `name`; an unknown name is one error naming the installed kinds."""
    available = kinds()
    if name not in available and name in _broken:
        raise ClinFuseError(f"modality kind '{name}' is installed but unusable: {_broken[name]}",
                            "fix or reinstall the package that provides it")  # fmt: skip
    if name not in available:
        raise ClinFuseError(
            f"modality kind '{name}' is not installed (installed: {', '.join(available)})",
            "fix the modality's `kind:` in cohort.yaml, or install the package that provides that kind",
        )
    return available[name]


@contextlib.contextmanager
def use_kinds(*extra: ModalityKind) -> Iterator[None]:
    """Make these kinds usable inside the block (each is checked first)."""
    for kind in extra:
        check_kind(kind)
    saved = dict(_overrides)
    _overrides.update({kind.name: kind for kind in extra})
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


def _load_installed() -> dict[str, ModalityKind]:
    global _installed
    with _lock:
        if _installed is None:
            found: dict[str, ModalityKind] = {}
            for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
                # One broken plug-in must not stop the kinds that work: it is reported when it is asked for.
                try:
                    kind = point.load()()
                    check_kind(kind)
                except ClinFuseError as exc:
                    _broken[point.name] = exc.problem
                    continue
                except Exception as exc:  # an import error of the plug-in's package
                    _broken[point.name] = f"{point.value} does not load ({type(exc).__name__}: {exc})"
                    continue
                if kind.name != point.name:
                    _broken[point.name] = f"its entry point loads kind '{kind.name}' (name it after the kind)"
                    continue
                found[kind.name] = kind
            _installed = found
        return _installed
