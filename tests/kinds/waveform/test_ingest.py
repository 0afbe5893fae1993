"""Ingest of ECG recordings: selection before the index time, WFDB = DICOM, filtering keeps ST, failures counted."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from clinfuse.kinds.waveform.baseline import ecg_features, feature_names
from clinfuse.kinds.waveform.config import STANDARD_LEADS
from clinfuse.platform.demo.ecg import synthesize, write_dicom, write_wfdb

INDEX_TIME = datetime(2150, 6, 1, 12, 0)  # the cohort index time of conftest.run_ingest
V2_ST = feature_names(list(STANDARD_LEADS)).index("V2:st_level")


def _record_list(root: Path, rows: list[tuple[str, str, datetime]]) -> None:
    lines = ["subject_id,study_id,file_name,ecg_time,path"]
    lines += [f"{pid},{i},{i},{time:%Y-%m-%d %H:%M:%S},{path}" for i, (pid, path, time) in enumerate(rows)]
    (root / "record_list.csv").write_text("\n".join(lines) + "\n")


def _wfdb(root: Path, relative: str, st_mv: float, time: datetime, seed: int) -> str:
    signal, _ = synthesize(np.random.default_rng(seed), st_mv)
    write_wfdb(signal, root / relative, time)
    return relative


def test_latest_recording_before_the_index_time_is_used_and_later_ones_never(tmp_path, ingest):
    root = tmp_path / "ecg"
    before, recent, after = INDEX_TIME - timedelta(days=300), INDEX_TIME - timedelta(hours=5), INDEX_TIME
    rows = [("101", _wfdb(root, "files/p101/s1/1", 0.0, before, 1), before),
            ("101", _wfdb(root, "files/p101/s2/2", 0.3, recent, 2), recent),
            ("101", _wfdb(root, "files/p101/s3/3", 0.0, after, 3), after),  # at the index time: excluded
            ("101", _wfdb(root, "files/p101/s4/4", 0.0, after + timedelta(days=2), 4), after + timedelta(days=2)),
            ("102", _wfdb(root, "files/p102/s5/5", 0.0, after + timedelta(days=1), 5), after + timedelta(days=1))]
    _record_list(root, rows)
    result = ingest(root, ["101", "102", "103"], tmp_path / "out")
    assert result.present_ids == ["101"]
    assert result.report["recordings_at_or_after_index_excluded"] == 3
    assert result.report["recordings_before_index"] == 2
    index = json.loads((tmp_path / "out" / "recordings.json").read_text())
    assert index["rows"][0]["days_before_index"] == pytest.approx(5 / 24, abs=1e-3)
    signals = np.load(tmp_path / "out" / "signals.npy")
    assert signals.shape == (1, 12, 1000) and signals.dtype == np.float32
    assert ecg_features(signals, 100)[0, V2_ST] > 0.2  # the recent ECG (0.3 mV ST), not the normal older one


def test_wfdb_and_dicom_of_one_signal_ingest_to_the_same_array(tmp_path, ingest):
    root = tmp_path / "ecg"
    signal, _ = synthesize(np.random.default_rng(7), 0.2)
    time = INDEX_TIME - timedelta(hours=2)
    write_wfdb(signal, root / "files/p201/s1/1", time)
    write_dicom(signal, root / "dicom" / "a.dcm", "202", time, np.random.default_rng(0))
    _record_list(root, [("201", "files/p201/s1/1", time)])
    result = ingest(root, ["201", "202"], tmp_path / "out")
    assert result.present_ids == ["201", "202"]
    assert result.report["formats"] == {"wfdb": 1, "dicom": 1}
    wfdb_array, dicom_array = np.load(tmp_path / "out" / "signals.npy")
    assert np.abs(wfdb_array).max() > 0.5
    np.testing.assert_allclose(wfdb_array, dicom_array, atol=0.01)  # both quantised to 5 uV


def test_filtering_and_resampling_keep_a_planted_st_offset_measurable(tmp_path, ingest):
    root = tmp_path / "ecg"
    time = INDEX_TIME - timedelta(hours=1)
    rows = [(str(300 + i), _wfdb(root, f"files/p{i}/s{i}/{i}", st, time, seed=i), time)
            for i, st in enumerate([0.0, 0.0, 0.3, 0.3])]  # fmt: skip
    _record_list(root, rows)
    for rate in (100, 250):
        out = tmp_path / f"out{rate}"
        ingest(root, [r[0] for r in rows], out, sampling_rate=rate)
        st = ecg_features(np.load(out / "signals.npy"), rate)[:, V2_ST]
        assert np.all(np.abs(st[:2]) < 0.05), st
        assert np.all(np.abs(st[2:] - 0.3) < 0.1), st  # the planted 0.3 mV survives the 0.5-40 Hz band-pass


def test_corrupt_files_are_counted_and_an_earlier_recording_is_used(tmp_path, ingest):
    root = tmp_path / "ecg"
    old, new = INDEX_TIME - timedelta(days=10), INDEX_TIME - timedelta(hours=3)
    rows = [("401", _wfdb(root, "files/a/1", 0.0, old, 1), old), ("401", _wfdb(root, "files/a/2", 0.0, new, 2), new),
            ("402", _wfdb(root, "files/b/3", 0.0, new, 3), new)]
    _record_list(root, rows)
    (root / "files/a/2.dat").write_bytes(b"\x00\x01" * 10)  # truncated
    (root / "files/b/3.hea").write_text("garbage header\n")
    (root / "broken.dcm").write_bytes(b"not a dicom file at all")
    result = ingest(root, ["401", "402"], tmp_path / "out")
    assert result.present_ids == ["401"]
    assert json.loads((tmp_path / "out" / "recordings.json").read_text())["rows"][0]["days_before_index"] == 10
    assert sum(result.report["failed"].values()) == 2
    assert all(reason.startswith("unreadable wfdb") for reason in result.report["failed"])
    assert result.report["skipped"] == {"not a DICOM file": 1}
    assert set(result.patient_issues) == {"402"}
    text = json.dumps(result.report) + (tmp_path / "out" / "recordings.json").read_text()
    assert "401" not in text and "402" not in text and str(root) not in text  # counts only: no ids, no paths


def test_scoring_applies_the_frozen_alignment_not_the_sites_settings(tmp_path, ingest):
    root = tmp_path / "ecg"
    time = INDEX_TIME - timedelta(hours=1)
    _record_list(root, [("501", _wfdb(root, "files/c/1", 0.1, time, 1), time)])
    trained = ingest(root, ["501"], tmp_path / "train", sampling_rate=250, duration_s=6, leads=("II", "V2", "V7"))
    assert trained.report["leads_missing"] == {"V7": 1}
    scored = ingest(root, ["501"], tmp_path / "score", alignment=trained.alignment)  # the site's config: defaults
    signals = np.load(tmp_path / "score" / "signals.npy")
    assert signals.shape == (1, 3, 1500) and not signals[0, 2].any()  # V7 absent: zeros
    np.testing.assert_array_equal(signals, np.load(tmp_path / "train" / "signals.npy"))
    assert scored.report["settings_from"] == "model"
    assert set(scored.report["settings_differing_from_config"]) == {"sampling_rate", "samples", "leads"}
    assert json.loads((tmp_path / "score" / "alignment.json").read_text()) == trained.alignment


def test_manifest_links_wfdb_records_and_dicom_units_are_converted(tmp_path, ingest):
    root = tmp_path / "ecg"
    time = INDEX_TIME - timedelta(hours=1)
    signal, _ = synthesize(np.random.default_rng(3), 0.0)
    write_wfdb(signal, root / "x" / "rec", time)
    write_dicom(signal, root / "d.dcm", "602", time, np.random.default_rng(1), sensitivity_uv=2.5)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"patient_id,path,time\n601,x/rec.hea,{time:%Y-%m-%dT%H:%M:%S}\n")
    result = ingest(root, ["601", "602"], tmp_path / "out", manifest=manifest)
    assert result.present_ids == ["601", "602"]
    a, b = np.load(tmp_path / "out" / "signals.npy")
    np.testing.assert_allclose(a, b, atol=0.01)
