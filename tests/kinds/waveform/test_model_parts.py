"""Reader, encoder, integrated-gradient attribution, baseline features and the dashboard figure of the ECG kind."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
import torch
from clinfuse.kinds.waveform import WaveformKind
from clinfuse.kinds.waveform.section import ecg_figure
from clinfuse.models.encoders.registry import EncoderSpec
from clinfuse.models.fusion import ModalityBranch
from clinfuse.platform.demo.ecg import synthesize, write_wfdb

INDEX_TIME = datetime(2150, 6, 1, 12, 0)  # the cohort index time of conftest.run_ingest


@pytest.fixture
def folder(tmp_path, ingest):
    """Three ingested ECGs with ST elevation 0, 0.15 and 0.3 mV."""
    root = tmp_path / "ecg"
    time = INDEX_TIME - timedelta(hours=1)
    lines = ["subject_id,study_id,file_name,ecg_time,path"]
    for i, st in enumerate([0.0, 0.15, 0.3]):
        signal, _ = synthesize(np.random.default_rng(i), st)
        write_wfdb(signal, root / f"r{i}", time)
        lines.append(f"{700 + i},{i},{i},{time:%Y-%m-%d %H:%M:%S},r{i}")
    (root / "record_list.csv").write_text("\n".join(lines) + "\n")
    ingest(root, ["700", "701", "702"], tmp_path / "out")
    return tmp_path / "out"


def test_reader_gives_the_stored_signal_and_zeros_when_absent(folder, folder_cache):
    read, dims = WaveformKind().reader(folder_cache(folder), "ecg")
    assert dims == {"leads": 12, "samples": 1000}
    assert read(1)["signal"].dtype == np.float32 and read(1)["signal"].flags.writeable
    np.testing.assert_array_equal(read(1)["signal"], np.load(folder / "signals.npy")[1])
    assert not read(-1)["signal"].any() and read(-1)["signal"].shape == (12, 1000)


@pytest.mark.parametrize(("architecture", "most_params"), [("resnet1d_small", 150_000), ("resnet1d", 2_000_000)])
def test_encoder_forward_and_backward(architecture, most_params):
    spec = EncoderSpec("waveform", architecture, 16, {"leads": 12, "samples": 1000})
    encoder = WaveformKind().build_encoder(spec)
    assert sum(p.numel() for p in encoder.parameters()) < most_params
    signal = torch.randn(4, 12, 1000, requires_grad=True)
    embedding = encoder({"signal": signal})
    assert embedding.shape == (4, 16)
    embedding.sum().backward()
    assert signal.grad is not None and torch.isfinite(signal.grad).all() and signal.grad.abs().sum() > 0


def test_attribution_is_a_finite_lead_by_sample_map_with_named_windows(folder, folder_cache):
    kind = WaveformKind()
    cache = folder_cache(folder)
    read, dims = kind.reader(cache, "ecg")
    torch.manual_seed(0)
    branch = ModalityBranch(kind.build_encoder(EncoderSpec("waveform", "resnet1d_small", 8, dims)), 8).eval()
    context = kind.attribution_context(cache, "ecg", None)
    context.top_k = 5
    attribution = kind.attribute(branch, {"signal": torch.from_numpy(read(2)["signal"])[None]}, context)
    assert attribution.kind == "waveform"
    assert attribution.heatmap.shape == (12, 1000) and attribution.heatmap.dtype == np.float32
    assert np.isfinite(attribution.heatmap).all() and np.abs(attribution.heatmap).max() == pytest.approx(1.0)
    assert len(attribution.top) == 5 and attribution.detail == {"sampling_rate": 100, "leads": context.leads,
                                                                 "window_s": 0.2}  # fmt: skip
    first = attribution.top[0]
    assert first["name"] == f"{first['lead']} {first['start_s']:.2f}-{first['end_s']:.2f} s"
    assert abs(first["value"]) >= abs(attribution.top[-1]["value"])


def test_baseline_features_measure_the_planted_st_elevation(folder, folder_cache):
    block = WaveformKind().baseline_features(folder_cache(folder), "ecg", embed_dim=8)
    assert len(block.names) == 12 * 4 + 1 and "V2:st_level" in block.names and block.names[-1] == "heart_rate"
    values = block.values(np.array([2, 0, 1]), np.zeros((3, 8), np.float32))
    assert values.shape == (3, len(block.names))
    st = values[:, block.names.index("V3:st_level")]
    np.testing.assert_allclose(st, [0.3, 0.0, 0.15], atol=0.06)
    assert np.all((values[:, -1] > 50) & (values[:, -1] < 100))  # heart rates of 55-95 per minute were drawn


def test_dashboard_figure_draws_every_lead_and_marks_strong_attribution(folder):
    signal = np.load(folder / "signals.npy")[2]
    heat = np.zeros_like(signal)
    heat[7, 300:320] = 1.0
    figure = ecg_figure(signal, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"], 100, heat)
    lines = [t for t in figure.data if t.mode == "lines"]
    markers = [t for t in figure.data if t.mode == "markers"]
    assert len(lines) == 12 and len(markers) == 12
    assert len(markers[7].x) > 0 and all(len(m.x) == 0 for i, m in enumerate(markers) if i != 7)
    assert len(ecg_figure(signal, ["I"] * 12, 100, None).data) == 12
