"""Synthetic chest CT series with a planted lung nodule, written the way a PACS export of CT looks.

Each series is a stack of axial 128 x 128 slices (2.5 mm pixels, 5 mm apart) of a simple chest phantom in
Hounsfield units: air, a body with a rim of fat, two lungs, a vertebral column and noise. The planted finding is a
sphere in one lung whose attenuation rises with the patient's latent severity. What a volume reader must handle:
InstanceNumber running against the slice position in some series (only the position along the slice normal orders
a volume), one Enhanced CT object per series for some patients with its frames stored out of order (only the
per-frame positions order them), broken series (a slice missing, a slice of another orientation), RLE and
uncompressed files, signed and unsigned pixels with 12 or 16 bits stored, priors with a fainter nodule, and
follow-ups after the index time with a stronger one: a leakage trap that ingest must never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from clinfuse.platform.demo.dicom_export import PatientHeader, derived_uid, fake_header, set_patient_and_study
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless
from scipy.special import expit

ROWS = COLS = 128
PIXEL_SPACING_MM = 2.5
SLICE_SPACING_MM = 5.0  # also the slice thickness: contiguous slices
SLICES = (24, 48)  # fewest and most slices of a series
FIELD_ORIGIN_MM = -160.0  # x and y (LPS) of the first pixel's centre, before a per-series jitter
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # the odd slice out of a "mixed_orientation" series
LUNG_WINDOW = (-600.0, 1500.0)  # (center, width) in HU
RESCALE_INTERCEPT = -1024.0
HU_AIR, HU_FAT, HU_SOFT_TISSUE, HU_LUNG, HU_BONE = -1000.0, -100.0, 40.0, -850.0, 400.0
NOISE_HU = 15.0
NODULE_RADIUS_MM = (12.0, 25.0)
NODULE_EDGE_MM = 1.5  # width of the nodule's smooth border
INDEX_HOURS_BEFORE = (0.5, 72.0)
PRIOR_RATE, PRIOR_DAYS_BEFORE, PRIOR_AMPLITUDE_SHARE = 0.15, (200.0, 1000.0), 0.3
FOLLOW_UP_RATE, FOLLOW_UP_DAYS_AFTER, FOLLOW_UP_EXTRA_AMPLITUDE = 0.08, (1.0, 5.0), 1.0
ENHANCED_RATE = 0.15  # index series written as one Enhanced CT object
BROKEN_RATE = 0.04  # index series with a missing slice or a slice of another orientation
REVERSED_INSTANCE_RATE = 0.30  # InstanceNumber runs against z
RLE_RATE = 0.25
SIGNED_RATE = 0.30  # int16 with 16 bits stored; otherwise uint16 with 12 bits stored
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
_STACK_ID = 0x00209056
_IN_STACK_POSITION = 0x00209057
_FRAME_CONTENT_SEQUENCE = 0x00209111
# What differs between the files of a single-frame series; everything else is encoded once per series.
_PER_SLICE = tuple(
    Tag(keyword)
    for keyword in ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient",
                    "SliceLocation", "PixelData")
)  # fmt: skip

Layout = Literal["single_frame", "enhanced_multiframe"]
Broken = Literal["missing_slice", "mixed_orientation"]


class CtSubject(Protocol):
    patient_id: str
    index_time: datetime
    severity: float
    sex: str
    age: int


def nodule_hu(amplitude: float) -> float:
    """The nodule's core attenuation: lung at amplitude 0, rising linearly to water (0 HU) at amplitude 2."""
    return HU_LUNG + min(1.0, amplitude / 2.0) * -HU_LUNG


@dataclass(frozen=True)
class _Nodule:
    """Where a patient's nodule lies, relative to its lung, so that every series of the patient shows it there."""

    side: int  # index into the lungs: 0 the patient's right (-x), 1 the left (+x)
    offset: tuple[float, float, float]  # within the unit ball; scaled by the lung's semi-axes less the radius
    radius_mm: float


@dataclass(frozen=True)
class _Plan:
    subject: CtSubject
    header: PatientHeader
    nodule: _Nodule
    acquired: datetime
    amplitude: float
    role: Literal["index", "prior", "follow_up"]
    layout: Layout
    broken: Broken | None


@dataclass(frozen=True)
class _Pixels:
    """How a series stores its pixels."""

    signed: bool
    rle: bool

    @property
    def bits_stored(self) -> int:
        return 16 if self.signed else 12

    def encode(self, hu: np.ndarray) -> np.ndarray:
        low, high = (-32768, 32767) if self.signed else (0, 2**12 - 1)
        return np.clip(np.rint(hu - RESCALE_INTERCEPT), low, high).astype(np.int16 if self.signed else np.uint16)


def write_ct(subjects: list[CtSubject], root: Path, rng: np.random.Generator) -> tuple[dict[str, dict], dict]:
    """Write every subject's CT series under `root` (ct/study_NNNNN/series_NNN/IM####.dcm, folders numbered
    without patient identity); returns the truth about each patient's index series and the planted facts."""
    root.mkdir(parents=True, exist_ok=True)
    plans = [plan for subject in subjects for plan in _plan_patient(subject, rng)]
    folder_numbers = rng.permutation(len(plans)) + 1
    truth: dict[str, dict] = {}
    counts = {"series": 0, "files": 0, "single_frame": 0, "enhanced_multiframe": 0, "missing_slice": 0,
              "mixed_orientation": 0, "reversed_instance_numbers": 0, "rle": 0, "signed": 0, "prior": 0,
              "follow_up": 0}  # fmt: skip
    for number, plan in zip(folder_numbers, plans, strict=True):
        series = _write_series(plan, root / f"study_{number:05d}", rng)
        counts["series"] += 1
        counts["files"] += series["files"]
        counts[plan.layout] += 1
        counts["reversed_instance_numbers"] += series["instance_numbers_reversed"]
        counts["rle"] += series["transfer_syntax"] == str(RLELossless)
        counts["signed"] += series["signed"]
        if plan.broken:
            counts[plan.broken] += 1
        if plan.role != "index":
            counts[plan.role] += 1
            truth[plan.subject.patient_id][plan.role] = True
            continue
        truth[plan.subject.patient_id] = {
            "series_instance_uid": series["series_instance_uid"], "layout": plan.layout, "slices": series["slices"],
            "finding": series["finding"], "broken": plan.broken, "prior": False, "follow_up": False,
            "acquired": plan.acquired.isoformat(sep=" "), "folder": series["folder"],
            "instance_numbers_reversed": series["instance_numbers_reversed"],
            "transfer_syntax": series["transfer_syntax"],
        }  # fmt: skip
    planted = {
        "finding": "sphere in one lung, smooth edge; core HU = "
        f"{HU_LUNG:g} + min(1, amplitude / 2) * {-HU_LUNG:g}; amplitude = max(0, severity)",
        "radius_mm": list(NODULE_RADIUS_MM), "prior_amplitude_share": PRIOR_AMPLITUDE_SHARE,
        "follow_up_extra_amplitude": FOLLOW_UP_EXTRA_AMPLITUDE,
        "rows": ROWS, "columns": COLS, "pixel_spacing_mm": PIXEL_SPACING_MM, "slice_spacing_mm": SLICE_SPACING_MM,
        "slices": list(SLICES), "image_orientation_patient": AXIAL, "window": list(LUNG_WINDOW),
        "rescale_intercept": RESCALE_INTERCEPT, "noise_hu": NOISE_HU,
        "hu": {"air": HU_AIR, "fat": HU_FAT, "soft_tissue": HU_SOFT_TISSUE, "lung": HU_LUNG, "bone": HU_BONE},
        **counts,
    }  # fmt: skip
    return truth, planted


def _plan_patient(subject: CtSubject, rng: np.random.Generator) -> list[_Plan]:
    """The index series (0.5-72 h before the index time), maybe a prior and a follow-up after the index time."""
    header = fake_header(subject.patient_id, subject.sex, subject.index_time.year - subject.age, rng)
    amplitude = max(0.0, subject.severity)
    direction = rng.normal(size=3)
    offset = direction / np.linalg.norm(direction) * rng.random() ** (1 / 3)  # uniform in the unit ball
    nodule = _Nodule(int(rng.integers(0, 2)), tuple(float(v) for v in offset), float(rng.uniform(*NODULE_RADIUS_MM)))
    broken: Broken | None = None
    if rng.random() < BROKEN_RATE:
        broken = "missing_slice" if rng.random() < 0.5 else "mixed_orientation"
    layout: Layout = "enhanced_multiframe" if rng.random() < ENHANCED_RATE and broken is None else "single_frame"
    index = subject.index_time - timedelta(hours=float(rng.uniform(*INDEX_HOURS_BEFORE)))
    plans = [_Plan(subject, header, nodule, index.replace(microsecond=0), amplitude, "index", layout, broken)]
    if rng.random() < PRIOR_RATE:
        prior = (subject.index_time - timedelta(days=float(rng.uniform(*PRIOR_DAYS_BEFORE)))).replace(microsecond=0)
        plans.append(_Plan(subject, header, nodule, prior, PRIOR_AMPLITUDE_SHARE * amplitude, "prior",
                           "single_frame", None))  # fmt: skip
    if rng.random() < FOLLOW_UP_RATE:  # after the index time: must never be used (leakage trap)
        follow_up = subject.index_time + timedelta(days=float(rng.uniform(*FOLLOW_UP_DAYS_AFTER)))
        follow_up = follow_up.replace(microsecond=0)
        plans.append(_Plan(subject, header, nodule, follow_up, amplitude + FOLLOW_UP_EXTRA_AMPLITUDE, "follow_up",
                           "single_frame", None))  # fmt: skip
    return plans


def render_chest(slices: int, origin: tuple[float, float, float], rng: np.random.Generator,
                 nodule: _Nodule | None = None, amplitude: float = 0.0) -> tuple[np.ndarray, dict | None]:  # fmt: skip
    """A (slices, ROWS, COLS) HU volume, slices ascending in z, for an axial grid whose first voxel centre is
    `origin` (LPS mm); with a nodule and a positive amplitude, the finding's centre, radius and amplitude."""
    x = origin[0] + PIXEL_SPACING_MM * np.arange(COLS, dtype=np.float32)  # columns run along +x (row direction)
    y = origin[1] + PIXEL_SPACING_MM * np.arange(ROWS, dtype=np.float32)[:, None]  # rows along +y (posterior)
    z = origin[2] + SLICE_SPACING_MM * np.arange(slices, dtype=np.float32)
    jitter = rng.normal(size=7).tolist()  # Python floats keep the arithmetic in float32
    cx, cy = 3.0 * jitter[0], 3.0 * jitter[1]
    bx, by = 150.0 + 4.0 * jitter[2], 108.0 + 4.0 * jitter[3]
    body = _soft_ellipse(x, y, cx, cy, bx, by, 0.01)
    lean = _soft_ellipse(x, y, cx, cy, bx - 12.0, by - 12.0, 0.01)  # inside a 12 mm rim of subcutaneous fat
    spine = _soft_ellipse(x, y, cx, cy + 72.0, 16.0, 16.0, 0.06)
    plane = HU_AIR + body * (HU_FAT - HU_AIR) + lean * (HU_SOFT_TISSUE - HU_FAT) + spine * (HU_BONE - HU_SOFT_TISSUE)

    axes = (48.0 + 2.0 * jitter[4], 70.0 + 3.0 * jitter[5], 0.42 * SLICE_SPACING_MM * (slices - 1))
    lung_z = origin[2] + SLICE_SPACING_MM * (slices - 1) / 2.0 + 3.0 * jitter[6]
    centres = [(cx + side * 68.0, cy - 8.0, lung_z) for side in (-1.0, 1.0)]
    lungs = np.zeros((slices, ROWS, COLS), dtype=np.float32)
    for centre in centres:
        in_plane = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
        along = ((z - centre[2]) / axes[2]) ** 2
        distance = np.sqrt(in_plane[None] + along[:, None, None])
        lungs = np.maximum(lungs, expit((1.0 - distance) / 0.03))
    volume = plane[None] + lungs * (HU_LUNG - HU_SOFT_TISSUE)

    finding = None
    if nodule is not None and amplitude > 0:
        radius = nodule.radius_mm
        lung = zip(centres[nodule.side], nodule.offset, axes, strict=True)
        centre = [c + u * max(a - radius - 5.0, 0.0) for c, u, a in lung]
        reach = radius + 4 * NODULE_EDGE_MM
        near_z = np.flatnonzero(np.abs(z - centre[2]) <= reach)
        near_y = np.flatnonzero(np.abs(y[:, 0] - centre[1]) <= reach)
        near_x = np.flatnonzero(np.abs(x - centre[0]) <= reach)
        box = np.ix_(near_z, near_y, near_x)
        distance = np.sqrt((z[near_z, None, None] - centre[2]) ** 2 + (y[near_y, 0][None, :, None] - centre[1]) ** 2
                           + (x[near_x][None, None, :] - centre[0]) ** 2)  # fmt: skip
        profile = expit((radius - distance) / NODULE_EDGE_MM)
        volume[box] += profile * lungs[box] * (nodule_hu(amplitude) - HU_LUNG)  # confined to the lung
        finding = {"centre_lps_mm": [round(float(v), 3) for v in centre], "radius_mm": round(radius, 3),
                   "amplitude": round(amplitude, 6), "core_hu": round(nodule_hu(amplitude), 2)}  # fmt: skip
    volume += rng.standard_normal(volume.shape, dtype=np.float32) * NOISE_HU
    return volume, finding


def _soft_ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, edge: float) -> np.ndarray:
    distance = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return expit((1.0 - distance) / edge)


def _write_series(plan: _Plan, study: Path, rng: np.random.Generator) -> dict:
    """Render and write one series; returns what the truth records about it."""
    slices = int(rng.integers(SLICES[0], SLICES[1] + 1))
    jitter = rng.normal(0, 4, size=2).tolist()
    z0 = -float(rng.uniform(100.0, 300.0))
    # positions in 0.01 mm: a decimal string (DS) holds at most 16 characters
    origin = (round(FIELD_ORIGIN_MM + jitter[0], 2), round(FIELD_ORIGIN_MM + jitter[1], 2), round(z0, 2))
    pixels = _Pixels(signed=bool(rng.random() < SIGNED_RATE), rle=bool(rng.random() < RLE_RATE))
    reversed_numbers = bool(rng.random() < REVERSED_INSTANCE_RATE) and plan.layout == "single_frame"
    series_number = int(rng.integers(2, 7))
    token = str(int(rng.integers(0, 2**63)))
    volume, finding = render_chest(slices, origin, rng, plan.nodule, plan.amplitude)
    stored = pixels.encode(volume)
    folder = study / f"series_{series_number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    ds = _series_dataset(plan, pixels, token, series_number, rng)
    positions = [[origin[0], origin[1], round(origin[2] + SLICE_SPACING_MM * k, 2)] for k in range(slices)]
    if plan.layout == "enhanced_multiframe":
        _write_enhanced(ds, stored, positions, pixels, folder / "IM0001.dcm", token, rng)
        files = 1
    else:
        files = _write_slices(ds, stored, positions, pixels, folder, token, reversed_numbers, plan.broken, rng)
    return {
        "series_instance_uid": str(ds.SeriesInstanceUID), "slices": files if plan.layout == "single_frame" else slices,
        "files": files, "finding": finding, "folder": str(folder.relative_to(study.parent)),
        "instance_numbers_reversed": reversed_numbers, "signed": pixels.signed,
        "transfer_syntax": str(RLELossless if pixels.rle else ExplicitVRLittleEndian),
    }  # fmt: skip


def _series_dataset(plan: _Plan, pixels: _Pixels, token: str, series_number: int, rng: np.random.Generator
                    ) -> Dataset:  # fmt: skip
    """The attributes every file of a series shares: patient, study, series, frame of reference, pixel module."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID = derived_uid([token, "study"])
    ds.SeriesInstanceUID = derived_uid([token, "series"])
    ds.FrameOfReferenceUID = derived_uid([token, "frame"])
    set_patient_and_study(ds, plan.header, plan.acquired, rng)
    ds.AcquisitionDateTime = plan.acquired.strftime("%Y%m%d%H%M%S")
    ds.Modality = "CT"
    ds.Manufacturer = "ClinFuse Synthetic"
    ds.BodyPartExamined = "CHEST"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = f"CHEST {SLICE_SPACING_MM:g}MM LUNG"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.KVP = 120
    ds.ConvolutionKernel = "LUNG"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = pixels.bits_stored
    ds.HighBit = pixels.bits_stored - 1
    ds.PixelRepresentation = int(pixels.signed)
    ds.BurnedInAnnotation = "NO"
    return ds


def _geometry_attributes(target: Dataset) -> None:
    target.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    target.SliceThickness = SLICE_SPACING_MM
    target.SpacingBetweenSlices = SLICE_SPACING_MM


def _write_slices(
    ds: Dataset,
    stored: np.ndarray,
    positions: list[list[float]],
    pixels: _Pixels,
    folder: Path,
    token: str,
    reversed_numbers: bool,
    broken: Broken | None,
    rng: np.random.Generator,
) -> int:
    """One CT Image Storage file per slice; the dataset is reused, only per-slice attributes change."""
    slices = len(positions)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _geometry_attributes(ds)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1.0, "HU"
    ds.WindowCenter, ds.WindowWidth = LUNG_WINDOW
    odd_one = int(rng.integers(2, slices - 2))  # an interior slice (in z order) for a broken series
    files = _SliceFiles()
    written = 0
    for k in range(slices):
        if broken == "missing_slice" and k == odd_one:
            continue
        instance = slices - k if reversed_numbers else k + 1
        sop = derived_uid([token, "sop", str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
        ds.InstanceNumber = instance
        ds.ImagePositionPatient = positions[k]
        ds.SliceLocation = positions[k][2]
        ds.ImageOrientationPatient = CORONAL if broken == "mixed_orientation" and k == odd_one else AXIAL
        _set_pixel_data(ds, stored[k], pixels)
        files.save(ds, folder / f"IM{instance:04d}.dcm")
        written += 1
    return written


def _write_enhanced(ds: Dataset, stored: np.ndarray, positions: list[list[float]], pixels: _Pixels, path: Path,
                    token: str, rng: np.random.Generator) -> None:  # fmt: skip
    """One Enhanced CT Image Storage object whose frames are stored shuffled: only the per-frame plane positions
    (and the in-stack position numbers) give the order along z."""
    slices = len(positions)
    order = rng.permutation(slices)  # frame j holds slice order[j]
    sop = derived_uid([token, "sop"])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = slices
    ds.ContentQualification = "PRODUCT"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"

    organisation = Dataset()
    organisation.DimensionOrganizationUID = derived_uid([token, "dimensions"])
    ds.DimensionOrganizationSequence = Sequence([organisation])
    indices = []
    for pointer in (_STACK_ID, _IN_STACK_POSITION):
        index = Dataset()
        index.DimensionOrganizationUID = organisation.DimensionOrganizationUID
        index.DimensionIndexPointer = pointer
        index.FunctionalGroupPointer = _FRAME_CONTENT_SEQUENCE
        indices.append(index)
    ds.DimensionIndexSequence = Sequence(indices)

    measures, orientation, transformation, voi, frame_type = Dataset(), Dataset(), Dataset(), Dataset(), Dataset()
    _geometry_attributes(measures)
    orientation.ImageOrientationPatient = AXIAL
    transformation.RescaleIntercept, transformation.RescaleSlope, transformation.RescaleType = (
        RESCALE_INTERCEPT,
        1,
        "HU",
    )
    voi.WindowCenter, voi.WindowWidth = LUNG_WINDOW
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transformation])
    shared.FrameVOILUTSequence = Sequence([voi])
    shared.CTImageFrameTypeSequence = Sequence([frame_type])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    for k in order:
        position, content, frame = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = positions[k]
        content.StackID = "1"
        content.InStackPositionNumber = int(k) + 1
        content.DimensionIndexValues = [1, int(k) + 1]
        content.FrameAcquisitionDateTime = ds.AcquisitionDateTime
        frame.PlanePositionSequence = Sequence([position])
        frame.FrameContentSequence = Sequence([content])
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    _set_pixel_data(ds, stored[order], pixels)
    ds.save_as(path, enforce_file_format=True)


class _SliceFiles:
    """Saves a series' slices as `Dataset.save_as(path, enforce_file_format=True)` would, byte for byte, several
    times faster: pydicom encodes the elements that all slices share once, and per slice only those in _PER_SLICE
    and the File Meta Information. (save_as took 14 ms a file, most of the CT demo's time.)"""

    def __init__(self) -> None:
        self._shared: dict[BaseTag, bytes] | None = None

    def save(self, ds: Dataset, path: Path) -> None:
        if self._shared is None:
            self._shared = {elem.tag: _encoded(ds, elem.tag) for elem in ds if elem.tag not in _PER_SLICE}
        varying = {tag: _encoded(ds, tag) for tag in _PER_SLICE if tag in ds}
        body = b"".join(encoded for _, encoded in sorted({**self._shared, **varying}.items()))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        buffer = _explicit_little_endian_buffer()
        write_file_meta_info(buffer, meta, enforce_standard=True)
        path.write_bytes(b"\x00" * 128 + b"DICM" + buffer.getvalue() + body)


def _encoded(ds: Dataset, tag: BaseTag) -> bytes:
    buffer = _explicit_little_endian_buffer()
    write_data_element(buffer, ds[tag])
    return buffer.getvalue()


def _explicit_little_endian_buffer() -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    return buffer


def _set_pixel_data(ds: Dataset, stored: np.ndarray, pixels: _Pixels) -> None:
    """Native little-endian pixels, or RLE Lossless through pydicom's encoder (each frame its own fragment)."""
    if pixels.rle:
        ds.compress(RLELossless, stored, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        return
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = stored.tobytes()
    element = ds["PixelData"]
    element.VR, element.is_undefined_length = "OW", False
