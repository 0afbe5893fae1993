"""First DICOM pass: read headers, classify files, link them to patients, pick one image per patient.

Selection rule (2D): per patient, the image acquired last strictly before the index time (acquisition
date/time, else content, series, then study date/time). Images after the index time never count. 3D series are
grouped and chosen in `volume.py` from the same headers. Nothing identifying leaves this module: callers get the
patient id (to be pseudonymised), the acquisition time (used for selection only), the file path, and the
geometry a volume needs (positions, orientation, spacing, UIDs).

Every value read from a header is guarded: any exception while classifying one file (a malformed number, a
nested private sequence that cannot be parsed) becomes that file's `FileIssue`, so no file can stop a batch.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Protocol

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
_UID_FORM = re.compile(r"[0-9.]{1,64}")
# Attributes that size the decoded pixels: (keyword, default when absent or None for required, largest accepted)
_SIZE_ATTRIBUTES = (
    ("Rows", None, 65535),
    ("Columns", None, 65535),
    ("NumberOfFrames", 1, 1_000_000),
    ("SamplesPerPixel", 1, 4),
    ("BitsAllocated", None, 64),
)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame variants .7.1 to .7.4
DEFAULT_MAX_DECODED_MIB: float = DicomModality.model_fields["max_decoded_mib"].default


@dataclass(frozen=True)
class PlaneGeometry:
    """Where one frame lies in the patient (DICOM LPS millimetres): for assembling and resampling volumes."""

    position: tuple[float, float, float]  # ImagePositionPatient: centre of the first transmitted pixel
    orientation: tuple[float, ...]  # ImageOrientationPatient: row then column direction cosines
    spacing: tuple[float, float]  # PixelSpacing: between rows, between columns


@dataclass(frozen=True)
class ImageHeader:
    """A readable image file: whom it belongs to, when it was acquired and (when the header says) where it lies."""

    path: Path
    patient_id: str
    acquired: datetime
    frames: int = 1
    rows: int = 0
    columns: int = 0
    series: tuple[str, str] = ("", "")  # (StudyInstanceUID, SeriesInstanceUID)
    planes: tuple[PlaneGeometry, ...] = ()  # one per frame in stored order; empty when the header lacks geometry

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return self.acquired, str(self.path)


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


@dataclass(frozen=True)
class HeaderRules:
    """What the header pass accepts, from the modality's config (defaults: the config's defaults)."""

    max_decoded_mib: float = DEFAULT_MAX_DECODED_MIB
    allow_burned_in: bool = False
    keep_unmarked_secondary_capture: bool = False

    @classmethod
    def of(cls, modality: DicomModality) -> HeaderRules:
        return cls(modality.max_decoded_mib, modality.allow_burned_in, modality.unmarked_secondary_capture == "keep")


def read_header(
    path: Path, root: Path, patient_from_manifest: str | None, rules: HeaderRules | None = None
) -> ImageHeader | FileIssue:
    """Classify one file: an image header to consider, or an issue that explains why not. Never raises.

    An image whose header claims more than `max_decoded_mib` decoded is failed here, before pass 2 decodes
    anything: a few bytes of RLE can claim gigabytes of pixels.
    """
    try:
        relative = str(path.relative_to(root))
    except ValueError:
        relative = path.name
    try:
        return _read_header(path, relative, root, patient_from_manifest, rules or HeaderRules())
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a header value no check foresaw (a decoder's panic included): this file only
        return FileIssue(relative, "failed", f"unreadable header: {describe_error(exc)}")


def _read_header(
    path: Path, relative: str, root: Path, patient_from_manifest: str | None, rules: HeaderRules
) -> ImageHeader | FileIssue:
    if not path.resolve().is_relative_to(_resolved(root)):  # never read what a symlink leads to outside the folder
        return FileIssue(relative, "skipped", "symlink to a file outside the imaging folder")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError:
        return FileIssue(relative, "skipped", "not a DICOM file")
    except Exception as exc:  # any parse error: unreadable file, recorded and skipped over
        return FileIssue(relative, "failed", f"unreadable DICOM: {describe_error(exc)}")
    truncated = any("End of file reached" in str(w.message) for w in caught)
    is_image_class = "Rows" in ds and "Columns" in ds
    patient_id = patient_from_manifest if patient_from_manifest is not None else _text(ds, "PatientID")
    owner = patient_id.strip() or None
    if "PixelData" not in ds:
        if truncated or is_image_class:
            return FileIssue(relative, "failed", "truncated file: pixel data missing or incomplete", owner)
        if "Image Storage" in _sop_class_name(ds):
            return FileIssue(relative, "failed", "image object without pixel data (truncated or damaged)", owner)
        return FileIssue(relative, "skipped", f"not an image: {_sop_class_name(ds)}")
    claimed = _claimed_size(ds)
    if isinstance(claimed, str):
        return FileIssue(relative, "failed", f"image header has no valid {claimed}", owner)
    if claimed.decoded_bytes > rules.max_decoded_mib * 2**20:
        return FileIssue(
            relative,
            "failed",
            f"header claims {claimed} = {claimed.decoded_bytes / 2**20:,.0f} MiB decoded, "
            f"over the limit (max_decoded_mib: {rules.max_decoded_mib:g})",
            owner,
        )
    if truncated or _native_length(ds, claimed) == "short":
        return FileIssue(relative, "failed", "truncated file: pixel data shorter than Rows x Columns", owner)
    if _native_length(ds, claimed) == "long":
        return FileIssue(
            relative, "failed", "pixel data far longer than Rows x Columns x frames: the header's size is wrong", owner
        )
    if burned_in := _burned_in_reason(ds, rules):
        return FileIssue(relative, "skipped", burned_in, owner)
    if not patient_id.strip():
        return FileIssue(relative, "skipped", "no PatientID tag (link by manifest instead)")
    acquired = _acquisition_time(ds)
    if acquired is None:
        return FileIssue(relative, "skipped", "no acquisition/content/series/study date: cannot place in time")
    return ImageHeader(
        path=path,
        patient_id=patient_id.strip(),
        acquired=acquired,
        frames=claimed.frames,
        rows=claimed.rows,
        columns=claimed.columns,
        series=(_text(ds, "StudyInstanceUID"), _text(ds, "SeriesInstanceUID")),
        planes=frame_planes(ds, claimed.frames),
    )


class Acquisition(Protocol):
    """Something acquired for a patient at a time: an image, or a series."""

    patient_id: str

    @property
    def sort_key(self) -> tuple[datetime, str]: ...  # (acquired, path): the path breaks ties reproducibly


@cache
def _resolved(root: Path) -> Path:
    """The imaging folder resolved once, not once per file of the header pass."""
    return root.resolve()


def select_latest[A: Acquisition](
    items: Iterable[A], index_times: dict[str, pd.Timestamp]
) -> tuple[dict[str, A], dict[str, int]]:
    """Each cohort patient's latest item strictly before the index time; counts of what was set aside and why."""
    chosen: dict[str, A] = {}
    counts = {"not_in_cohort": 0, "after_index_time": 0, "older_than_chosen": 0}
    for item in items:
        index_time = index_times.get(item.patient_id)
        if index_time is None:
            counts["not_in_cohort"] += 1
        elif item.sort_key[0] >= index_time:
            counts["after_index_time"] += 1
        else:
            current = chosen.get(item.patient_id)
            if current is not None:
                counts["older_than_chosen"] += 1
            if current is None or item.sort_key > current.sort_key:
                chosen[item.patient_id] = item
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


def frame_planes(ds: pydicom.Dataset, frames: int) -> tuple[PlaneGeometry, ...]:
    """Each frame's plane, in stored order: a single-frame image's own attributes, or an enhanced multi-frame
    object's per-frame Plane Position with the shared (or per-frame) orientation and pixel measures. Empty when
    any frame lacks them: such an object cannot be placed in space."""
    if frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        plane = _plane(ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing"))
        return (plane,) if plane else ()
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    if len(per_frame) != frames:
        return ()
    planes = []
    for item in per_frame:
        plane = _plane(
            _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient"),
            _functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"),
            _functional(item, shared, "PixelMeasuresSequence", "PixelSpacing"),
        )
        if plane is None:
            return ()
        planes.append(plane)
    return tuple(planes)


def _functional(item: pydicom.Dataset, shared: pydicom.Dataset | None, sequence: str, keyword: str) -> object:
    """A functional group attribute, per frame first, else shared (DICOM PS3.3 C.7.6.16)."""
    for group in (item, shared):
        if group is not None and (macro := group.get(sequence)):
            value = macro[0].get(keyword)
            if value is not None:
                return value
    return None


def _plane(position: object, orientation: object, spacing: object) -> PlaneGeometry | None:
    try:
        pos = tuple(float(v) for v in position)  # type: ignore[union-attr]
        ori = tuple(float(v) for v in orientation)  # type: ignore[union-attr]
        spc = tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    finite = all(math.isfinite(v) for v in (*pos, *ori, *spc))
    if len(pos) != 3 or len(ori) != 6 or len(spc) != 2 or not finite or min(spc) <= 0:
        return None
    return PlaneGeometry(pos, ori, spc)  # type: ignore[arg-type]


def _burned_in_reason(ds: pydicom.Dataset, rules: HeaderRules) -> str | None:
    """Why an image is excluded for text printed into its pixels, or None. Names in pixels are PHI that no
    header de-identification removes."""
    marked = _text(ds, "BurnedInAnnotation").upper()
    if marked == "YES" and not rules.allow_burned_in:
        return "BurnedInAnnotation = YES: pixels may carry PHI (allow_burned_in: true keeps them once scrubbed)"
    sop_class = _text(ds, "SOPClassUID") or str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if not marked and sop_class.startswith(_SECONDARY_CAPTURE) and not rules.keep_unmarked_secondary_capture:
        return (
            "secondary capture without BurnedInAnnotation: may show printed PHI "
            "(unmarked_secondary_capture: keep accepts them)"
        )
    return None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value).strip() if value is not None else ""


def _acquisition_time(ds: pydicom.Dataset) -> datetime | None:
    if value := _text(ds, "AcquisitionDateTime"):
        parsed = _parse(value[:8], value[8:14])
        if parsed:
            return parsed
    for date_keyword, time_keyword in _DATE_TIME_PAIRS:
        date = _text(ds, date_keyword)
        if date:
            parsed = _parse(date, _text(ds, time_keyword))
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


def _claimed_size(ds: pydicom.Dataset) -> _ClaimedSize | str:
    """Read from the header alone; the name of the first attribute that is missing, malformed or out of range
    otherwise (a damaged header must fail before anything is allocated)."""
    values: dict[str, int] = {}
    for keyword, default, most in _SIZE_ATTRIBUTES:
        try:
            value = ds.get(keyword, default) if default is not None else ds[keyword].value
            number = int(value if value not in (None, "") else default or 0)
        except Exception:  # a missing element, a malformed number, a sequence that cannot be parsed
            return keyword
        if not 0 < number <= most:
            return keyword
        values[keyword] = number
    return _ClaimedSize(
        rows=values["Rows"],
        columns=values["Columns"],
        frames=values["NumberOfFrames"],
        samples=values["SamplesPerPixel"],
        bytes_per_sample=-(-values["BitsAllocated"] // 8),
    )


def _native_length(ds: pydicom.Dataset, claimed: _ClaimedSize) -> str:
    """ "short", "long" or "ok": uncompressed pixel data against the header's dimensions. Data far longer than
    claimed means a damaged dimension (decoding would read the first bytes as a smaller image)."""
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in _NATIVE_SYNTAXES:
        return "ok"  # encapsulated: a cut stream shows as a missing delimiter, handled above
    samples = 2 if _text(ds, "PhotometricInterpretation") == "YBR_FULL_422" else claimed.samples  # 4:2:2 subsampled
    bits = int(ds.BitsAllocated)
    expected = -(-claimed.rows * claimed.columns * claimed.frames * samples * bits // 8)  # 1-bit: 8 pixels a byte
    length = len(ds.PixelData)
    if length < expected:
        return "short"
    return "long" if length > expected + expected // 4 + 2 else "ok"


def describe_error(exc: BaseException) -> str:
    """An exception as one short line for a report: quoted values (which may repeat header text, PHI) elided."""
    message = re.sub(r"(['\"]).*?\1", r"\1...\1", " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {message[:120]}"


def _sop_class_name(ds: pydicom.Dataset) -> str:
    """The SOP class's name; a malformed UID (a damaged length can pull header text into it) is not repeated."""
    sop_class = _text(ds, "SOPClassUID") or str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    if not _UID_FORM.fullmatch(sop_class):
        return "unknown SOP class"
    return UID(sop_class).name
