"""Synthetic 12-lead ECGs with a planted ST elevation, written as MIMIC-IV-ECG WFDB records and DICOM objects.

Each beat is a sum of Gaussian P, Q, R, S and T waves per lead (the morphology model of ECGSYN, McSharry et al.
2003, in the time domain), with per-patient heart rate, axis and amplitudes, beat-to-beat variability, baseline
wander, mains hum and noise. Only I, II and V1-V6 are drawn; III, aVR, aVL and aVF follow from I and II by
Einthoven's and Goldberger's relations, as on a real machine. neurokit2's `ecg_simulate(method="multileads")`
was not used: it takes 1.4 s per record here (47 min for 2,000 patients) and gives no handle on the ST segment.

The planted abnormality is ST-segment elevation in V1-V4 growing with the patient's latent severity. Some
patients also have an earlier, normal ECG and one after the index time with a stronger elevation: a leakage
trap that ingest must never read. WFDB records are written directly (format 16 .dat plus a .hea) because
wfdb.wrsamp spends 20 ms per record in header validation, most of the demo's time; tests read them back with
wfdb.rdrecord.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np

RATE_HZ = 500
DURATION_S = 10.0
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
ST_LEADS: tuple[str, ...] = ("V1", "V2", "V3", "V4")
ST_LEAD_SHARE = np.array([0.7, 1.0, 1.0, 0.8])  # the elevation is largest in V2-V3 (anteroseptal pattern)
ST_MV_PER_SEVERITY = 0.15
ST_MAX_MV = 0.3
ST_AFTER_INDEX_MV = 0.45  # the follow-up ECG's stronger elevation (leakage trap)
J_POINT_S = 0.04  # J point after the R peak; the ST segment is measured from J to J + 80 ms
ST_WINDOW_S = 0.08
PRIOR_RATE = 0.3  # share of patients with an earlier ECG
AFTER_INDEX_RATE = 0.2  # share with an ECG after the index time
ADC_GAIN = 200.0  # digital units per mV (5 uV resolution), as in MIMIC-IV-ECG
TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"

# Per independent lead (I, II, V1-V6), amplitude (mV) of P, Q, R, S, T.
_AMPLITUDES = np.array([
    [0.10, -0.05, 0.70, -0.10, 0.20],
    [0.15, -0.08, 1.10, -0.20, 0.30],
    [0.08, 0.00, 0.25, -0.90, 0.10],
    [0.08, 0.00, 0.50, -1.20, 0.35],
    [0.08, -0.02, 0.80, -0.70, 0.40],
    [0.10, -0.05, 1.30, -0.40, 0.40],
    [0.10, -0.08, 1.20, -0.20, 0.30],
    [0.10, -0.08, 0.90, -0.10, 0.25],
])  # fmt: skip
_CENTRES_S = np.array([-0.16, -0.025, 0.0, 0.03, 0.0])  # T's centre is set per patient from the heart rate
_WIDTHS_S = np.array([0.025, 0.008, 0.010, 0.010, 0.0])  # T's width too
_TEMPLATE_S = (-0.35, 0.65)  # one beat's window around its R peak
# SCP-ECG codes of the 12 leads, as DICOM's ChannelSourceSequence names them
_SCPECG = {"I": "5.6.3-9-1", "II": "5.6.3-9-2", "V1": "5.6.3-9-3", "V2": "5.6.3-9-4", "V3": "5.6.3-9-5",
           "V4": "5.6.3-9-6", "V5": "5.6.3-9-7", "V6": "5.6.3-9-8", "III": "5.6.3-9-61", "aVR": "5.6.3-9-62",
           "aVL": "5.6.3-9-63", "aVF": "5.6.3-9-64"}  # fmt: skip


class EcgSubject(Protocol):
    patient_id: str
    index_time: datetime
    severity: float


def st_amplitude(severity: float) -> float:
    """The planted ST elevation (mV, largest lead) of a patient's latest ECG before the index time."""
    return float(min(ST_MAX_MV, ST_MV_PER_SEVERITY * max(0.0, severity)))


def synthesize(rng: np.random.Generator, st_mv: float) -> tuple[np.ndarray, list[list[float]]]:
    """One 12-lead ECG (LEADS x samples, mV) with `st_mv` ST elevation in ST_LEADS, and its ST windows (s)."""
    n = round(RATE_HZ * DURATION_S)
    rr = 60.0 / rng.uniform(55, 95)
    amplitudes = _AMPLITUDES * rng.uniform(0.8, 1.2, size=(8, 1)) * rng.uniform(0.9, 1.1, size=(1, 5))
    centres, widths = _CENTRES_S.copy(), _WIDTHS_S.copy()
    centres[4] = 0.28 * np.sqrt(rr) * rng.uniform(0.95, 1.05)  # T peak follows the QT interval's rate dependence
    widths[4] = 0.05 * np.sqrt(rr)
    t = np.arange(round(_TEMPLATE_S[0] * RATE_HZ), round(_TEMPLATE_S[1] * RATE_HZ)) / RATE_HZ
    waves = np.exp(-0.5 * ((t[None, :] - centres[:, None]) / widths[:, None]) ** 2)  # (5, template)
    template = amplitudes @ waves  # (8, template)
    if st_mv > 0:  # a plateau from the J point merging into the T wave
        rise = 1.0 / (1.0 + np.exp(-(t - J_POINT_S) / 0.004))
        fall = 1.0 / (1.0 + np.exp(-(centres[4] - t) / 0.02))
        template[2:6] += st_mv * ST_LEAD_SHARE[:, None] * rise * fall
    beats = np.cumsum(rr * (1 + 0.03 * rng.standard_normal(int(DURATION_S / rr) + 3))) - rng.uniform(0, rr)
    beats = beats[(beats > 0) & (beats < DURATION_S)]
    breathing = 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 0.33) * beats + rng.uniform(0, 2 * np.pi))
    independent = np.zeros((8, n))
    offset = round(_TEMPLATE_S[0] * RATE_HZ)
    for beat, scale in zip(beats, breathing, strict=True):
        start = round(beat * RATE_HZ) + offset
        lo, hi = max(0, start), min(n, start + len(t))
        independent[:, lo:hi] += scale * template[:, lo - start : hi - start]
    lead_i, lead_ii = independent[0], independent[1]
    limb = np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2,
                     lead_ii - lead_i / 2])  # fmt: skip
    signal = np.concatenate([limb, independent[2:]])
    seconds = np.arange(n) / RATE_HZ
    wander = rng.uniform(0.03, 0.15, (12, 1)) * np.sin(2 * np.pi * rng.uniform(0.1, 0.35, (12, 1)) * seconds
                                                        + rng.uniform(0, 2 * np.pi, (12, 1)))  # fmt: skip
    hum = rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * 50.0 * seconds + rng.uniform(0, 2 * np.pi))
    signal = signal + wander + hum + rng.normal(0, rng.uniform(0.005, 0.02), signal.shape)
    segments = [[round(b + J_POINT_S, 3), round(b + J_POINT_S + ST_WINDOW_S, 3)] for b in beats
                if b + J_POINT_S + ST_WINDOW_S < DURATION_S]  # fmt: skip
    return signal, segments


def write_ecgs(subjects: list[EcgSubject], root: Path, rng: np.random.Generator, dicom_share: float = 0.3
               ) -> tuple[dict[str, dict], dict]:  # fmt: skip
    """Write every subject's ECGs under `root`; returns the per-patient truth of the ECG ingest must pick
    (the latest before the index time) and the global planted facts."""
    root.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    listing: list[dict] = []
    dicom_numbers = iter(rng.permutation(4 * len(subjects) + 1) + 1)  # file names carry no patient identity
    studies = iter(40_000_000 + rng.choice(50_000_000, size=4 * len(subjects) + 1, replace=False))
    counts = {"wfdb": 0, "dicom": 0, "prior": 0, "after_index": 0}
    for subject in subjects:
        fmt = "dicom" if rng.random() < dicom_share else "wfdb"
        plans = [(subject.index_time - timedelta(hours=float(rng.uniform(0.5, 72))), st_amplitude(subject.severity),
                  True)]  # fmt: skip
        if rng.random() < PRIOR_RATE:
            plans.append((subject.index_time - timedelta(days=float(rng.uniform(100, 1000))), 0.0, False))
            counts["prior"] += 1
        if rng.random() < AFTER_INDEX_RATE:  # after the index time: must never be used (leakage trap)
            plans.append((subject.index_time + timedelta(days=float(rng.uniform(0.5, 5))), ST_AFTER_INDEX_MV, False))
            counts["after_index"] += 1
        for recorded_at, st_mv, used in plans:
            signal, segments = synthesize(rng, st_mv)
            recorded_at = recorded_at.replace(microsecond=0)
            counts[fmt] += 1
            if fmt == "wfdb":
                study = int(next(studies))
                relative = f"files/p{subject.patient_id[:4]}/p{subject.patient_id}/s{study}/{study}"
                write_wfdb(signal, root / relative, recorded_at)
                listing.append({"subject_id": subject.patient_id, "study_id": study, "file_name": study,
                                "ecg_time": recorded_at.isoformat(sep=" "), "path": relative})  # fmt: skip
            else:
                write_dicom(signal, root / "dicom" / f"ecg_{next(dicom_numbers):06d}.dcm", subject.patient_id,
                            recorded_at, rng)  # fmt: skip
            if used:
                truth[subject.patient_id] = {
                    "abnormality": "st_elevation" if st_mv > 0 else "none", "amplitude_mv": round(st_mv, 4),
                    "leads": list(ST_LEADS) if st_mv > 0 else [], "segments_s": segments if st_mv > 0 else [],
                    "format": fmt, "recorded_at": recorded_at.isoformat(sep=" "),
                }  # fmt: skip
    with (root / "record_list.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["subject_id", "study_id", "file_name", "ecg_time", "path"])
        writer.writeheader()
        writer.writerows(listing)
    planted = {
        "abnormality": "st_elevation", "leads": list(ST_LEADS), "lead_share": ST_LEAD_SHARE.tolist(),
        "amplitude_mv": f"min({ST_MAX_MV}, {ST_MV_PER_SEVERITY} * max(0, severity))",
        "st_window_after_r_s": [J_POINT_S, J_POINT_S + ST_WINDOW_S], "sampling_rate_hz": RATE_HZ,
        "duration_s": DURATION_S, "after_index_amplitude_mv": ST_AFTER_INDEX_MV,
        "recordings": {k: v for k, v in counts.items() if k in ("wfdb", "dicom")},
        "patients_with_prior_ecg": counts["prior"], "patients_with_ecg_after_index": counts["after_index"],
    }  # fmt: skip
    return truth, planted


def write_wfdb(signal: np.ndarray, record: Path, recorded_at: datetime) -> None:
    """A WFDB record in format 16 (interleaved little-endian int16, ADC_GAIN units per mV) and its header."""
    record.parent.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(signal * ADC_GAIN), -32767, 32767).astype("<i2")
    digital.T.tofile(record.with_suffix(".dat"))
    checksums = digital.astype(np.int64).sum(axis=1) % 65536
    lines = [f"{record.name} {len(LEADS)} {RATE_HZ} {digital.shape[1]} {recorded_at:%H:%M:%S} {recorded_at:%d/%m/%Y}"]
    lines += [f"{record.name}.dat 16 {ADC_GAIN:g}(0)/mV 16 0 {digital[j, 0]} {checksums[j]} 0 {lead}"
              for j, lead in enumerate(LEADS)]  # fmt: skip
    record.with_suffix(".hea").write_text("\n".join(lines) + "\n")


def write_dicom(signal: np.ndarray, path: Path, patient_id: str, recorded_at: datetime, rng: np.random.Generator,
                sensitivity_uv: float = 5.0) -> None:  # fmt: skip
    """A 12-lead ECG Waveform Storage object: one rhythm multiplex group, 16-bit signed, microvolt sensitivity."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    entropy = [str(int(v)) for v in rng.integers(0, 2**62, size=3)]
    instance = generate_uid(entropy_srcs=[*entropy, "instance"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = TWELVE_LEAD_ECG, instance, "ECG"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.PatientID, ds.PatientName = patient_id, "SYNTHETIC^PATIENT"
    ds.AcquisitionDateTime = f"{recorded_at:%Y%m%d%H%M%S}"
    ds.StudyDate = ds.ContentDate = f"{recorded_at:%Y%m%d}"
    ds.StudyTime = ds.ContentTime = f"{recorded_at:%H%M%S}"
    group = Dataset()
    group.MultiplexGroupLabel, group.WaveformOriginality = "RHYTHM", "ORIGINAL"
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = len(LEADS), signal.shape[1]
    group.SamplingFrequency = RATE_HZ
    group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
    channels = []
    for lead in LEADS:
        channel = Dataset()
        source = Dataset()
        source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = _SCPECG[lead], "SCPECG", f"Lead {lead}"
        channel.ChannelSourceSequence = Sequence([source])
        units = Dataset()
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
        channel.ChannelSensitivity = f"{sensitivity_uv:g}"
        channel.ChannelSensitivityUnitsSequence = Sequence([units])
        channel.ChannelSensitivityCorrectionFactor, channel.ChannelBaseline, channel.ChannelSampleSkew = "1", "0", "0"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = Sequence(channels)
    digital = np.clip(np.round(signal * 1000.0 / sensitivity_uv), -32767, 32767).astype("<i2")
    group.WaveformData = digital.T.tobytes()  # (samples, channels) interleaved
    ds.WaveformSequence = Sequence([group])
    ds.save_as(path, enforce_file_format=True)
