"""Cohort configuration: the pydantic schema of cohort.yaml and its loader (each modality's fields belong to its
kind: `clinfuse.platform.kinds`)."""

from clinfuse.platform.config.cohort import CohortConfig, CohortTable, ModalityConfig, SplitConfig
from clinfuse.platform.config.loader import load_cohort_config, write_cohort_config

__all__ = ["CohortConfig", "CohortTable", "ModalityConfig", "SplitConfig", "load_cohort_config", "write_cohort_config"]
