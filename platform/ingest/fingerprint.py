"""Content fingerprints of inputs, configs and the ingestion code: a changed one rebuilds the cache."""

from __future__ import annotations

import hashlib
import json
import sys
from functools import cache
from pathlib import Path

import clinfuse.platform as platform_package

_CHUNK = 1 << 20
# The code whose behaviour shapes the cache: a change in any of these folders rebuilds it.
_CODE_FOLDERS = ("ingest", "config", "security", "cache")


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes."""
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """Digest of every regular file under `root` (or of `root` itself), keyed by relative path."""
    if root.is_file():
        return {root.name: file_digest(root)}
    return {
        str(p.relative_to(root)): file_digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def combine(*parts: object) -> str:
    """One digest of JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(payload, digest_size=20).hexdigest()


@cache
def code_version() -> str:
    """Package version plus a digest of the ingestion code."""
    from importlib.metadata import version

    roots = [Path(p) for p in platform_package.__path__]
    sources = {}
    for root in roots:
        for folder in _CODE_FOLDERS:
            for path in sorted((root / folder).rglob("*.py")):
                sources[str(path.relative_to(root))] = file_digest(path)
    return f"{version('clinfuse')}+{combine(sources)[:12]}"


@cache
def kind_code_version(kind: object) -> str:
    """A digest of the code of a modality kind's package (its folder): a changed kind rebuilds its modalities."""
    package = type(kind).__module__
    module = sys.modules[package]
    root = Path(module.__file__).parent
    return combine({str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*.py"))})[:12]
