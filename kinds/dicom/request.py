"""A DICOM modality in an online scoring request: the paths of a patient's DICOM files or study folders.

The request is linked to its patient by a manifest (the ingest's `link: manifest`), not by the files' PatientID
tag: the caller says whose images they are. The 2D image or 3D series is then chosen, windowed and checked by the
frozen ingest exactly as in batch. `CLINFUSE_SERVING_ROOT`, when set, is the only folder a request may read from:
a scoring endpoint must not open any file the server can see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import list_files, read_manifest
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.base import NoSourceData

SERVING_ROOT_ENV = "CLINFUSE_SERVING_ROOT"
MANIFEST_FILE = "manifest.csv"


def dicom_request_cell(config: DicomModality, patient_id: str) -> list[str]:
    """The absolute paths of the patient's files: from the manifest, else every file whose PatientID is theirs."""
    if config.link == "manifest":
        files = [path for path, pid in read_manifest(config.manifest, config.path).items() if pid == patient_id]
    else:
        import pydicom
        from pydicom.errors import InvalidDicomError

        files = []
        for path in list_files(config.path):
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
            except (InvalidDicomError, OSError, ValueError):
                continue  # the batch ingest reports such files; an example request leaves them out
            if str(header.get("PatientID", "")).strip() == patient_id:
                files.append(path)
    if not files:
        raise NoSourceData(f"dicom modality '{config.name}' has no file of the requested patient",
                            f"check the patient id against the images under {config.path}")  # fmt: skip
    return [str(path.resolve()) for path in sorted(files)]


def write_dicom_request(settings: dict[str, Any], cells: dict[str, Any], folder: Path) -> dict[str, Any]:
    allowed = _serving_root()
    rows = [(pid, path) for pid, cell in cells.items() for path in _files(cell, allowed)]
    manifest = folder / MANIFEST_FILE
    pd.DataFrame(rows, columns=["patient_id", "path"]).to_csv(manifest, index=False)
    paths = [path for _, path in rows]
    # the narrowest folder holding the files: the ingest fingerprints the whole tree under `path`
    root = Path(os.path.commonpath(paths)) if paths else folder
    if root.is_file():
        root = root.parent
    return {"path": root, "link": "manifest", "manifest": manifest}


def _serving_root() -> Path | None:
    root = os.environ.get(SERVING_ROOT_ENV)
    return Path(root).resolve() if root else None


def _files(cell: Any, allowed: Path | None) -> list[str]:
    """The files a cell names (a path, or a list of paths; a folder stands for every file under it)."""
    listed = [cell] if isinstance(cell, str) else cell
    if not isinstance(listed, list) or not all(isinstance(p, str) and p.strip() for p in listed):
        raise ClinFuseError("a DICOM cell of the request is not a path or a list of paths",
                            'send "/path/to/study" or ["/path/a.dcm", ...] per patient (docs/serving.md)')  # fmt: skip
    files = []
    for given in listed:
        path = Path(given.strip())
        if not path.is_absolute():
            if allowed is None:
                raise ClinFuseError("a DICOM path of the request is relative",
                                    f"send absolute paths, or set {SERVING_ROOT_ENV} on the server")  # fmt: skip
            path = allowed / path
        path = path.resolve()
        if allowed is not None and not path.is_relative_to(allowed):
            raise ClinFuseError(f"a DICOM path of the request lies outside {SERVING_ROOT_ENV}",
                                f"send paths under {allowed}")  # fmt: skip
        if not path.exists():
            raise ClinFuseError("a DICOM path of the request does not exist on the scoring server",
                                "send paths as the server sees them (see docs/serving.md)")  # fmt: skip
        files += [str(p) for p in list_files(path)] if path.is_dir() else [str(path)]
    return files
