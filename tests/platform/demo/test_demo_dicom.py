"""Every generated DICOM decodes through pydicom's pixel backends, and the planted finding is in the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless


def _all_dicoms(cohort: Path) -> list[Path]:
    return sorted((cohort / "imaging").rglob("*.dcm"))


def test_every_file_decodes_and_syntaxes_are_mixed(demo_cohort: Path) -> None:
    syntaxes, photometrics, modalities = set(), set(), set()
    files = _all_dicoms(demo_cohort)
    assert len(files) > 150
    for path in files:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns)
        assert pixels.max() < 2**ds.BitsStored
        assert pixels.std() > 10, f"{path} decoded to a flat image"
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        photometrics.add(ds.PhotometricInterpretation)
        modalities.add(ds.Modality)
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "PixelSpacing",
                        "RescaleSlope", "RescaleIntercept"):  # fmt: skip
            assert keyword in ds, f"{keyword} missing from {path}"
        assert ("WindowCenter" in ds and "WindowWidth" in ds) or "VOILUTSequence" in ds, path
    assert {ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless} <= syntaxes
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    assert modalities == {"CR", "DX"}


def test_patient_ids_link_images_to_cohort(demo_cohort: Path, demo_truth: dict) -> None:
    imaged = {pid for pid, p in demo_truth["patients"].items() if p["present"]["imaging"]}
    linked = {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in _all_dicoms(demo_cohort)}
    assert linked == imaged
    assert all(pid not in str(p) for p in _all_dicoms(demo_cohort) for pid in list(imaged)[:20])


def test_planted_finding_is_brighter_than_its_surroundings(demo_cohort: Path, demo_truth: dict) -> None:
    by_uid = {}
    for path in _all_dicoms(demo_cohort):
        by_uid[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = path
    contrasts = []
    for patient in demo_truth["patients"].values():
        image = patient["image"]
        if not image or not image["finding"] or patient["latent"]["finding_amplitude"] < 1.0:
            continue
        ds = pydicom.dcmread(by_uid[image["sop_instance_uid"]])
        values = apply_modality_lut(ds.pixel_array, ds).astype(float)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            values = values.max() + values.min() - values
        (cy, cx), sigma = image["finding"]["center"], image["finding"]["sigma"]
        yy, xx = np.mgrid[0 : ds.Rows, 0 : ds.Columns]
        distance = np.hypot(yy - cy, xx - cx)
        core = values[distance < sigma].mean()
        ring = values[(distance > 2.5 * sigma) & (distance < 3.5 * sigma)].mean()
        contrasts.append(core - ring)
    assert len(contrasts) >= 10
    assert np.median(contrasts) > 0
