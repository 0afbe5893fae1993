"""Interpretable ECG features for the XGBoost baseline, from the stored (filtered, mV) signal.

Per lead: standard deviation, maximum, minimum and the ST level (mean voltage 60-120 ms after each QRS minus the
PR-segment baseline 90-50 ms before it, averaged over beats); one heart rate. QRS complexes are found on the
summed absolute slope of all leads with scipy's find_peaks, which is a few hundred microseconds per record;
neurokit2's ecg_peaks is a per-lead, per-record pipeline about a hundred times slower, and scoring asks for
hundreds of patients at a time. A record with fewer than two QRS complexes gets NaN for the ST levels and heart
rate (XGBoost treats them as missing).
"""

from __future__ import annotations

import numpy as np

STATS = ("std", "max", "min", "st_level")
ST_WINDOW_S = (0.06, 0.12)  # after the QRS fiducial (the steepest slope, near the R peak)
BASELINE_WINDOW_S = (-0.09, -0.05)  # PR segment, before the QRS
MIN_RR_S = 0.3  # 200 beats per minute at most


def feature_names(leads: list[str]) -> list[str]:
    return [f"{lead}:{stat}" for lead in leads for stat in STATS] + ["heart_rate"]


def ecg_features(signals: np.ndarray, rate: int) -> np.ndarray:
    """(n, leads, samples) -> (n, leads x len(STATS) + 1) in the order of `feature_names`."""
    from scipy.signal import find_peaks

    n, leads, samples = signals.shape
    x = np.asarray(signals, np.float32)
    per_lead = np.stack([x.std(axis=2), x.max(axis=2), x.min(axis=2), np.full((n, leads), np.nan, np.float32)],
                        axis=2)  # fmt: skip
    heart_rate = np.full(n, np.nan, np.float32)
    slope = np.abs(np.diff(x, axis=2)).sum(axis=1)  # (n, samples - 1)
    st = np.arange(round(ST_WINDOW_S[0] * rate), round(ST_WINDOW_S[1] * rate) + 1)
    base = np.arange(round(BASELINE_WINDOW_S[0] * rate), round(BASELINE_WINDOW_S[1] * rate) + 1)
    for i in range(n):
        if not slope[i].any():
            continue
        peaks, _ = find_peaks(slope[i], height=0.4 * np.quantile(slope[i], 0.99), distance=round(MIN_RR_S * rate))
        peaks = peaks[(peaks + base[0] >= 0) & (peaks + st[-1] < samples)]
        if len(peaks) < 2:
            continue
        st_level = x[i][:, peaks[:, None] + st].mean(axis=(1, 2)) - x[i][:, peaks[:, None] + base].mean(axis=(1, 2))
        per_lead[i, :, 3] = st_level
        heart_rate[i] = 60.0 * rate / float(np.median(np.diff(peaks)))
    return np.concatenate([per_lead.reshape(n, -1), heart_rate[:, None]], axis=1)
