"""The waveform kind's config model and its conformance to the plug-in contract."""

from __future__ import annotations

import pytest
from clinfuse.kinds.waveform import WaveformKind
from clinfuse.kinds.waveform.config import STANDARD_LEADS, WaveformModality
from clinfuse.platform.kinds.conformance import check_kind
from pydantic import ValidationError


def _config(**fields: object) -> WaveformModality:
    return WaveformModality(name="ecg", path="ecgs", kind="waveform", **fields)


def test_defaults_are_twelve_leads_at_100_hz_for_ten_seconds():
    config = _config()
    assert config.leads == STANDARD_LEADS and config.samples == 1000 and config.band_hz == (0.5, 40.0)
    assert config.extra_paths() == {}
    assert set(_config(manifest="m.csv").extra_paths()) == {"manifest"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sampling_rate": 50}, "below the Nyquist frequency (25 Hz) of sampling_rate 50"),
        ({"band_hz": (40.0, 0.5)}, "0 < low < high"),
        ({"band_hz": (0.0, 40.0)}, "0 < low < high"),
        ({"leads": ("I", "ii", "II")}, "listed twice (names are case-insensitive)"),
        ({"leads": ()}, "at least 1 item"),
        ({"duration_s": 0.1}, "fewer than 16 samples"),
        ({"sampling_rate": 10}, "greater than or equal to 50"),
        ({"resolution": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(fields, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(**fields)


def test_the_kind_passes_the_static_conformance_check():
    kind = WaveformKind()
    check_kind(kind)
    assert kind.default_architectures == {"cpu": "resnet1d_small", "gpu": "resnet1d"}
