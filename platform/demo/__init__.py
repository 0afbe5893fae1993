"""Synthetic demo cohort in the formats hospitals export (DICOM, expression tables, MIMIC-IV CSV)."""

from clinfuse.platform.demo.generator import generate_demo_cohort

__all__ = ["generate_demo_cohort"]
