"""First DICOM pass: read headers, classify files, link them to patients, pick one image per patient.

Selection rule: per patient, the image acquired last strictly before the index time (acquisition date/time,
else content, series, then study date/time). Images after the index time never count. Nothing identifying
leaves this module: callers get the patient id (to be pseudonymised), the acquisition time (used for selection
only) and the file path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pydicom
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.platform.errors import ClinFuseError
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

_DATE_TIME_PAIRS = (
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("SeriesDate", "SeriesTime"),
    ("StudyDate", "StudyTime"),
)
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
DEFAULT_MAX_DECODED_MIB: float = DicomModality.model_fields["max_decoded_mib"].default


@dataclass(frozen=True)
class ImageHeader:
    """A readable image file: whom it belongs to and when it was acquired."""

    path: Path
    patient_id: str
    acquired: datetime


@dataclass(frozen=True)
class FileIssue:
    """A file that was skipped (not an image, undated) or failed (unreadable, truncated)."""

    path: str  # relative to the modality's folder
    outcome: str  # "skipped" | "failed"
    reason: str
    patient_id: str | None = None  # when the header could be read far enough to say whose file it is


def list_files(root: Path) -> list[Path]:
    """All regular files under `root`, sorted, hidden files excluded."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_header(
    path: Path, root: Path, patient_from_manifest: str | None, max_decoded_mib: float = DEFAULT_MAX_DECODED_MIB
) -> ImageHeader | FileIssue:
    """Classify one file: an image header to consider, or an issue that explains why not.

    An image whose header claims more than `max_decoded_mib` decoded is failed here, before pass 2 decodes
    anything: a few bytes of RLE can claim gigabytes of pixels.
    """
    relative = str(path.relative_to(root))
    if not path.resolve().is_relative_to(root.resolve()):  # never read what a symlink leads to outside the folder
        return FileIssue(relative, "skipped", "symlink to a file outside the imaging folder")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError:
        return FileIssue(relative, "skipped", "not a DICOM file")
    except Exception as exc:  # any parse error: unreadable file, recorded and skipped over
        return FileIssue(relative, "failed", f"unreadable DICOM: {type(exc).__name__}: {str(exc)[:120]}")
    truncated = any("End of file reached" in str(w.message) for w in caught)
    is_image_class = "Rows" in ds and "Columns" in ds
    patient_id = patient_from_manifest if patient_from_manifest is not None else str(ds.get("PatientID", ""))
    owner = patient_id.strip() or None
    if "PixelData" not in ds:
        if truncated or is_image_class:
            return FileIssue(relative, "failed", "truncated file: pixel data missing or incomplete", owner)
        return FileIssue(relative, "skipped", f"not an image: {_sop_class_name(ds)}")
    claimed = _claimed_size(ds)
    if claimed is None:
        return FileIssue(relative, "failed", "image header lacks valid Rows, Columns or BitsAllocated", owner)
    if claimed.decoded_bytes > max_decoded_mib * 2**20:
        return FileIssue(
            relative,
            "failed",
            f"header claims {claimed} = {claimed.decoded_bytes / 2**20:,.0f} MiB decoded, "
            f"over the limit (max_decoded_mib: {max_decoded_mib:g})",
            owner,
        )
    if truncated or not _native_length_ok(ds):
        return FileIssue(relative, "failed", "truncated file: pixel data shorter than Rows x Columns", owner)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return FileIssue(relative, "skipped", "multi-frame image: the 2D image path takes single frames")
    if not patient_id.strip():
        return FileIssue(relative, "skipped", "no PatientID tag (link by manifest instead)")
    acquired = _acquisition_time(ds)
    if acquired is None:
        return FileIssue(relative, "skipped", "no acquisition/content/series/study date: cannot place in time")
    return ImageHeader(path=path, patient_id=patient_id.strip(), acquired=acquired)


def select_images(
    headers: list[ImageHeader], index_times: dict[str, pd.Timestamp]
) -> tuple[dict[str, ImageHeader], dict[str, int]]:
    """Pick each cohort patient's latest image before the index time; count what was set aside and why."""
    chosen: dict[str, ImageHeader] = {}
    counts = {"not_in_cohort": 0, "after_index_time": 0, "older_than_chosen": 0}
    for header in headers:
        index_time = index_times.get(header.patient_id)
        if index_time is None:
            counts["not_in_cohort"] += 1
            continue
        if header.acquired >= index_time:
            counts["after_index_time"] += 1
            continue
        current = chosen.get(header.patient_id)
        if current is None or (header.acquired, str(header.path)) > (current.acquired, str(current.path)):
            if current is not None:
                counts["older_than_chosen"] += 1
            chosen[header.patient_id] = header
        else:
            counts["older_than_chosen"] += 1
    return chosen, counts


def read_manifest(manifest: Path, root: Path) -> dict[Path, str]:
    """Manifest CSV (patient_id, path): paths relative to the manifest's folder map to patient ids.

    Every path must lead (after symlinks) to a file inside the imaging folder `root`; the keys are those files
    under `root`. A row outside it is a mistake in the manifest, not a damaged image, so the whole manifest is
    refused with one error before any file is opened: counting it per row would let a wrong base folder (every
    row outside) pass as an ingest without images, and would honour the rest of a hostile manifest.
    """
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ClinFuseError(
            f"manifest {manifest.name} is not a readable CSV ({type(exc).__name__})",
            "write it as UTF-8 CSV with a header row patient_id,path",
        ) from None
    missing = {"patient_id", "path"} - set(table.columns)
    if missing:
        raise ClinFuseError(f"manifest {manifest.name} lacks column(s) {sorted(missing)}", "use patient_id, path")
    inside = root.resolve()
    files: dict[Path, str] = {}
    empty, outside = [], []
    for line, (pid, listed) in enumerate(zip(table["patient_id"], table["path"], strict=True), start=2):
        if not pid.strip() or not listed.strip():
            empty.append(line)
            continue
        target = (manifest.parent / listed.strip()).resolve()
        if not target.is_relative_to(inside):
            outside.append((line, listed))
            continue
        files[root / target.relative_to(inside)] = pid.strip()
    if empty:
        raise ClinFuseError(
            f"manifest {manifest.name} has {len(empty)} row(s) with an empty patient_id or path (line {empty[0]})",
            "fill or drop those rows",
        )
    if outside:
        line, listed = outside[0]
        raise ClinFuseError(
            f"manifest {manifest.name} has {len(outside)} path(s) outside the imaging folder {root} "
            f"(line {line}: {listed[:80]!r})",
            "list only files inside that folder, as paths relative to the manifest's folder (symlinks included)",
        )
    return files


def _acquisition_time(ds: pydicom.Dataset) -> datetime | None:
    if value := str(ds.get("AcquisitionDateTime", "") or ""):
        parsed = _parse(value[:8], value[8:14])
        if parsed:
            return parsed
    for date_keyword, time_keyword in _DATE_TIME_PAIRS:
        date = str(ds.get(date_keyword, "") or "")
        if date:
            parsed = _parse(date, str(ds.get(time_keyword, "") or ""))
            if parsed:
                return parsed
    return None


def _parse(date: str, time: str) -> datetime | None:
    digits = "".join(ch for ch in time.split(".")[0] if ch.isdigit()).ljust(6, "0")[:6]
    try:
        return datetime.strptime(date.strip() + digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None


@dataclass(frozen=True)
class _ClaimedSize:
    """The decoded size an image header claims: what decoding it would allocate."""

    rows: int
    columns: int
    frames: int
    samples: int
    bytes_per_sample: int

    @property
    def decoded_bytes(self) -> int:
        return self.rows * self.columns * self.frames * self.samples * self.bytes_per_sample

    def __str__(self) -> str:
        return (
            f"{self.rows} x {self.columns} pixels x {self.frames} frame(s) x {self.samples} sample(s) "
            f"x {self.bytes_per_sample} byte(s)"
        )


def _claimed_size(ds: pydicom.Dataset) -> _ClaimedSize | None:
    """Read from the header alone; None when a dimension is missing, malformed or not positive."""
    try:
        size = _ClaimedSize(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            samples=int(ds.get("SamplesPerPixel", 1) or 1),
            bytes_per_sample=max(1, -(-int(ds.BitsAllocated) // 8)),
        )
    except (AttributeError, TypeError, ValueError):
        return None
    return size if min(size.rows, size.columns, size.frames, size.samples, int(ds.BitsAllocated)) > 0 else None


def _native_length_ok(ds: pydicom.Dataset) -> bool:
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in _NATIVE_SYNTAXES:
        return True  # encapsulated: a cut stream shows as a missing delimiter, handled above
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * (int(ds.BitsAllocated) // 8)
    return len(ds.PixelData) >= expected


def _sop_class_name(ds: pydicom.Dataset) -> str:
    sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    return UID(str(sop_class)).name if sop_class else "unknown SOP class"
