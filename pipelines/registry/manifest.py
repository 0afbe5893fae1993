"""A sha256 manifest over the files of a model folder (a training run or a registered bundle).

Loading refuses a changed or missing file. A bundle is sealed whole: an unknown file is refused too. A run folder
also holds working files that are not part of the model (Lightning logs, stored heatmaps), which are left out of
its manifest and ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from clinfuse.platform.errors import ClinFuseError

MANIFEST_FILE = "MANIFEST.json"
MANIFEST_FORMAT = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path, unsealed: Iterable[str] | None) -> set[str]:
    """Relative paths of the files a manifest covers: every file but MANIFEST.json in a sealed folder
    (`unsealed` None); else also not the `unsealed` top-level names nor hidden working files."""
    skip = set(unsealed or ())
    files = set()
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or str(relative) == MANIFEST_FILE:
            continue
        if unsealed is not None and (relative.parts[0] in skip or any(p.startswith(".") for p in relative.parts)):
            continue
        files.add(str(relative))
    return files


def write_manifest(folder: Path, unsealed: Iterable[str] | None = None) -> str:
    """Write MANIFEST.json listing every covered file's sha256 (replaced by rename); returns its own sha256."""
    files = {relative: sha256_file(folder / relative) for relative in sorted(_files(folder, unsealed))}
    staged = folder.parent / f".{folder.name}.{MANIFEST_FILE}.partial"  # outside: a sealed folder holds no extra
    staged.write_text(json.dumps({"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}, indent=1))
    staged.replace(folder / MANIFEST_FILE)
    return sha256_file(folder / MANIFEST_FILE)


def verify_manifest(
    folder: Path,
    what: str,
    fix_for: Callable[[str], str],
    expected_sha256: str | None = None,
    unsealed: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, str]:
    """Check `folder` against its MANIFEST.json (and that manifest against `expected_sha256` when given).

    `unsealed`: None seals the folder whole (an unlisted file is refused); else the top-level names left out of
    the manifest, and other unlisted files are ignored. `skip`: listed files not checked (a command about to
    rewrite them). `fix_for(relative)` names the fix for a bad file ('' for the manifest itself).
    Returns the listed files.
    """
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ClinFuseError(f"{what} {folder} has no {MANIFEST_FILE}: it is unfinished or was not written by "
                            "ClinFuse", fix_for(""))  # fmt: skip
    if expected_sha256 is not None and sha256_file(manifest_path) != expected_sha256:
        raise ClinFuseError(f"{what} {folder}: {MANIFEST_FILE} differs from the registered one (tampered?)",
                            fix_for(""))  # fmt: skip
    try:
        listed = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        raise ClinFuseError(f"{what} {folder}: {MANIFEST_FILE} is not readable", fix_for("")) from None
    if unsealed is None and (unknown := sorted(_files(folder, None) - set(listed))):
        raise ClinFuseError(f"{what} {folder} holds unknown file(s) {unknown[:3]}; refusing to load it",
                            fix_for(unknown[0]))  # fmt: skip
    skipped = set(skip)
    for relative, expected in listed.items():
        if relative in skipped:
            continue
        path = folder / relative
        if not path.is_file():
            raise ClinFuseError(f"{what} {folder} is missing {relative}", fix_for(relative))
        if sha256_file(path) != expected:
            raise ClinFuseError(f"{what} {folder}: {relative} does not match its sha256 (changed after it was "
                                "written, or half-written)", fix_for(relative))  # fmt: skip
    return listed
