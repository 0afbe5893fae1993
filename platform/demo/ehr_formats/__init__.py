"""The demo's EHR in the layouts hospitals export: MIMIC-IV CSV, OMOP CDM 5.4, MEDS and FHIR R4 bulk NDJSON.

Every layout is rendered from the same MIMIC-IV tables, so each carries the same events (patient, time, code,
value) and ClinFuse's readers give the same event stream whichever one a cohort uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from clinfuse.platform.demo.ehr_formats.fhir import write_fhir
from clinfuse.platform.demo.ehr_formats.meds import write_meds
from clinfuse.platform.demo.ehr_formats.omop import write_omop
from clinfuse.platform.demo.mimic import write_mimic4

# `--ehr-format` value (also the ehr modality's `source:` in cohort.yaml) -> writer of the MIMIC-IV tables in it
EHR_WRITERS: dict[str, Callable[[dict[str, pd.DataFrame], Path], None]] = {
    "mimic4": write_mimic4,
    "omop": write_omop,
    "meds": write_meds,
    "fhir": write_fhir,
}
EHR_FORMATS: tuple[str, ...] = tuple(EHR_WRITERS)

__all__ = ["EHR_FORMATS", "EHR_WRITERS"]
