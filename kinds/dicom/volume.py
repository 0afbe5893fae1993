"""3D volumes from DICOM: group slices into series, check their geometry, pick one per patient, resample.

Written here rather than with MONAI's `PydicomReader`, which orders slices by InstanceNumber and averages the
distance between them: a series numbered against its positions comes out upside down, and a missing slice is
silently spread over the others. Here slices (single-frame files of one Study/Series Instance UID, or the frames
of one enhanced multi-frame object by their per-frame Plane Position) are ordered by their distance along the
slice normal, and a series whose spacing has a gap, whose slices disagree on orientation, pixel spacing or size,
or that has too few slices is reported and not used. Resampling is MONAI's (`Orientation` to RAS, `Spacing`,
`ResizeWithPadOrCrop`) on a MetaTensor carrying the affine built from the DICOM geometry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import FileIssue, ImageHeader, PlaneGeometry
from clinfuse.kinds.dicom.pixels import to_unit_range
from clinfuse.kinds.dicom.scan import relative
from pydicom.pixels import apply_modality_lut

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_SAME_DIRECTION = 1e-3  # direction cosines that differ by less are the same orientation
_SAME_SIZE = 1e-3  # relative tolerance for pixel spacings


@dataclass(frozen=True)
class SeriesCandidate:
    """One patient's series that could become a volume: single-frame slices, or one multi-frame object."""

    patient_id: str
    files: tuple[ImageHeader, ...]

    @property
    def acquired(self) -> datetime:
        """The series' latest acquisition: a series still running at the index time is not before it."""
        return max(header.acquired for header in self.files)

    @property
    def slices(self) -> int:
        return sum(header.frames for header in self.files)

    @property
    def layout(self) -> str:
        return "multi_frame" if len(self.files) == 1 and self.files[0].frames > 1 else "single_frame"

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return self.acquired, str(self.files[0].path)


@dataclass(frozen=True)
class PreprocessedVolume:
    voxels: np.ndarray  # (X, Y, Z) float16 in [0, 1], RAS
    affine: list[list[float]]  # voxel index -> RAS millimetres
    slices: int
    layout: str
    transfer_syntax: str
    photometric: str


def group_series(headers: list[ImageHeader], min_slices: int) -> tuple[list[SeriesCandidate], list[tuple[Path, str]]]:
    """Series candidates, and (path, reason) for every image that cannot be one (too few slices)."""
    groups: dict[tuple[str, str, str], list[ImageHeader]] = defaultdict(list)
    candidates: list[SeriesCandidate] = []
    for header in headers:
        if header.frames > 1:
            candidates.append(SeriesCandidate(header.patient_id, (header,)))
        elif all(header.series):
            groups[(header.patient_id, *header.series)].append(header)
        else:
            candidates.append(SeriesCandidate(header.patient_id, (header,)))
    for (patient_id, _, _), files in groups.items():
        candidates.append(SeriesCandidate(patient_id, tuple(sorted(files, key=lambda h: str(h.path)))))
    kept, rejected = [], []
    for candidate in candidates:
        if candidate.slices >= min_slices:
            kept.append(candidate)
            continue
        what = (
            "single 2D image, not a series"
            if candidate.slices == 1
            else f"{candidate.layout.replace('_', '-')} series of {candidate.slices} slices"
        )
        reason = f"{what}: a volume needs at least min_slices ({min_slices})"
        rejected += [(header.path, reason) for header in candidate.files]
    return kept, rejected


def geometry_problem(candidate: SeriesCandidate, max_gap_ratio: float) -> str | None:
    """Why a series cannot be assembled into a volume (a missing slice, mixed orientations...), or None."""
    planes = [plane for header in candidate.files for plane in header.planes]
    if len(planes) != candidate.slices:
        return "no image position/orientation/pixel spacing for every slice: cannot place them in space"
    sizes = {(header.rows, header.columns) for header in candidate.files}
    if len(sizes) > 1:
        return f"slices of different sizes ({len(sizes)} sizes) in one series"
    first = planes[0]
    if any(not np.allclose(p.orientation, first.orientation, atol=_SAME_DIRECTION) for p in planes):
        return "mixed slice orientations in one series"
    if any(not np.allclose(p.spacing, first.spacing, rtol=_SAME_SIZE) for p in planes):
        return "mixed pixel spacings in one series"
    distances = np.sort([_distance_along_normal(p) for p in planes])
    steps = np.diff(distances)
    median = float(np.median(steps))
    if median <= 0 or float(steps.min()) < 1e-3 * max(median, 1.0):
        return "two or more slices at the same position (duplicates or several stacks in one series)"
    largest = float(steps.max())
    if largest > max_gap_ratio * median:
        missing = round(largest / median) - 1
        return (
            f"missing slice(s): a {largest:.1f} mm gap (about {missing} slice(s)) where slices are "
            f"{median:.1f} mm apart (max_gap_ratio: {max_gap_ratio:g})"
        )
    return None


def assemble_volume(files: Sequence[ImageHeader], modality: DicomModality) -> PreprocessedVolume:
    """Decode a series' files (or one multi-frame object), order the slices along the normal, window them to
    [0, 1] and resample onto the configured RAS voxel grid. Each frame's plane comes from the header pass."""
    decoded = [(header.planes, ds, ds.pixel_array) for header, ds in ((h, pydicom.dcmread(h.path)) for h in files)]
    window = modality.window or _series_window([(ds, stored) for _, ds, stored in decoded])
    frames: list[tuple[float, np.ndarray, PlaneGeometry]] = []
    for planes, ds, stored in decoded:
        unit = to_unit_range(ds, stored, window, modality.window_index)
        stack = unit if unit.ndim == 3 else unit[np.newaxis]
        # strict: pixel data holding another number of frames than the header claims fails this series
        frames += [(_distance_along_normal(plane), frame, plane) for frame, plane in zip(stack, planes, strict=True)]
    frames.sort(key=lambda item: item[0])
    voxels, affine = _resample(np.stack([frame for _, frame, _ in frames]), [plane for _, _, plane in frames], modality)
    first = decoded[0][1]
    return PreprocessedVolume(
        voxels=voxels.astype(np.float16),
        affine=affine,
        slices=len(frames),
        layout="multi_frame" if len(files) == 1 and len(frames) > 1 else "single_frame",
        transfer_syntax=first.file_meta.TransferSyntaxUID.name,
        photometric=str(first.get("PhotometricInterpretation", "")),
    )


def _series_window(decoded: list[tuple[pydicom.Dataset, np.ndarray]]) -> tuple[float, float] | None:
    """A series of single-frame files without any VOI information gets one percentile window over all its
    slices: one per slice (what `to_unit_range` does for a lone image) would make contrast jump between slices."""
    if len(decoded) < 2 or any("VOILUTSequence" in ds or "WindowCenter" in ds for ds, _ in decoded):
        return None
    values = np.concatenate([np.ravel(apply_modality_lut(stored, ds)) for ds, stored in decoded])
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low + high) / 2, max(high - low, 1.0)


def dicom_affine(planes: list[PlaneGeometry]) -> np.ndarray:
    """Voxel (column i, row j, slice k) -> LPS millimetres, for slices sorted along the normal (PS3.3 C.7.6.2.1.1)."""
    first, last = planes[0], planes[-1]
    row_cosine, column_cosine = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    row_spacing, column_spacing = first.spacing
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * column_spacing  # along a row: the column index grows
    affine[:3, 1] = column_cosine * row_spacing  # down a column: the row index grows
    if len(planes) > 1:
        affine[:3, 2] = (np.array(last.position) - np.array(first.position)) / (len(planes) - 1)
    else:
        affine[:3, 2] = np.cross(row_cosine, column_cosine)
    affine[:3, 3] = first.position
    return affine


def _resample(stack: np.ndarray, planes: list[PlaneGeometry], modality: DicomModality) -> tuple[np.ndarray, list]:
    """(K, rows, cols) in [0, 1] -> (X, Y, Z) on the configured grid, and its voxel-to-RAS affine."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, ResizeWithPadOrCrop, Spacing

    volume = torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 1, 0))[np.newaxis].astype(np.float32))
    tensor = MetaTensor(volume, affine=torch.from_numpy(_LPS_TO_RAS @ dicom_affine(planes)))
    tensor = Orientation(axcodes="RAS", labels=_RAS_LABELS)(tensor)
    tensor = Spacing(pixdim=modality.voxel_spacing, mode="bilinear", padding_mode="zeros")(tensor)
    tensor = ResizeWithPadOrCrop(spatial_size=modality.volume_shape)(tensor)
    voxels = np.clip(tensor.array[0], 0.0, 1.0)
    return voxels, np.asarray(tensor.affine, dtype=np.float64).round(6).tolist()


def _distance_along_normal(plane: PlaneGeometry) -> float:
    normal = np.cross(plane.orientation[:3], plane.orientation[3:])
    return float(np.dot(normal, plane.position))


def issues_for(candidate: SeriesCandidate, root: Path, outcome: str, reason: str) -> list[FileIssue]:
    """One issue per file of a series that was not used."""
    return [FileIssue(relative(h.path, root), outcome, reason, candidate.patient_id) for h in candidate.files]
