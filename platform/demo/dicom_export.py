"""Write synthetic radiographs as DICOM files the way a PACS export looks.

Mixed transfer syntaxes (uncompressed, RLE, JPEG 2000 and JPEG-LS lossless), MONOCHROME1 and MONOCHROME2,
rescale slope/intercept, windows, pixel spacing, and fake PHI in the header so de-identification can be
tested. UIDs are derived from the seed, so files are reproducible.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
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


def write_radiograph(
    canonical: np.ndarray,
    path: Path,
    header: PatientHeader,
    acquired: datetime,
    uid_seed: list[str],
    rng: np.random.Generator,
) -> ImageRecord:
    """Encode `canonical` ([0, 1], dense bright) as one DICOM file at `path`."""
    syntax, plugin = _pick_transfer_syntax(rng)
    monochrome1 = bool(rng.random() < 0.3)
    slope, intercept = RESCALES[int(rng.integers(0, len(RESCALES)))]
    is_cr = bool(rng.random() < 0.5)

    lo, hi = MODALITY_VALUE_RANGE
    values = lo + canonical * (hi - lo)
    if monochrome1:  # MONOCHROME1: the lowest value displays white, so dense tissue is stored low
        values = (hi + lo) - values
    stored = np.rint((values - intercept) / slope).astype(np.uint16)
    if stored.max() >= 2**BITS_STORED:
        raise ValueError("stored pixel values exceed 12 bits; check RESCALES")

    def uid(*parts: str) -> str:
        return _derived_uid([*uid_seed, *parts])

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


def _pick_transfer_syntax(rng: np.random.Generator) -> tuple[UID, str | None]:
    shares = np.array([share for _, _, share in TRANSFER_SYNTAXES])
    syntax, plugin, _ = TRANSFER_SYNTAXES[int(rng.choice(len(TRANSFER_SYNTAXES), p=shares / shares.sum()))]
    return syntax, plugin


def _derived_uid(parts: list[str]) -> str:
    """A '2.25.' UUID-derived UID (PS3.5 B.2) hashed from `parts`, so equal seeds give equal UIDs.

    pydicom's generate_uid ignores its entropy sources when the 2.25 root is wanted, hence this helper.
    """
    digest = hashlib.sha256("|".join(parts).encode()).digest()[:16]
    return f"2.25.{uuid.UUID(bytes=digest, version=4).int}"
