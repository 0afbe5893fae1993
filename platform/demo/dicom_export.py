"""Write synthetic radiographs as DICOM files the way a PACS export looks.

Mixed transfer syntaxes (uncompressed, RLE, JPEG 2000 and JPEG-LS lossless), MONOCHROME1 and MONOCHROME2,
rescale slope/intercept, windows, pixel spacing, and fake PHI in the header so de-identification can be
tested. Some files present their grey scale differently (a VOI LUT Sequence instead of a window, a SIGMOID
window) and a few carry text burned into the pixels, as screenshots and some modalities' exports do. UIDs are
derived from the seed, so files are reproducible.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from clinfuse.platform.demo.vocabulary import FIRST_NAMES, INSTITUTIONS, LAST_NAMES
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_PRESENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")

# (transfer syntax, pydicom encoding plugin or None for uncompressed, share of files)
TRANSFER_SYNTAXES: tuple[tuple[UID, str | None, float], ...] = (
    (ExplicitVRLittleEndian, None, 0.35),
    (ImplicitVRLittleEndian, None, 0.10),
    (RLELossless, "pylibjpeg", 0.20),
    (JPEG2000Lossless, "pylibjpeg", 0.20),
    (JPEGLSLossless, "pyjpegls", 0.15),
)
# (slope, intercept): stored = (modality value - intercept) / slope stays within 12 bits.
RESCALES: tuple[tuple[float, float], ...] = ((1.0, 0.0), (2.0, -1000.0), (1.0, 100.0))
MODALITY_VALUE_RANGE = (200.0, 3800.0)
BITS_STORED = 12
# Shares of radiographs whose grey-scale presentation differs from a plain linear window, and of burned-in text.
LUT_SEQUENCE_RATE = 0.10
SIGMOID_RATE = 0.10
BURNED_IN_RATE = 0.25  # of the images that are not a patient's index image (the generator keeps those clean)
VoiStyle = Literal["window", "lut_sequence", "sigmoid"]


@dataclass(frozen=True)
class ImageRecord:
    """What the generator needs to know about one written file."""

    path: Path
    sop_instance_uid: str
    acquired: datetime
    transfer_syntax: str
    photometric: str


@dataclass(frozen=True)
class PatientHeader:
    """Identifying attributes written to the header (fake PHI)."""

    patient_id: str
    name: str
    birth_date: str
    sex: str
    address: str
    institution: str
    referring_physician: str


@dataclass(frozen=True, eq=False)
class Presentation:
    """How a radiograph presents its grey scale, and any text burned into its pixels.

    `voi`: "window" (WindowCenter/Width), "lut_sequence" (a VOI LUT Sequence approximating that window, no window
    attributes) or "sigmoid" (the window with VOILUTFunction SIGMOID). `text` is a boolean mask of burned-in
    "text" drawn bright inside `burned_in_box` (row0, col0, row1, col1); such files say BurnedInAnnotation YES.
    """

    voi: VoiStyle = "window"
    lut_bits: int = 12
    text: np.ndarray | None = None
    burned_in_box: tuple[int, int, int, int] | None = None


def draw_presentation(rows: int, cols: int, rng: np.random.Generator) -> Presentation:
    """A radiograph's presentation: ~10% VOI LUT Sequence, ~10% SIGMOID, ~25% burned-in text in a corner."""
    draw = rng.random()
    voi: VoiStyle = "lut_sequence" if draw < LUT_SEQUENCE_RATE else "window"
    if LUT_SEQUENCE_RATE <= draw < LUT_SEQUENCE_RATE + SIGMOID_RATE:
        voi = "sigmoid"
    lut_bits = int(rng.choice([8, 12]))
    if rng.random() >= BURNED_IN_RATE:
        return Presentation(voi=voi, lut_bits=lut_bits)
    text, box = _burned_in_text(rows, cols, rng)
    return Presentation(voi=voi, lut_bits=lut_bits, text=text, burned_in_box=box)


def _burned_in_text(rows: int, cols: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Two or three lines of 5x7-pixel "characters" (random glyphs, some blanks as spaces) in a random corner."""
    margin = 4
    lines = min(int(rng.integers(2, 4)), (rows - 2 * margin) // 9)  # a small image gets fewer, shorter lines
    chars = min(int(rng.integers(10, 21)), (cols - 2 * margin) // 6)
    glyphs = rng.random((lines, chars, 7, 5)) < 0.45
    glyphs[rng.random((lines, chars)) < 0.15] = False  # spaces between "words"
    cells = np.zeros((lines, chars, 9, 6), dtype=bool)  # a 1-pixel gap right of and 2 below each character
    cells[:, :, :7, :5] = glyphs
    block = cells.transpose(0, 2, 1, 3).reshape(lines * 9, chars * 6)
    height, width = block.shape
    r0 = margin if rng.random() < 0.5 else rows - margin - height
    c0 = margin if rng.random() < 0.5 else cols - margin - width
    mask = np.zeros((rows, cols), dtype=bool)
    mask[r0 : r0 + height, c0 : c0 + width] = block
    return mask, (r0, c0, r0 + height, c0 + width)


def fake_header(patient_id: str, sex: str, birth_year: int, rng: np.random.Generator) -> PatientHeader:
    """Fake PHI for a file's header: a name, birth date, address, institution and referring physician."""
    return PatientHeader(
        patient_id=patient_id,
        name=f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}",
        birth_date=f"{birth_year:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        sex=sex,
        address=f"{int(rng.integers(1, 999))} SYNTHETIC STREET, SPRINGFIELD",
        institution=str(rng.choice(INSTITUTIONS)),
        referring_physician=f"DR^{rng.choice(LAST_NAMES)}",
    )


def set_patient_and_study(ds: Dataset, header: PatientHeader, acquired: datetime, rng: np.random.Generator) -> None:
    """The identifying header (fake PHI, accession number, study id) and the study/series/acquisition dates."""
    ds.PatientName = header.name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    ds.PatientAddress = header.address
    ds.InstitutionName = header.institution
    ds.ReferringPhysicianName = header.referring_physician
    ds.AccessionNumber = f"A{int(rng.integers(10**7, 10**8))}"
    ds.StudyID = str(int(rng.integers(1000, 9999)))
    date, time = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time


def write_radiograph(
    canonical: np.ndarray,
    path: Path,
    header: PatientHeader,
    acquired: datetime,
    uid_seed: list[str],
    rng: np.random.Generator,
    presentation: Presentation | None = None,
) -> ImageRecord:
    """Encode `canonical` ([0, 1], dense bright) as one DICOM file at `path`.

    `rng` draws everything but the `presentation`, which comes from a stream of its own: files whose presentation
    is the default are the same with or without it."""
    presentation = presentation or Presentation()
    syntax, plugin = _pick_transfer_syntax(rng)
    monochrome1 = bool(rng.random() < 0.3)
    slope, intercept = RESCALES[int(rng.integers(0, len(RESCALES)))]
    is_cr = bool(rng.random() < 0.5)

    lo, hi = MODALITY_VALUE_RANGE
    if presentation.text is not None:  # burned-in text displays white whatever the photometric interpretation
        canonical = np.where(presentation.text, 1.0, canonical)
    values = lo + canonical * (hi - lo)
    if monochrome1:  # MONOCHROME1: the lowest value displays white, so dense tissue is stored low
        values = (hi + lo) - values
    stored = np.rint((values - intercept) / slope).astype(np.uint16)
    if stored.max() >= 2**BITS_STORED:
        raise ValueError("stored pixel values exceed 12 bits; check RESCALES")

    def uid(*parts: str) -> str:
        return derived_uid([*uid_seed, *parts])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = CR_IMAGE_STORAGE if is_cr else DX_PRESENTATION_STORAGE
    sop_instance = uid("sop")
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    set_patient_and_study(ds, header, acquired, rng)
    ds.Modality = "CR" if is_cr else "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = str(rng.choice(["PA", "AP"]))
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Manufacturer = "ClinFuse Synthetic"

    rows, cols = stored.shape
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [1.4, 1.4]
    ds.ImagerPixelSpacing = [1.4, 1.4]
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.RescaleType = "US"
    ds.WindowCenter = round((lo + hi) / 2 + float(rng.normal(0, 50)), 1)
    ds.WindowWidth = round((hi - lo) * float(rng.uniform(0.85, 1.05)), 1)
    _apply_presentation(ds, presentation)
    ds.PixelData = stored.tobytes()

    if syntax == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif plugin is not None:
        ds.compress(syntax, stored, encoding_plugin=plugin, generate_instance_uid=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ImageRecord(
        path=path,
        sop_instance_uid=str(sop_instance),
        acquired=acquired,
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        photometric=str(ds.PhotometricInterpretation),
    )


def _apply_presentation(ds: Dataset, presentation: Presentation) -> None:
    if presentation.voi == "sigmoid":
        ds.VOILUTFunction = "SIGMOID"
    elif presentation.voi == "lut_sequence":
        center, width = float(ds.WindowCenter), float(ds.WindowWidth)
        ds.VOILUTSequence = Sequence([window_lut(center, width, presentation.lut_bits)])
        del ds.WindowCenter, ds.WindowWidth
    if presentation.text is not None:
        ds.BurnedInAnnotation = "YES"


def window_lut(center: float, width: float, bits: int) -> Dataset:
    """A VOI LUT Sequence item mapping modality values linearly from 0 to 2**bits - 1 across the window.

    One entry per modality unit from the window's lower edge (not below 0: the first mapped value is unsigned);
    values before the first entry take the first output and values past the last take the last (PS3.3 C.11.2.1.1).
    """
    first = max(0, int(np.floor(center - width / 2)))
    entries = int(np.ceil(center + width / 2)) - first + 1
    inputs = first + np.arange(entries)
    outputs = np.clip((inputs - (center - width / 2)) / width, 0.0, 1.0) * (2**bits - 1)
    item = Dataset()
    item.add_new(0x00283002, "US", [entries, first, bits])  # LUTDescriptor: entries, first mapped value, bits
    item.LUTExplanation = f"W{center:g}/{width:g}"
    item.add_new(0x00283006, "US", np.rint(outputs).astype(int).tolist())  # LUTData
    return item


def _pick_transfer_syntax(rng: np.random.Generator) -> tuple[UID, str | None]:
    shares = np.array([share for _, _, share in TRANSFER_SYNTAXES])
    syntax, plugin, _ = TRANSFER_SYNTAXES[int(rng.choice(len(TRANSFER_SYNTAXES), p=shares / shares.sum()))]
    return syntax, plugin


def derived_uid(parts: list[str]) -> str:
    """A '2.25.' UUID-derived UID (PS3.5 B.2) hashed from `parts`, so equal seeds give equal UIDs.

    pydicom's generate_uid ignores its entropy sources when the 2.25 root is wanted, hence this helper.
    """
    digest = hashlib.sha256("|".join(parts).encode()).digest()[:16]
    return f"2.25.{uuid.UUID(bytes=digest, version=4).int}"
