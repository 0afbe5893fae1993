"""Cohort configuration: the pydantic schema of cohort.yaml and its loader."""

from clinfuse.platform.config.cohort import (
    CohortConfig,
    CohortTable,
    DicomModality,
    EhrModality,
    ModalityConfig,
    SplitConfig,
    TableModality,
)
from clinfuse.platform.config.loader import load_cohort_config, write_cohort_config

__all__ = [
    "CohortConfig",
    "CohortTable",
    "DicomModality",
    "EhrModality",
    "ModalityConfig",
    "SplitConfig",
    "TableModality",
    "load_cohort_config",
    "write_cohort_config",
]
