"""The demo's ECG writer: deterministic, MIMIC-IV-ECG and DICOM layouts readable by wfdb/pydicom, truth = ingest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import wfdb
from clinfuse.kinds.waveform.baseline import ecg_features, feature_names
from clinfuse.kinds.waveform.config import STANDARD_LEADS
from clinfuse.platform.demo.ecg import LEADS, ST_MAX_MV, TWELVE_LEAD_ECG, st_amplitude, write_ecgs

INDEX_TIME = datetime(2150, 6, 1, 12, 0)  # the cohort index time of conftest.run_ingest


@dataclass
class Subject:
    patient_id: str
    index_time: datetime
    severity: float


def _subjects(n: int) -> list[Subject]:
    severities = np.linspace(-1.5, 2.5, n)
    return [Subject(str(10_000_000 + 17 * i), INDEX_TIME, float(s)) for i, s in enumerate(severities)]


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_generator_state_writes_identical_files_and_truth(tmp_path):
    first = write_ecgs(_subjects(12), tmp_path / "a", np.random.default_rng(5))
    second = write_ecgs(_subjects(12), tmp_path / "b", np.random.default_rng(5))
    assert first == second
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    write_ecgs(_subjects(12), tmp_path / "c", np.random.default_rng(6))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_files_follow_the_mimic_and_dicom_layouts_and_ingest_recovers_the_truth(tmp_path, ingest):
    subjects = _subjects(30)
    truth, planted = write_ecgs(subjects, tmp_path / "ecg", np.random.default_rng(1), dicom_share=0.4)
    records = pd.read_csv(tmp_path / "ecg" / "record_list.csv", dtype=str)
    assert list(records.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert records["path"].str.fullmatch(r"files/p\d{4}/p\d{8}/s\d+/\d+").all()
    record = wfdb.rdrecord(str(tmp_path / "ecg" / records["path"].iloc[0]))
    assert record.sig_name == list(LEADS) and record.fs == 500 and record.p_signal.shape == (5000, 12)
    dicoms = sorted((tmp_path / "ecg" / "dicom").glob("*.dcm"))
    assert len(dicoms) == planted["recordings"]["dicom"] > 0
    ds = pydicom.dcmread(dicoms[0])
    assert ds.SOPClassUID == TWELVE_LEAD_ECG and ds.WaveformSequence[0].WaveformBitsAllocated == 16
    assert ds.WaveformSequence[0].WaveformSampleInterpretation == "SS"
    assert ds.waveform_array(0).shape == (5000, 12)
    assert any(str(ds.PatientID) == s.patient_id for s in subjects)

    assert planted["patients_with_ecg_after_index"] > 0  # the leakage trap is there
    assert set(truth) == {s.patient_id for s in subjects}
    for subject in subjects:
        entry = truth[subject.patient_id]
        assert entry["amplitude_mv"] == round(st_amplitude(subject.severity), 4) <= ST_MAX_MV
        assert datetime.fromisoformat(entry["recorded_at"]) < subject.index_time
        assert (entry["abnormality"] == "st_elevation") == (subject.severity > 0)
        assert all(0 <= start < end <= 10 for start, end in entry["segments_s"])

    result = ingest(tmp_path / "ecg", [s.patient_id for s in subjects], tmp_path / "out")
    assert result.present_ids == [s.patient_id for s in subjects]
    assert result.report["recordings_at_or_after_index_excluded"] == planted["patients_with_ecg_after_index"]
    features = ecg_features(np.load(tmp_path / "out" / "signals.npy"), 100)
    measured = features[:, feature_names(list(STANDARD_LEADS)).index("V2:st_level")]
    expected = np.array([truth[s.patient_id]["amplitude_mv"] for s in subjects])
    np.testing.assert_allclose(measured, expected, atol=0.06)  # the ECG before the index time, not the later one


def test_st_amplitude_grows_with_severity_and_saturates():
    assert st_amplitude(-1.0) == 0.0 == st_amplitude(0.0)
    assert 0 < st_amplitude(0.5) < st_amplitude(1.0) < st_amplitude(5.0) == ST_MAX_MV
