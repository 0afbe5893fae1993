"""The waveform kind on a real recording: pydicom's bundled 12-lead ECG (waveform_ecg.dcm, 10 s at 1000 Hz,
acquired 2013-01-25), not one our own demo writer made."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
from clinfuse.kinds.waveform import WaveformKind
from pydicom.data import get_testdata_file

REAL_ECG = Path(get_testdata_file("waveform_ecg.dcm"))


def test_a_real_dicom_12_lead_ecg_is_ingested_whole_and_measured_plausibly(ingest, folder_cache, tmp_path: Path
                                                                          ) -> None:  # fmt: skip
    folder = tmp_path / "ecg"
    folder.mkdir()
    shutil.copy(REAL_ECG, folder / "ecg.dcm")
    patient = str(pydicom.dcmread(REAL_ECG).PatientID)  # the index time (2150) lies after the 2013 recording

    output = ingest(folder, [patient], tmp_path / "out")
    assert output.present_ids == [patient] and output.report["dicom_ecg_objects"] == 1
    cache = folder_cache(tmp_path / "out")
    recording = cache.json("ecg", "recordings")["rows"][0]
    assert recording["format"] == "dicom" and recording["original_rate"] == 1000 and recording["leads_missing"] == []
    signal = np.asarray(cache.array("ecg", "signals")[0])
    assert signal.shape == (12, 1000) and np.isfinite(signal).all()
    # millivolts: every lead moves, and QRS amplitudes sit in the physiological 0.2-5 mV range
    assert (np.ptp(signal, axis=1) > 0.2).all() and (np.ptp(signal, axis=1) < 5).all()

    block = WaveformKind().baseline_features(cache, "ecg", embed_dim=32)
    features = dict(zip(block.names, block.values(np.array([0]), np.zeros((1, 32)))[0], strict=True))
    assert 40 <= features["heart_rate"] <= 150, features["heart_rate"]
    assert all(abs(features[f"{lead}:st_level"]) < 0.5 for lead in ("I", "II", "V1", "V2", "V3", "V4"))
