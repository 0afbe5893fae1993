"""`volume: true`: series are grouped, ordered along the normal (not by InstanceNumber), checked, chosen before
the index time, resampled to RAS, and every file is used or reported."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.scan import scan_folder
from clinfuse.kinds.dicom.store import VOLUME_INDEX_FILE, VOLUMES_FILE
from clinfuse.kinds.dicom.volume_ingest import ingest_volumes
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext
from clinfuse.platform.security import Pseudonymiser
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROWS = COLS = 24
SPACING = 4.0  # mm, in-plane and between slices
SLICES = 12
MARKER_LPS = (-8.0, 12.0, 20.0)  # a bright voxel block centred here (L = +x, P = +y, S = +z)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _hu_at(x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """A phantom in LPS mm: -1000 HU everywhere but a 12 mm cube of +1000 HU around the marker."""
    inside = (np.abs(x - MARKER_LPS[0]) <= 6) & (np.abs(y - MARKER_LPS[1]) <= 6) & (abs(z - MARKER_LPS[2]) <= 6)
    return np.where(inside, 1000.0, -1000.0)


def _base(patient: str, series_uid: str, study_uid: str, acquired: datetime) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.Modality = patient, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.AcquisitionDate, ds.AcquisitionTime = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S")
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    return ds


def _save(ds: Dataset, path: Path, sop_class: str) -> None:
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _slice_pixels(z: float) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(COLS), np.arange(ROWS))
    x0 = y0 = -SPACING * (ROWS - 1) / 2
    hu = _hu_at(x0 + cols * SPACING, y0 + rows * SPACING, z)
    return (hu + 1024).astype(np.int16)


def write_series(folder: Path, patient: str, acquired: datetime, *, reverse_numbers: bool = False,
                 drop: int | None = None, tilt: int | None = None) -> None:  # fmt: skip
    """Axial single-frame slices; InstanceNumber against z when `reverse_numbers`; slice `drop` left out; slice
    `tilt` given another orientation."""
    study, series = generate_uid(), generate_uid()
    x0 = y0 = -SPACING * (ROWS - 1) / 2
    for k in range(SLICES):
        if k == drop:
            continue
        z = -SPACING * (SLICES - 1) / 2 + k * SPACING
        ds = _base(patient, series, study, acquired)
        ds.InstanceNumber = SLICES - k if reverse_numbers else k + 1
        ds.ImagePositionPatient = [x0, y0, z]
        ds.ImageOrientationPatient = list(AXIAL if k != tilt else (1.0, 0.0, 0.0, 0.0, 0.8, 0.6))
        ds.PixelSpacing, ds.SliceThickness = [SPACING, SPACING], SPACING
        ds.PixelData = _slice_pixels(z).tobytes()
        _save(ds, folder / f"IM{k:04d}.dcm", "1.2.840.10008.5.1.4.1.1.2")


def write_enhanced(path: Path, patient: str, acquired: datetime, order: np.ndarray) -> None:
    """The same volume as one enhanced multi-frame object, frames stored in `order`."""
    ds = _base(patient, generate_uid(), generate_uid(), acquired)
    x0 = y0 = -SPACING * (ROWS - 1) / 2
    zs = [-SPACING * (SLICES - 1) / 2 + k * SPACING for k in order]
    ds.NumberOfFrames = SLICES
    shared = Dataset()
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [SPACING, SPACING], SPACING
    orientation.ImageOrientationPatient = list(AXIAL)
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for z in zs:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [x0, y0, z]
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([_slice_pixels(z) for z in zs]).tobytes()
    _save(ds, path, "1.2.840.10008.5.1.4.1.1.2.1")


def _ingest(root: Path, tmp_path: Path, index_times: dict[str, str], previous: Path | None = None,
            **config) -> tuple[dict, np.ndarray, dict]:  # fmt: skip
    modality = DicomModality(kind="dicom", name="ct", path=root, volume=True, window=(0.0, 2000.0),
                             voxel_spacing=(4.0, 4.0, 4.0), volume_shape=(24, 24, 16), min_slices=8,
                             **config)  # fmt: skip
    labels = [i % 2 for i in range(len(index_times))]
    table = pd.DataFrame({"patient_id": list(index_times), "label": labels, "split": "train",
                          "index_time": pd.to_datetime(list(index_times.values()))})  # fmt: skip
    cohort = Cohort(table)
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir(parents=True)
    context = IngestContext(pseudonymise=Pseudonymiser(None, False), scratch=scratch, previous=previous)
    result = ingest_volumes(modality, cohort, out, context, scan_folder(modality, context))
    volumes = np.load(out / VOLUMES_FILE)
    index = json.loads((out / VOLUME_INDEX_FILE).read_text())
    return {"present": result.present_ids, "issues": result.patient_issues, **result.report}, volumes, index


def _marker_voxel(affine: list[list[float]]) -> np.ndarray:
    ras = np.array([-MARKER_LPS[0], -MARKER_LPS[1], MARKER_LPS[2], 1.0])
    return (np.linalg.inv(np.array(affine)) @ ras)[:3]


def test_series_are_ordered_along_the_normal_and_placed_in_ras(tmp_path: Path) -> None:
    root = tmp_path / "ct"
    write_series(root / "a", "A", datetime(2150, 1, 2), reverse_numbers=True)
    write_series(root / "b", "B", datetime(2150, 1, 2))
    write_enhanced(root / "c" / "multi.dcm", "C", datetime(2150, 1, 2), np.random.default_rng(0).permutation(SLICES))
    report, volumes, index = _ingest(root, tmp_path, {p: "2150-02-01" for p in "ABC"})
    assert report["present"] == ["A", "B", "C"]
    assert report["layouts"] == {"single_frame": 2, "multi_frame": 1}
    for row, volume in zip(index["rows"], volumes, strict=True):
        peak = np.array(np.unravel_index(np.argmax(volume), volume.shape))
        np.testing.assert_allclose(peak, _marker_voxel(row["affine"]), atol=1.6)  # the cube is 3 voxels wide
        assert float(volume.max()) > 0.9 and float(np.median(volume)) < 0.05
    np.testing.assert_allclose(volumes[0], volumes[1], atol=1e-3)  # InstanceNumber order does not matter
    np.testing.assert_allclose(volumes[0], volumes[2], atol=1e-3)  # nor the order frames are stored in


def test_broken_series_are_reported_and_an_older_good_one_is_used(tmp_path: Path) -> None:
    root = tmp_path / "ct"
    write_series(root / "a-new", "A", datetime(2150, 1, 20), drop=5)
    write_series(root / "a-old", "A", datetime(2150, 1, 2))
    write_series(root / "b", "B", datetime(2150, 1, 20), tilt=3)
    write_series(root / "c-after", "C", datetime(2150, 3, 1))
    report, volumes, _ = _ingest(root, tmp_path, {"A": "2150-02-01", "B": "2150-02-01", "C": "2150-02-01"})
    assert report["present"] == ["A"] and volumes.shape == (1, 24, 24, 16)
    assert report["series_excluded"] == {"missing slice(s)": 1, "mixed slice orientations in one series": 1}
    assert report["selection"] == {"not_in_cohort": 0, "after_index_time": 1, "older_than_chosen": 0}
    reasons = {Path(f["path"]).parent.name: f["reason"] for f in report["skipped"]["files"]}
    assert "a 8.0 mm gap (about 1 slice(s))" in reasons["a-new"]
    assert reasons["b"].startswith("series not used: mixed slice orientations")
    assert report["skipped"]["count"] == (SLICES - 1) + SLICES
    assert report["files_used"] == SLICES


def test_single_images_and_short_series_are_reported(tmp_path: Path) -> None:
    from clinfuse.platform.demo.dicom_export import PatientHeader, write_radiograph

    root = tmp_path / "ct"
    write_series(root / "a", "A", datetime(2150, 1, 2))
    header = PatientHeader("B", "X^Y", "21000101", "F", "1 ST", "HOSP", "DR^Z")
    write_radiograph(np.full((32, 32), 0.5), root / "b" / "IM0001.dcm", header, datetime(2150, 1, 2), ["s"],
                     np.random.default_rng(0))  # fmt: skip
    report, _, _ = _ingest(root, tmp_path, {"A": "2150-02-01", "B": "2150-02-01"})
    assert report["present"] == ["A"]
    [entry] = [f for f in report["skipped"]["files"] if f["path"].startswith("b/")]
    assert entry["reason"] == "single 2D image, not a series: a volume needs at least min_slices (8)"


@pytest.mark.parametrize("gap_ratio, used", [(1.5, False), (2.5, True)])
def test_the_gap_tolerance_is_configurable(tmp_path: Path, gap_ratio: float, used: bool) -> None:
    write_series(tmp_path / "ct" / "a", "A", datetime(2150, 1, 2), drop=4)
    report, _, _ = _ingest(tmp_path / "ct", tmp_path, {"A": "2150-02-01"}, max_gap_ratio=gap_ratio)
    assert (report["present"] == ["A"]) is used


def test_an_unchanged_series_is_reused_not_decoded_again(tmp_path: Path) -> None:
    write_series(tmp_path / "ct" / "a", "A", datetime(2150, 1, 2))
    write_series(tmp_path / "ct" / "b", "B", datetime(2150, 1, 2))
    first, volumes, _ = _ingest(tmp_path / "ct", tmp_path, {"A": "2150-02-01", "B": "2150-02-01"})
    write_series(tmp_path / "ct" / "b2", "B", datetime(2150, 1, 9))  # a newer series for B
    second, again, _ = _ingest(tmp_path / "ct", tmp_path / "second", {"A": "2150-02-01", "B": "2150-02-01"},
                               previous=tmp_path / "out")  # fmt: skip
    assert (first["volumes_decoded"], second["volumes_decoded"], second["volumes_reused"]) == (2, 1, 1)
    np.testing.assert_array_equal(again[0], volumes[0])
