"""A sha256 manifest over every file of a model bundle; loading refuses a changed, missing or unknown file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from clinfuse.platform.errors import ClinFuseError

MANIFEST_FILE = "MANIFEST.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle: Path) -> str:
    """Write MANIFEST.json listing every file's sha256; returns the manifest's own sha256."""
    files = {
        str(path.relative_to(bundle)): sha256_file(path)
        for path in sorted(bundle.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    (bundle / MANIFEST_FILE).write_text(json.dumps({"format": 1, "algorithm": "sha256", "files": files}, indent=1))
    return sha256_file(bundle / MANIFEST_FILE)


def verify_bundle(bundle: Path, manifest_sha256: str) -> None:
    """Check the manifest against the digest the registry holds, then every file against the manifest."""
    manifest_path = bundle / MANIFEST_FILE
    fix = "re-register the model from its training run, or restore the registry's artifact store from backup"
    if not manifest_path.is_file():
        raise ClinFuseError(f"model bundle {bundle} has no {MANIFEST_FILE}", fix)
    if sha256_file(manifest_path) != manifest_sha256:
        raise ClinFuseError(f"model bundle {bundle}: {MANIFEST_FILE} differs from the registered one (tampered?)", fix)
    listed = json.loads(manifest_path.read_text())["files"]
    present = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST_FILE}
    if unknown := sorted(present - set(listed)):
        raise ClinFuseError(f"model bundle {bundle} holds unknown file(s) {unknown[:3]}; refusing to load it", fix)
    for relative, expected in listed.items():
        path = bundle / relative
        if not path.is_file():
            raise ClinFuseError(f"model bundle {bundle} is missing {relative}", fix)
        if sha256_file(path) != expected:
            raise ClinFuseError(f"model bundle {bundle}: {relative} does not match its sha256 (tampered?)", fix)
