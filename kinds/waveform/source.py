"""Find ECG recordings under a folder, link them to patients and times, and read one as millivolts.

WFDB records are linked by the MIMIC-IV-ECG `record_list.csv` (subject_id, ecg_time, path) or a manifest CSV
(patient_id, path, time); DICOM waveform objects by their PatientID tag and acquisition date/time. Per-file
problems come back as reasons to count: a reason never holds a path or an exception's text, since ECG paths
(p<subject>/s<study>) and readers' messages carry patient ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.platform.errors import ClinFuseError

RECORD_LIST = "record_list.csv"  # the MIMIC-IV-ECG index of its records
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "general ECG",
}
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
_HEADER_TAGS = ["SOPClassUID", "PatientID", "AcquisitionDateTime", "ContentDate", "ContentTime", "StudyDate",
                "StudyTime"]  # fmt: skip
_MILLIVOLTS_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass(frozen=True)
class Candidate:
    """One linked recording: whose, when, where (a WFDB record path without suffix, or a DICOM file)."""

    patient_id: str
    time: pd.Timestamp
    path: Path
    format: str  # "wfdb" | "dicom"


@dataclass(frozen=True)
class Recording:
    """A decoded recording: (channels, samples) in millivolts, its sampling rate and channel names."""

    signal: np.ndarray
    rate: float
    leads: list[str]


class RecordingError(Exception):
    """A recording that cannot be used; the message is a short reason without paths or ids."""


# SCP-ECG lead codes of the 12 standard leads (DICOM PS3.16 CID 3001)
SCPECG_LEADS = {"5.6.3-9-1": "I", "5.6.3-9-2": "II", "5.6.3-9-61": "III", "5.6.3-9-62": "aVR", "5.6.3-9-63": "aVL",
                "5.6.3-9-64": "aVF", "5.6.3-9-3": "V1", "5.6.3-9-4": "V2", "5.6.3-9-5": "V3", "5.6.3-9-6": "V4",
                "5.6.3-9-7": "V5", "5.6.3-9-8": "V6"}  # fmt: skip

def scan(root: Path, manifest: Path | None) -> tuple[list[Candidate], Counter]:
    """Every linked recording under `root`, and counts of files seen and skipped by reason."""
    counts: Counter = Counter()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    counts["files_seen"] = len(files)
    records = {p.with_suffix("") for p in files if p.suffix.lower() == ".hea"}
    counts["wfdb_records"] = len(records)
    candidates = _link_wfdb(records, root, manifest, counts)
    for path in files:
        suffix = path.suffix.lower()
        if suffix in (".hea", ".dat") or path.name == RECORD_LIST or (manifest is not None and path == manifest):
            continue
        if suffix not in DICOM_SUFFIXES:
            counts["skip: other file type"] += 1
            continue
        found = _dicom_candidate(path, counts)
        if found is not None:
            candidates.append(found)
    return candidates, counts


def _link_wfdb(records: set[Path], root: Path, manifest: Path | None, counts: Counter) -> list[Candidate]:
    """WFDB records with their patient and time, from the manifest (when configured) or record_list.csv."""
    if not records and manifest is None:
        return []
    table = _link_table(root, manifest)
    if table is None:
        counts["skip: WFDB record without record_list.csv or manifest"] += len(records)
        return []
    candidates, linked = [], set()
    for patient, relative, time in table.itertuples(index=False):
        record = (root / Path(str(relative).strip())).with_suffix("")
        if record not in records:
            counts["skip: listed record not found"] += 1
        elif pd.isna(time):
            counts["skip: listed record without a valid time"] += 1
        elif record not in linked:
            linked.add(record)
            candidates.append(Candidate(str(patient).strip(), time, record, "wfdb"))
    if records - linked:
        counts["skip: WFDB record not listed"] += len(records - linked)
    return candidates


def _link_table(root: Path, manifest: Path | None) -> pd.DataFrame | None:
    """(patient, relative record path, time) rows; an explicitly configured manifest wins over record_list.csv."""
    if manifest is not None:
        source, columns = manifest, ("patient_id", "path", "time")
    elif (root / RECORD_LIST).is_file():
        source, columns = root / RECORD_LIST, ("subject_id", "path", "ecg_time")
    else:
        return None
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ClinFuseError(f"waveform link table {source.name} is unreadable ({type(exc).__name__})",
                            "export it as a UTF-8 CSV with a header row") from None  # fmt: skip
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ClinFuseError(f"waveform link table {source.name} lacks column(s) {missing}",
                            f"give it the columns {', '.join(columns)}")  # fmt: skip
    times = pd.to_datetime(table[columns[2]].replace("", None), errors="coerce", format="mixed")
    if times.dt.tz is not None:
        times = times.dt.tz_localize(None)
    linked = table[[columns[0], columns[1]]].copy()
    linked["time"] = times
    return linked[linked[columns[0]].str.strip().ne("") & linked[columns[1]].str.strip().ne("")]


def _dicom_candidate(path: Path, counts: Counter) -> Candidate | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        counts["skip: not a DICOM file"] += 1
        return None
    if str(ds.get("SOPClassUID", "")) not in ECG_SOP_CLASSES:
        counts["skip: DICOM object that is not an ECG waveform"] += 1
        return None
    counts["dicom_ecg_objects"] += 1
    patient = str(ds.get("PatientID", "") or "").strip()
    time = dicom_time(ds)
    if not patient:
        counts["skip: DICOM ECG without PatientID"] += 1
    elif time is None:
        counts["skip: DICOM ECG without acquisition date/time"] += 1
    else:
        return Candidate(patient, time, path, "dicom")
    return None


def dicom_time(ds: object) -> pd.Timestamp | None:
    """AcquisitionDateTime, else ContentDate/ContentTime, else StudyDate/StudyTime (naive local time)."""
    candidates = [str(getattr(ds, "AcquisitionDateTime", "") or "")]
    for date, clock in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
        day = str(getattr(ds, date, "") or "")
        if day:
            candidates.append(day + str(getattr(ds, clock, "") or "").split(".")[0].ljust(6, "0"))
    for text in candidates:
        digits = text.split(".")[0].split("+")[0].split("-")[0].strip()
        if len(digits) >= 8:
            parsed = pd.to_datetime(digits[:14].ljust(14, "0"), format="%Y%m%d%H%M%S", errors="coerce")
            if not pd.isna(parsed):
                return parsed
    return None


def read_recording(candidate: Candidate, max_mib: float) -> Recording:
    """Decode one recording to millivolts; raises RecordingError with a short reason."""
    try:
        return _read_wfdb(candidate.path, max_mib) if candidate.format == "wfdb" else _read_dicom(candidate.path,
                                                                                                  max_mib)
    except RecordingError:
        raise
    except Exception as exc:  # a corrupt file must never stop the run: the reason (type only) is counted
        raise RecordingError(f"unreadable {candidate.format} ({type(exc).__name__})") from None


def _read_wfdb(record: Path, max_mib: float) -> Recording:
    import wfdb

    dat = record.with_suffix(".dat")
    if dat.is_file() and dat.stat().st_size * 4 > max_mib * 2**20:  # >= 1 byte per sample, 4 once decoded
        raise RecordingError("recording larger than max_decoded_mib")
    data = wfdb.rdrecord(str(record), physical=True)
    factors = [_millivolts_per_unit(unit) for unit in data.units]
    signal = data.p_signal.T * np.asarray(factors)[:, np.newaxis]
    return Recording(signal, float(data.fs), list(data.sig_name))


def _read_dicom(path: Path, max_mib: float) -> Recording:
    import pydicom

    ds = pydicom.dcmread(path)
    groups = list(ds.get("WaveformSequence", []))
    if not groups:
        raise RecordingError("DICOM ECG without a waveform sequence")
    index = max(range(len(groups)), key=lambda i: _group_rank(groups[i]))
    group = groups[index]
    _check_size(int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples), max_mib)
    channels = list(group.get("ChannelDefinitionSequence", []))
    if len(channels) != int(group.NumberOfWaveformChannels):
        raise RecordingError("DICOM ECG whose channel definitions do not match its channel count")
    factors = [_millivolts_per_unit(_channel_unit(channel)) for channel in channels]
    signal = ds.waveform_array(index).T * np.asarray(factors)[:, np.newaxis]
    return Recording(signal, float(group.SamplingFrequency), [_channel_name(channel) for channel in channels])


def _group_rank(group: object) -> tuple[int, int]:
    """Prefer the rhythm group (all of the recording) over median beats, then the longest."""
    label = str(getattr(group, "MultiplexGroupLabel", "") or "").upper()
    return int("MEDIAN" not in label), int(getattr(group, "NumberOfWaveformSamples", 0) or 0)


def _channel_unit(channel: object) -> str:
    units = getattr(channel, "ChannelSensitivityUnitsSequence", None)
    if "ChannelSensitivity" not in channel or not units:
        raise RecordingError("DICOM ECG channel without sensitivity or units")
    return str(units[0].CodeValue)


def _channel_name(channel: object) -> str:
    """The lead's standard name from its SCP-ECG code (DICOM CID 3001), else the code's meaning, else the label:
    devices word the meaning freely ("Lead I (Einthoven)"), the code is fixed."""
    source = getattr(channel, "ChannelSourceSequence", None)
    if source:
        code = str(getattr(source[0], "CodeValue", ""))
        return SCPECG_LEADS.get(code) or str(getattr(source[0], "CodeMeaning", "") or code)
    return str(getattr(channel, "ChannelLabel", ""))


def _millivolts_per_unit(unit: str) -> float:
    factor = _MILLIVOLTS_PER_UNIT.get(str(unit).strip().casefold())
    if factor is None:
        raise RecordingError("signal units are not a voltage (mV, uV or V)")
    return factor


def _check_size(channels: int, samples: int, max_mib: float) -> None:
    if channels * samples * 4 > max_mib * 2**20:
        raise RecordingError("recording larger than max_decoded_mib")
