"""Decompression bombs: a DICOM header's claimed size is checked against a configurable limit before any decode.

An RLE object that claims 65535 x 65535 pixels used to be decoded first (9.6 GB of memory, 54 s) and only then
reported as failed. Now such a file is a counted per-file failure with its reason, and the rest of the cohort
ingests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file


def _image(source: str, patient: str, target: Path, **overrides: object) -> None:
    """One of pydicom's shipped images, relinked to `patient` and dated before the cohort's index time."""
    ds = pydicom.dcmread(get_testdata_file(source))
    ds.PatientID = patient
    ds.AcquisitionDate = "20190101"
    for keyword, value in overrides.items():
        setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


def _cohort(root: Path, dicom_options: str = "") -> Path:
    splits = ["train", "train", "train", "train", "val", "val", "test", "test"]  # P3..P7 have no images
    rows = "\n".join(f"P{i},{i % 2},2020-01-01,{split}" for i, split in enumerate(splits))
    (root / "cohort.csv").write_text(f"patient_id,label,index_time,split\n{rows}\n")
    _image("MR_small_RLE.dcm", "P0", root / "imaging" / "p0.dcm")
    _image("CT_small.dcm", "P1", root / "imaging" / "p1.dcm")
    # the probe of the issue: the RLE stream of a 64 x 64 slice under a header claiming 65535 x 65535 pixels
    _image("MR_small_RLE.dcm", "P2", root / "imaging" / "bomb.dcm", Rows=65535, Columns=65535)
    config = root / "cohort.yaml"
    config.write_text(
        "name: bombs\ncohort: {path: cohort.csv, split: split}\n"
        f"modalities:\n  - {{name: imaging, kind: dicom, path: imaging, image_size: 32{dicom_options}}}\n"
    )
    return config


@pytest.fixture
def no_decode_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding an object larger than 64 MiB fails the test at once (on unfixed code it would take minutes)."""
    decode = pydicom.Dataset.pixel_array

    def guarded(ds: pydicom.Dataset):
        claimed = int(ds.Rows) * int(ds.Columns) * 2
        assert claimed <= 64 * 2**20, f"decoded an object claiming {claimed} bytes"
        return decode.fget(ds)

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(guarded))


def _imaging_report(cache: Path) -> dict:
    return json.loads((cache / "ingest_report.json").read_text())["modalities"]["imaging"]


@pytest.mark.usefixtures("no_decode_over")
def test_a_header_claiming_a_huge_image_fails_that_file_before_any_decode(probe, tmp_path: Path) -> None:
    config = _cohort(tmp_path)
    cache = tmp_path / "cache"
    outcome = probe.run_main(["ingest", "--config", str(config), "--out", str(cache)])
    probe.assert_ok_or_user_error(outcome)
    assert outcome.code == 0, outcome.stderr
    report = _imaging_report(cache)
    assert report["patients_present"] == 2, "the rest of the cohort ingests"
    assert report["failed"]["count"] == 1
    [failed] = report["failed"]["files"]
    assert failed["path"] == "bomb.dcm"
    assert "65535 x 65535" in failed["reason"] and "max_decoded_mib" in failed["reason"]
    issues = json.loads((cache / "ingest_report.json").read_text())
    assert issues["presence_patterns"] == {"imaging": 2, "none": 6}


def test_the_limit_is_configurable(probe, tmp_path: Path) -> None:
    # 0.02 MiB admits the 64 x 64 slice (8 KiB decoded) and refuses the 128 x 128 CT (32 KiB decoded)
    config = _cohort(tmp_path, dicom_options=", max_decoded_mib: 0.02")
    cache = tmp_path / "cache"
    outcome = probe.run_main(["ingest", "--config", str(config), "--out", str(cache)])
    assert outcome.code == 0, outcome.stderr
    report = _imaging_report(cache)
    assert report["patients_present"] == 1
    assert sorted(f["path"] for f in report["failed"]["files"]) == ["bomb.dcm", "p1.dcm"]


def test_a_non_positive_limit_is_a_config_error(probe, tmp_path: Path) -> None:
    config = _cohort(tmp_path, dicom_options=", max_decoded_mib: 0")
    outcome = probe.run_main(["ingest", "--config", str(config), "--out", str(tmp_path / "cache")])
    probe.assert_user_error(outcome, "max_decoded_mib")
    assert not (tmp_path / "cache").exists()
