"""What 2D and 3D dicom ingestion share: the header pass over the folder, guarded decoding in worker processes,
the key that says whether earlier decoded rows can be reused, and the report's file sections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import (
    FileIssue,
    HeaderRules,
    ImageHeader,
    describe_error,
    list_files,
    read_header,
    read_manifest,
)
from clinfuse.platform.ingest.context import IngestContext
from clinfuse.platform.ingest.fingerprint import combine, file_digest
from tqdm import tqdm


@dataclass
class FolderScan:
    """The header pass: every file seen, the images to consider, and the files set aside with their reasons."""

    root: Path
    files: list[Path]
    headers: list[ImageHeader]
    issues: list[FileIssue]


def scan_folder(modality: DicomModality, context: IngestContext) -> FolderScan:
    """Read every file's header (never raising for one file); manifest rows whose file is gone are failures."""
    root = modality.path
    manifest = read_manifest(modality.manifest, root) if modality.link == "manifest" else None
    files = list_files(root) if manifest is None else sorted(p for p in manifest if p.exists())
    scan = FolderScan(root, files, [], [])
    arguments = [(path, manifest.get(path) if manifest is not None else None) for path in files]
    for result in run_all(
        _HeaderReader(root, HeaderRules.of(modality)), arguments, context, f"{modality.name}: headers"
    ):
        (scan.headers if isinstance(result, ImageHeader) else scan.issues).append(result)
    if manifest is not None:
        scan.issues += [FileIssue(relative(p, root), "failed", "listed in the manifest but not found", manifest[p])
                        for p in manifest if not p.exists()]  # fmt: skip
    return scan


class _HeaderReader:
    """`read_header` of one (path, patient from the manifest) pair, for this process or a worker."""

    def __init__(self, root: Path, rules: HeaderRules) -> None:
        self.root, self.rules = root, rules

    def __call__(self, argument: tuple[Path, str | None]) -> ImageHeader | FileIssue:
        path, patient = argument
        return read_header(path, self.root, patient, self.rules)

    def on_lost(self, argument: tuple[Path, str | None], error: BaseException) -> FileIssue:
        """A file whose header killed its worker process fails alone."""
        path, patient = argument
        return FileIssue(relative(path, self.root), "failed", f"unreadable header: the reading process died "
                         f"({type(error).__name__})", patient)  # fmt: skip


def decode_all(
    function: Callable[[Any], Any], arguments: list, context: IngestContext, desc: str
) -> Iterator[tuple[Any | None, str]]:
    """(result, "") or (None, reason) per argument, in order (`run_all`). `function` must be a module-level
    function (it is sent to the workers)."""
    return run_all(_Guarded(function), arguments, context, desc)


def run_all(function: Callable[[Any], Any], arguments: list, context: IngestContext, desc: str) -> Iterator[Any]:
    """function(argument) per argument, in order, computed here and on the job's Dask workers once starting them
    is worth it (`DaskWorkers.map_adaptive`), with a progress bar."""
    with tqdm(total=len(arguments), desc=desc, unit="item", disable=not context.progress) as bar:
        for outcome in context.workers.map_adaptive(function, arguments):
            yield outcome
            bar.update()


class _Guarded:
    """One bad file must never stop the batch: any exception becomes that item's reason."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __call__(self, argument: Any) -> tuple[Any | None, str]:
        try:
            return self.function(argument), ""
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # BaseException: a compiled decoder's panic (pylibjpeg-rle's Rust) is one
            return None, f"pixel decoding failed: {describe_error(exc)}"

    @staticmethod
    def on_lost(argument: Any, error: BaseException) -> tuple[None, str]:
        """An item whose decoding killed its worker process (a decoder's crash) fails alone."""
        return None, f"pixel decoding failed: the decoding process died ({type(error).__name__})"


def preprocessing_key(settings: dict, *code: Path) -> str:
    """Settings and pixel code that shaped decoded rows: rows are reused only when both are unchanged."""
    return combine(settings, [file_digest(path) for path in code])


def input_digest(context: IngestContext, path: Path) -> str:
    return context.input_digests.get(str(path)) or file_digest(path)


def flag_unimaged(issues: list[FileIssue], cohort_ids: list[str], present: list[str], flags: dict[str, str]) -> None:
    """A cohort patient left without data because their files failed is flagged, not silently absent."""
    in_cohort, imaged = set(cohort_ids), set(present)
    for issue in issues:
        if issue.outcome == "failed" and issue.patient_id in in_cohort and issue.patient_id not in imaged:
            flags.setdefault(issue.patient_id, issue.reason)


def file_sections(files: list[Path], issues: list[FileIssue]) -> dict:
    """The report's files_seen, files_read (images read and not set aside), skipped and failed (each file with its
    reason, and counts by reason)."""
    skipped = [i for i in issues if i.outcome == "skipped"]
    failed = [i for i in issues if i.outcome == "failed"]
    unreadable = [i for i in failed if "unreadable" in i.reason]
    return {
        "files_seen": len(files),
        "files_read": len(files) - len(skipped) - len(unreadable),
        "skipped": {"count": len(skipped), "by_reason": dict(Counter(i.reason for i in skipped)),
                    "files": [{"path": i.path, "reason": i.reason} for i in skipped]},
        "failed": {"count": len(failed), "by_reason": dict(Counter(_reason_kind(i.reason) for i in failed)),
                   "files": [{"path": i.path, "reason": i.reason} for i in failed]},
    }  # fmt: skip


def _reason_kind(reason: str) -> str:
    """A failure's reason without the file-specific detail after the first colon (for counting by reason)."""
    return reason.split(":", 1)[0]


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name
