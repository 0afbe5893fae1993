"""Ingest a `dicom` modality: scan, select one image per patient, decode and preprocess into images.npy.

Decoded images are reused from the previous cache when the selected file's content digest is unchanged, so
adding one file to a folder decodes one file. Per-file problems are recorded and never stop the run.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import (
    FileIssue,
    ImageHeader,
    list_files,
    read_header,
    read_manifest,
    select_images,
)
from clinfuse.kinds.dicom.pixels import PreprocessedImage, preprocess_file
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.ingest.fingerprint import file_digest
from tqdm import tqdm

IMAGES_FILE = "images.npy"
IMAGE_INDEX_FILE = "images.json"
_PARALLEL_FROM = 2000  # below this, spawning workers (each imports torch+MONAI, ~10 s) costs more than it saves


def ingest_dicom(modality: DicomModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    root = modality.path
    manifest = read_manifest(modality.manifest, root) if modality.link == "manifest" else None
    files = list_files(root) if manifest is None else sorted(p for p in manifest if p.exists())
    headers: list[ImageHeader] = []
    issues: list[FileIssue] = []
    for path in tqdm(files, desc=f"{modality.name}: headers", unit="file", disable=not context.progress):
        result = read_header(path, root, manifest.get(path) if manifest is not None else None, modality.max_decoded_mib)
        (headers if isinstance(result, ImageHeader) else issues).append(result)
    if manifest is not None:
        missing = [p for p in manifest if not p.exists()]
        issues += [FileIssue(_relative(p, root), "failed", "listed in the manifest but not found", manifest[p])
                   for p in missing]  # fmt: skip

    chosen, selection = select_images(headers, cohort.index_times())
    ordered = [pid for pid in cohort.patient_ids if pid in chosen]
    digests = {pid: context.input_digests.get(str(chosen[pid].path)) or file_digest(chosen[pid].path)
               for pid in ordered}  # fmt: skip
    reusable = _PreviousImages(context.previous, modality.image_size)
    to_decode = [pid for pid in ordered if digests[pid] not in reusable]
    decoded, decode_issues = _decode(
        [chosen[pid].path for pid in to_decode], modality, context, desc=f"{modality.name}: decode"
    )
    patient_issues = {pid: reason for pid, reason in zip(to_decode, decode_issues, strict=True) if reason}
    issues += [
        FileIssue(_relative(chosen[pid].path, root), "failed", reason, pid) for pid, reason in patient_issues.items()
    ]

    present, pixels, index, reused = [], [], [], 0
    for pid in ordered:
        digest = digests[pid]
        if digest in reusable:
            image, meta = reusable.get(digest)
            reused += 1
        elif decoded.get(str(chosen[pid].path)) is not None:
            result: PreprocessedImage = decoded[str(chosen[pid].path)]
            image = result.pixels
            meta = {
                "rows": result.geometry.rows,
                "cols": result.geometry.cols,
                "transfer_syntax": result.transfer_syntax,
                "photometric": result.photometric,
            }
        else:
            continue  # decode failed: imaging missing for this patient, recorded above
        present.append(pid)
        pixels.append(image)
        index.append({"digest": digest, **meta})

    # a patient left without an image because their files failed is flagged, not silently absent
    in_cohort, imaged = set(cohort.patient_ids), set(present)
    for issue in issues:
        if issue.outcome == "failed" and issue.patient_id in in_cohort and issue.patient_id not in imaged:
            patient_issues.setdefault(issue.patient_id, issue.reason)

    out.mkdir(parents=True, exist_ok=True)
    stack = np.stack(pixels) if pixels else np.zeros((0, modality.image_size, modality.image_size), np.float16)
    np.save(out / IMAGES_FILE, stack.astype(np.float16))
    (out / IMAGE_INDEX_FILE).write_text(json.dumps({"image_size": modality.image_size, "rows": index}))
    return ModalityOutput(
        present_ids=present,
        report=_report(files, issues, selection, present, index, len(to_decode), reused),
        patient_issues=patient_issues,
    )


def _decode(
    paths: list[Path], modality: DicomModality, context: IngestContext, desc: str
) -> tuple[dict[str, PreprocessedImage | None], list[str]]:
    """Decode files (in worker processes when there are many); returns results and per-file failure reasons."""
    results: dict[str, PreprocessedImage | None] = {}
    reasons: list[str] = []
    arguments = [(p, modality.image_size, modality.window) for p in paths]
    if context.workers > 1 and len(paths) >= _PARALLEL_FROM:
        with ProcessPoolExecutor(context.workers, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            outcomes = list(tqdm(pool.map(_safe_preprocess, arguments, chunksize=16), total=len(paths), desc=desc,
                                 unit="file", disable=not context.progress))  # fmt: skip
    else:
        outcomes = [_safe_preprocess(a) for a in tqdm(arguments, desc=desc, unit="file", disable=not context.progress)]
    for path, (image, reason) in zip(paths, outcomes, strict=True):
        results[str(path)] = image
        reasons.append(reason)
    return results, reasons


def _one_thread() -> None:
    """Each decoding process uses one thread: N processes x N torch threads would oversubscribe the cores."""
    import torch

    torch.set_num_threads(1)


def _safe_preprocess(arguments: tuple[Path, int, tuple[float, float] | None]) -> tuple[PreprocessedImage | None, str]:
    try:
        return preprocess_file(*arguments), ""
    except Exception as exc:  # one bad file must never stop the batch: the reason is recorded instead
        return None, f"pixel decoding failed: {type(exc).__name__}: {str(exc)[:160]}"


class _PreviousImages:
    """Decoded images of the previous cache by file digest (only when preprocessing matches); pixels stay
    memory-mapped until a row is actually reused."""

    def __init__(self, previous: Path | None, image_size: int) -> None:
        self.rows: dict[str, tuple[int, dict]] = {}
        if previous is None or not (previous / IMAGE_INDEX_FILE).exists():
            return
        index = json.loads((previous / IMAGE_INDEX_FILE).read_text())
        if index.get("image_size") != image_size:
            return
        self.images = np.load(previous / IMAGES_FILE, mmap_mode="r")
        self.rows = {row["digest"]: (i, {k: v for k, v in row.items() if k != "digest"})
                     for i, row in enumerate(index["rows"])}  # fmt: skip

    def __contains__(self, digest: str) -> bool:
        return digest in self.rows

    def get(self, digest: str) -> tuple[np.ndarray, dict]:
        row, meta = self.rows[digest]
        return np.array(self.images[row]), meta


def _report(
    files: list[Path],
    issues: list[FileIssue],
    selection: dict,
    present: list[str],
    index: list[dict],
    decoded: int,
    reused: int,
) -> dict:
    skipped = [i for i in issues if i.outcome == "skipped"]
    failed = [i for i in issues if i.outcome == "failed"]
    return {
        "files_seen": len(files),
        "files_read": len(files) - len(skipped) - len([i for i in failed if "unreadable" in i.reason]),
        "patients_present": len(present),
        "images_decoded": decoded,
        "images_reused": reused,
        "skipped": {"count": len(skipped), "by_reason": dict(Counter(i.reason for i in skipped)),
                    "files": [{"path": i.path, "reason": i.reason} for i in skipped]},
        "failed": {"count": len(failed), "files": [{"path": i.path, "reason": i.reason} for i in failed]},
        "selection": selection,
        "transfer_syntaxes": dict(Counter(row["transfer_syntax"] for row in index)),
        "photometric": dict(Counter(row["photometric"] for row in index)),
    }  # fmt: skip


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name
