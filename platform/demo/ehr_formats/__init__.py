"""The demo's EHR in the layouts hospitals export: MIMIC-IV CSV, OMOP CDM 5.4, MEDS and FHIR R4 bulk NDJSON.

Every layout is rendered from the same MIMIC-IV tables, so each carries the same events (patient, time, code,
value) and ClinFuse's readers give the same event stream whichever one a cohort uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# `--ehr-format` value (also the ehr modality's `source:` in cohort.yaml) -> (module, function) of the writer of
# the MIMIC-IV tables in it: imported on use, since every CLI start lists the formats (fhir.resources is heavy)
EHR_WRITERS: dict[str, tuple[str, str]] = {
    "mimic4": ("clinfuse.platform.demo.mimic", "write_mimic4"),
    "omop": ("clinfuse.platform.demo.ehr_formats.omop", "write_omop"),
    "meds": ("clinfuse.platform.demo.ehr_formats.meds", "write_meds"),
    "fhir": ("clinfuse.platform.demo.ehr_formats.fhir", "write_fhir"),
}
EHR_FORMATS: tuple[str, ...] = tuple(EHR_WRITERS)


def ehr_writer(ehr_format: str) -> Callable[[dict[str, pd.DataFrame], Path], None]:
    """The writer of one of EHR_FORMATS."""
    module, function = EHR_WRITERS[ehr_format]
    return getattr(importlib.import_module(module), function)


__all__ = ["EHR_FORMATS", "EHR_WRITERS", "ehr_writer"]
