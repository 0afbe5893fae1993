"""One recording in millivolts -> the fixed (leads, samples) array the model reads.

Resampling: scipy's polyphase `resample_poly` (its anti-aliasing low-pass is built in). Band-pass: a 4th-order
Butterworth run forwards and backwards (`sosfiltfilt`) over all leads at once. Zero phase matters here: a
one-way high-pass shifts and tilts the ST segment, while a bidirectional one at <= 0.67 Hz keeps it (the
AHA/ACCF/HRS 2007 recommendation for ECG filtering). neurokit2's `ecg_clean` was not used: it cleans one lead
at a time with its own fixed filter design, and the band here must be the configured, frozen one.

Amplitudes stay in millivolts, clipped to +-CLIP_MV, with no per-record z-score: ST elevation is an absolute
voltage (>= 0.1-0.2 mV by the usual criteria); dividing each record by its own spread would make the ST level
relative to the QRS size and let a tall-QRS record hide an elevation. ECG voltages are already of order 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

CLIP_MV = 5.0  # beyond any physiological ECG voltage: saturation and electrode artefacts are capped
FILTER_ORDER = 4


@dataclass(frozen=True)
class Settings:
    """The frozen alignment: what every recording is turned into (the model's settings apply when scoring)."""

    sampling_rate: int
    samples: int
    leads: tuple[str, ...]
    band_hz: tuple[float, float]
    clip_mv: float = CLIP_MV
    units: str = "mV"

    def to_json(self) -> dict:
        return {**asdict(self), "leads": list(self.leads), "band_hz": list(self.band_hz)}

    @classmethod
    def from_json(cls, data: dict) -> Settings:
        low, high = data["band_hz"]
        return cls(int(data["sampling_rate"]), int(data["samples"]), tuple(data["leads"]), (float(low), float(high)),
                   float(data["clip_mv"]), str(data["units"]))  # fmt: skip


def lead_key(name: str) -> str:
    """Lead names compared case-insensitively, without a 'Lead ' prefix, a parenthetical qualifier, spaces or dashes
    ('Lead aVR' = 'AVR', 'Lead I (Einthoven)' = 'I')."""
    key = str(name).split("(")[0].strip().casefold()
    key = key.removeprefix("lead").strip()
    return key.replace(" ", "").replace("-", "").replace("_", "")


def prepare(signal: np.ndarray, rate: float, names: list[str], settings: Settings) -> tuple[np.ndarray, list[str]]:
    """(len(settings.leads), settings.samples) float32 in mV, and the names of the leads the recording lacked
    (kept as zeros). Raises ValueError when no lead matches or the recording is too short to filter."""
    from scipy.signal import resample_poly, sosfiltfilt

    positions = {}
    for i, name in enumerate(names):
        positions.setdefault(lead_key(name), i)
    found = [(row, positions[lead_key(lead)]) for row, lead in enumerate(settings.leads) if lead_key(lead) in positions]
    missing = [lead for lead in settings.leads if lead_key(lead) not in positions]
    if not found:
        raise ValueError("none of the configured leads is in the recording")
    if rate <= 0:
        raise ValueError("the recording's sampling rate is not positive")
    x = np.nan_to_num(np.asarray(signal, np.float64)[[source for _, source in found]], nan=0.0, posinf=0.0,
                      neginf=0.0)  # fmt: skip
    ratio = Fraction(settings.sampling_rate / rate).limit_denominator(1000)
    if ratio != 1:
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1,
                          window=_antialias(ratio.numerator, ratio.denominator))  # fmt: skip
    sos = _band_pass(settings.band_hz, settings.sampling_rate)
    if x.shape[-1] <= 3 * (2 * len(sos) + 1):  # sosfiltfilt's edge padding needs this many samples
        raise ValueError("recording too short to filter")
    x = sosfiltfilt(sos, x, axis=-1)
    out = np.zeros((len(settings.leads), settings.samples), np.float32)
    kept = min(settings.samples, x.shape[-1])
    out[[row for row, _ in found], :kept] = np.clip(x[:, :kept], -settings.clip_mv, settings.clip_mv)
    return out, missing


@lru_cache(maxsize=16)
def _antialias(up: int, down: int) -> np.ndarray:
    """resample_poly's own default low-pass (Kaiser, beta 5), designed once per rate pair instead of per record."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


@lru_cache(maxsize=16)
def _band_pass(band_hz: tuple[float, float], rate: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(FILTER_ORDER, band_hz, btype="bandpass", fs=rate, output="sos")
