"""cohort.yaml fields of a `waveform` modality (12-lead ECGs as WFDB records or DICOM waveform objects)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from clinfuse.platform.kinds import KindConfig
from pydantic import Field, field_validator, model_validator

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


class WaveformModality(KindConfig):
    """ECG recordings under `path` (scanned recursively): WFDB records (.hea + .dat) linked to patients by the
    MIMIC-IV-ECG `record_list.csv` or by a manifest CSV (patient_id, path, time); DICOM 12-lead / general ECG
    waveform objects linked by their PatientID tag and acquisition time.

    Per patient the latest recording strictly before the index time is used, resampled to `sampling_rate`,
    band-pass filtered to `band_hz`, cut or zero-padded to `duration_s` and kept in millivolts.
    """

    kind: Literal["waveform"]
    path_fields: ClassVar[tuple[str, ...]] = ("manifest",)
    site_fields: ClassVar[tuple[str, ...]] = ("max_decoded_mib",)  # what this site's machines may spend
    manifest: Path | None = Field(
        None, description="CSV (patient_id, path, time) linking WFDB records; default: the folder's record_list.csv"
    )
    sampling_rate: int = Field(100, ge=50, le=2000, description="Hz after resampling")
    duration_s: float = Field(10.0, gt=0, le=120, description="seconds kept from each recording's start")
    leads: tuple[str, ...] = Field(STANDARD_LEADS, min_length=1, description="leads in this order, case-insensitive")
    band_hz: tuple[float, float] = Field((0.5, 40.0), description="band-pass filter (low, high) in Hz")
    max_decoded_mib: float = Field(
        64, gt=0, description="largest recording accepted (channels x samples x 4 bytes); larger ones are counted"
    )

    @field_validator("leads")
    @classmethod
    def _unique_leads(cls, leads: tuple[str, ...]) -> tuple[str, ...]:
        folded = [lead.strip().casefold() for lead in leads]
        if any(not lead for lead in folded):
            raise ValueError("lead names must not be empty: list names such as I, II, V1")
        repeated = sorted({lead for lead, key in zip(leads, folded, strict=True) if folded.count(key) > 1})
        if repeated:
            raise ValueError(f"leads {repeated} are listed twice (names are case-insensitive): list each lead once")
        return tuple(lead.strip() for lead in leads)

    @model_validator(mode="after")
    def _band_below_nyquist(self) -> WaveformModality:
        low, high = self.band_hz
        nyquist = self.sampling_rate / 2
        if not 0 < low < high:
            raise ValueError(f"band_hz ({low:g}, {high:g}) must be (low, high) with 0 < low < high, e.g. (0.5, 40)")
        if high >= nyquist:
            raise ValueError(
                f"band_hz upper edge {high:g} Hz must be below the Nyquist frequency ({nyquist:g} Hz) of "
                f"sampling_rate {self.sampling_rate}: lower band_hz or raise sampling_rate"
            )
        if self.duration_s * self.sampling_rate < 16:
            raise ValueError("duration_s x sampling_rate gives fewer than 16 samples: lengthen duration_s")
        return self

    @property
    def samples(self) -> int:
        return round(self.duration_s * self.sampling_rate)
