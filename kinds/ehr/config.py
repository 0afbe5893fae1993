"""cohort.yaml fields of an `ehr` modality."""

from __future__ import annotations

from typing import Literal

from clinfuse.platform.kinds import KindConfig
from pydantic import Field


class EhrModality(KindConfig):
    """EHR read through PyHealth: MIMIC-IV CSV layout (hosp/, icu/)."""

    kind: Literal["ehr"]
    source: Literal["mimic4"] = "mimic4"
    tables: tuple[str, ...] = ("diagnoses_icd", "procedures_icd", "prescriptions", "labevents")
    max_codes: int = Field(256, ge=8, le=4096, description="most recent codes kept per patient")
    min_code_count: int = Field(2, ge=1, description="codes rarer than this in training map to <unk>")
