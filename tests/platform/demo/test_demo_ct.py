"""The demo's CT modality (3D series, a planted nodule, traps for volume readers) and the radiographs' VOI LUT
Sequences, SIGMOID windows and burned-in text: files valid, geometry and truth as recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from clinfuse.platform.demo import generate_demo_cohort
from clinfuse.platform.demo.ct import (
    AXIAL,
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    HU_LUNG,
    LUNG_WINDOW,
    PIXEL_SPACING_MM,
    SLICE_SPACING_MM,
    nodule_hu,
)
from clinfuse.platform.demo.dicom_export import CR_IMAGE_STORAGE, DX_PRESENTATION_STORAGE
from clinfuse.platform.demo.latent import MODALITY_NAMES
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import apply_modality_lut, apply_voi
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

# Seed 0's 40 patients have, among others, an enhanced, a missing-slice and a mixed-orientation index series,
# priors, follow-ups, and radiographs with a VOI LUT Sequence, a SIGMOID window and burned-in text.
WITH_CT = (*MODALITY_NAMES, "ct")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-ct") / "cohort"
    generate_demo_cohort(out, patients=40, seed=0, modalities=WITH_CT)
    return out


@pytest.fixture(scope="module")
def truth(cohort: Path) -> dict:
    return json.loads((cohort / "ground_truth.json").read_text())


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _normal(orientation: list[float]) -> np.ndarray:
    return np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))


def _load_series(folder: Path) -> tuple[np.ndarray, np.ndarray, list[pydicom.Dataset]]:
    """HU volume ordered along the slice normal, the first voxel centre of each slice, and the datasets read
    (one for an enhanced object, else one per file)."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1)) > 1:
        ds = datasets[0]
        shared = ds.SharedFunctionalGroupsSequence[0]
        transform = shared.PixelValueTransformationSequence[0]
        frames = ds.pixel_array * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
        orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        per_frame = ds.PerFrameFunctionalGroupsSequence
        positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in per_frame], dtype=float)
    else:
        frames = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets])
        orientation = datasets[0].ImageOrientationPatient
        positions = np.array([ds.ImagePositionPatient for ds in datasets], dtype=float)
    order = np.argsort(positions @ _normal(orientation))
    return frames[order].astype(float), positions[order], datasets


def test_ct_files_are_valid_dicom_linked_by_patient_id(cohort: Path, truth: dict) -> None:
    files = sorted((cohort / "ct").rglob("*"))
    files = [p for p in files if p.is_file()]
    assert len(files) == truth["planted"]["ct"]["files"] > 500
    by_patient: dict[str, set[str]] = defaultdict(set)
    syntaxes, bits, classes = set(), set(), set()
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.Modality == "CT" and ds.Rows == ds.Columns == 128 and ds.BitsAllocated == 16
        pixels = ds.pixel_array
        assert pixels.shape[-2:] == (128, 128) and pixels.std() > 50
        by_patient[str(ds.PatientID)].add(str(ds.SeriesInstanceUID))
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        bits.add((int(ds.BitsStored), int(ds.PixelRepresentation)))
        classes.add(ds.SOPClassUID)
        assert {"PatientName", "PatientBirthDate", "AccessionNumber", "AcquisitionDate", "AcquisitionTime"} <= set(
            ds.dir()
        )
    assert syntaxes == {ExplicitVRLittleEndian, RLELossless}
    assert bits == {(12, 0), (16, 1)}
    assert classes == {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE}
    with_ct = {pid for pid, p in truth["patients"].items() if p["present"]["ct"]}
    assert with_ct == set(by_patient) == {pid for pid, p in truth["patients"].items() if p["ct"] is not None}
    assert all(pid not in str(path) for path in files for pid in with_ct)
    for pid in with_ct:
        entry = truth["patients"][pid]["ct"]
        assert len(by_patient[pid]) == 1 + entry["prior"] + entry["follow_up"]
    for path in files[:: len(files) // 25]:  # written as pydicom writes them, byte for byte
        buffer = DicomBytesIO()
        pydicom.dcmread(path).save_as(buffer, enforce_file_format=True)
        assert buffer.getvalue() == path.read_bytes()


def test_only_follow_ups_lie_after_the_index_time(cohort: Path, truth: dict) -> None:
    index_times = pd.read_csv(cohort / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")["index_time"]
    after: dict[str, set[str]] = defaultdict(set)
    for path in (cohort / "ct").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        acquired = datetime.strptime(f"{ds.AcquisitionDate}{ds.AcquisitionTime}", "%Y%m%d%H%M%S")
        if acquired > datetime.fromisoformat(index_times[str(ds.PatientID)]):
            after[str(ds.PatientID)].add(str(ds.SeriesInstanceUID))
    follow_ups = {pid for pid, p in truth["patients"].items() if p["ct"] and p["ct"]["follow_up"]}
    assert follow_ups and set(after) == follow_ups
    assert all(len(series) == 1 for series in after.values())
    assert truth["planted"]["ct"]["prior"] > 0


def test_index_series_geometry_and_layouts_are_as_recorded(cohort: Path, truth: dict) -> None:
    entries = [p["ct"] for p in truth["patients"].values() if p["ct"]]
    layouts = {e["layout"] for e in entries}
    assert layouts == {"single_frame", "enhanced_multiframe"}
    reversed_seen = shuffled_seen = 0
    for entry in entries:
        volume, positions, datasets = _load_series(cohort / "ct" / entry["folder"])
        assert {str(ds.SeriesInstanceUID) for ds in datasets} == {entry["series_instance_uid"]}
        assert len({(str(ds.StudyInstanceUID), str(ds.FrameOfReferenceUID)) for ds in datasets}) == 1
        assert volume.shape == (entry["slices"], 128, 128)
        steps = np.diff(positions[:, 2])
        if entry["broken"] == "missing_slice":
            gaps = sorted(steps.tolist())
            assert gaps[-1] == pytest.approx(2 * SLICE_SPACING_MM) and gaps[-2] == pytest.approx(SLICE_SPACING_MM)
            assert gaps[0] == pytest.approx(SLICE_SPACING_MM)
            continue
        np.testing.assert_allclose(steps, SLICE_SPACING_MM, atol=1e-6)
        assert (positions[:, :2] == positions[0, :2]).all()
        if entry["layout"] == "enhanced_multiframe":
            ds = datasets[0]
            shared = ds.SharedFunctionalGroupsSequence[0]
            assert ds.SOPClassUID == ENHANCED_CT_IMAGE_STORAGE and int(ds.NumberOfFrames) == entry["slices"]
            assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [PIXEL_SPACING_MM] * 2
            assert float(shared.PixelMeasuresSequence[0].SliceThickness) == SLICE_SPACING_MM
            voi = shared.FrameVOILUTSequence[0]
            assert (float(voi.WindowCenter), float(voi.WindowWidth)) == LUNG_WINDOW
            frames = ds.PerFrameFunctionalGroupsSequence
            stack = np.array([f.FrameContentSequence[0].InStackPositionNumber for f in frames])
            z = np.array([float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in frames])
            assert (np.argsort(z) == np.argsort(stack)).all()  # the positions recover the stack order
            shuffled_seen += not (np.diff(z) > 0).all()
            continue
        assert all(list(map(float, ds.PixelSpacing)) == [PIXEL_SPACING_MM] * 2 for ds in datasets)
        assert all(float(ds.SliceThickness) == SLICE_SPACING_MM for ds in datasets)
        assert all((float(ds.WindowCenter), float(ds.WindowWidth)) == LUNG_WINDOW for ds in datasets)
        by_z = sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
        numbers = [int(ds.InstanceNumber) for ds in by_z]
        assert numbers == sorted(numbers, reverse=entry["instance_numbers_reversed"])
        reversed_seen += entry["instance_numbers_reversed"]
        if entry["broken"] is None:
            assert all(list(map(float, ds.ImageOrientationPatient)) == AXIAL for ds in datasets)
    assert reversed_seen > 0 and shuffled_seen > 0


def test_broken_series_are_broken_as_recorded(cohort: Path, truth: dict) -> None:
    broken = {p["ct"]["broken"]: p["ct"] for p in truth["patients"].values() if p["ct"] and p["ct"]["broken"]}
    assert set(broken) == {"missing_slice", "mixed_orientation"}
    missing = broken["missing_slice"]
    files = sorted((cohort / "ct" / missing["folder"]).glob("*.dcm"))
    numbers = sorted(int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in files)
    assert len(files) == missing["slices"] and len(set(range(1, len(files) + 2)) - set(numbers)) == 1
    mixed = broken["mixed_orientation"]
    orientations = [
        tuple(float(v) for v in pydicom.dcmread(p, stop_before_pixels=True).ImageOrientationPatient)
        for p in (cohort / "ct" / mixed["folder"]).glob("*.dcm")
    ]
    assert sum(o != tuple(AXIAL) for o in orientations) == 1 and len(orientations) == mixed["slices"]


def test_planted_nodule_is_where_the_truth_says(cohort: Path, truth: dict) -> None:
    checked = 0
    for patient in truth["patients"].values():
        entry = patient["ct"]
        if not entry:
            continue
        severity = patient["latent"]["ct_severity"]
        assert (entry["finding"] is None) == (severity <= 0)
        if entry["finding"] is None or entry["broken"]:
            continue
        finding = entry["finding"]
        volume, positions, _ = _load_series(cohort / "ct" / entry["folder"])
        cx, cy, cz = finding["centre_lps_mm"]
        x = positions[0, 0] + PIXEL_SPACING_MM * np.arange(128)
        y = positions[0, 1] + PIXEL_SPACING_MM * np.arange(128)
        distance = np.sqrt((positions[:, 2, None, None] - cz) ** 2 + (y[None, :, None] - cy) ** 2
                           + (x[None, None, :] - cx) ** 2)  # fmt: skip
        radius = finding["radius_mm"]
        core = volume[distance < 0.5 * radius].mean()
        ring = volume[(distance > radius + 6) & (distance < radius + 15) & (volume < -700)].mean()  # lung around it
        raised = nodule_hu(finding["amplitude"]) - HU_LUNG
        assert finding["amplitude"] == pytest.approx(severity, abs=1e-5)
        assert abs(ring - HU_LUNG) < 25, "the nodule lies in a lung"
        assert core - ring > 0.5 * raised - 10, f"core {core:.0f} HU, ring {ring:.0f} HU, planted +{raised:.0f}"
        checked += 1
    assert checked >= 5


def test_ct_flag_equals_ct_in_modalities(clinfuse_exe: Path, tmp_path: Path) -> None:
    common = ["demo-data", "--patients", "6", "--seed", "2"]
    flag = subprocess.run([str(clinfuse_exe), *common, "--out", str(tmp_path / "a"), "--ct"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    listed = subprocess.run([str(clinfuse_exe), *common, "--out", str(tmp_path / "b"), "--modalities",
                             "imaging,genomics,ehr,ct"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert flag.returncode == 0 and listed.returncode == 0, flag.stderr + listed.stderr
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first == second and any(name.startswith("ct/") for name in first)
    assert "kind: dicom" in (tmp_path / "a" / "cohort.yaml").read_text().split("name: ct")[1]


def test_adding_ct_leaves_the_other_modalities_files_unchanged(tmp_path: Path) -> None:
    others = (*MODALITY_NAMES, "notes", "ecg")
    generate_demo_cohort(tmp_path / "without", patients=16, seed=4, modalities=others)
    generate_demo_cohort(tmp_path / "with", patients=16, seed=4, modalities=(*others, "ct"))
    without, with_ct = _digests(tmp_path / "without"), _digests(tmp_path / "with")
    for folder in ("notes/", "ecg/", "genomics/"):
        assert {k: v for k, v in without.items() if k.startswith(folder)} == {
            k: v for k, v in with_ct.items() if k.startswith(folder)
        }
    truths = [
        json.loads((tmp_path / name / "ground_truth.json").read_text())["patients"] for name in ("without", "with")
    ]
    for pid, before in truths[0].items():
        after = truths[1][pid]
        assert {k: v for k, v in after["latent"].items() if k != "ct_severity"} == before["latent"]
        assert {k: v for k, v in after["present"].items() if k != "ct"} == before["present"]
        assert after["image"] == before["image"] and after["ecg"] == before["ecg"] and after["notes"] == before["notes"]
    # The label (and so the follow-up radiographs' opacity and the outcome codes) include the CT term; every other
    # radiograph is the same file.
    manifest = pd.read_csv(tmp_path / "with" / "imaging_manifest.csv", dtype={"patient_id": str})
    same_label = {pid for pid in truths[0] if truths[0][pid]["label"] == truths[1][pid]["label"]}
    kept = manifest[manifest["patient_id"].isin(same_label)]["path"]
    assert len(kept) > 5 and all(without[path] == with_ct[path] for path in kept)
    assert set(with_ct) - set(without) == {k for k in with_ct if k.startswith("ct/")}


def test_radiograph_presentations_are_as_recorded(cohort: Path, truth: dict) -> None:
    recorded = truth["planted"]["image_presentation"]["files"]
    assert all(recorded[style] for style in ("lut_sequence", "sigmoid", "burned_in"))
    index_images = {p["image"]["sop_instance_uid"]: p["image"] for p in truth["patients"].values() if p["image"]}
    styles = defaultdict(int)
    for path in sorted((cohort / "imaging").rglob("*.dcm")):
        relative = str(path.relative_to(cohort))
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID in (CR_IMAGE_STORAGE, DX_PRESENTATION_STORAGE)  # never a secondary capture
        voi = next((style for style in ("lut_sequence", "sigmoid") if relative in recorded[style]), "window")
        burned_in = relative in recorded["burned_in"]
        styles[voi] += 1
        if voi == "lut_sequence":
            assert "WindowCenter" not in ds and "WindowWidth" not in ds
            item = ds.VOILUTSequence[0]
            entries, first, bits = item.LUTDescriptor
            assert bits in (8, 12) and 3000 < entries < 3900 and first >= 0
            # Implicit VR files read LUTData as OW bytes. pydicom 3.0's apply_voi indexes an 8-bit LUT with a uint8
            # array (entries past 255 wrap), so the lookup is done here as PS3.3 C.11.2.1.1 describes it.
            data = item.LUTData
            lut = np.frombuffer(data, "<u2") if isinstance(data, bytes) else np.asarray(data)
            assert len(lut) == entries and (np.diff(lut.astype(int)) >= 0).all()
            assert lut[0] <= 1 and lut[-1] == 2**bits - 1
            assert abs(lut[entries // 2] - (2**bits - 1) / 2) < 0.02 * 2**bits  # linear across the window
            values = apply_modality_lut(ds.pixel_array, ds).astype(np.int64)
            shown = lut[np.clip(values - first, 0, entries - 1)]
            assert shown.std() > 0.1 * 2**bits
            if bits == 12:
                assert (apply_voi(values, ds) == shown).all()
        else:
            assert float(ds.WindowWidth) > 0
            assert (ds.get("VOILUTFunction") == "SIGMOID") == (voi == "sigmoid")
        assert ds.get("BurnedInAnnotation", "NO") == ("YES" if burned_in else "NO")
        if burned_in:
            r0, c0, r1, c1 = truth["planted"]["image_presentation"]["burned_in_boxes"][relative]
            assert (r0 == 4 or r1 == ds.Rows - 4) and (c0 == 4 or c1 == ds.Columns - 4), "in a corner"
            shown = apply_modality_lut(ds.pixel_array, ds).astype(float)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                shown = shown.max() + shown.min() - shown
            text = shown[r0:r1, c0:c1] >= shown.max() - 1
            assert 0.1 < text.mean() < 0.6, "bright text in the recorded box"
        if ds.SOPInstanceUID in index_images:
            image = index_images[ds.SOPInstanceUID]
            assert image["voi"] == voi and image["burned_in"] == burned_in
            assert (image["burned_in_box"] is not None) == burned_in
    assert styles["lut_sequence"] == len(recorded["lut_sequence"]) and styles["sigmoid"] == len(recorded["sigmoid"])
