"""Synthetic demo cohort in the formats hospitals export (DICOM, expression tables, MIMIC-IV CSV).

`generate_demo_cohort` is imported on first use: the generator (DICOM, CT) costs every other command a second
and a half of imports."""

from __future__ import annotations

from typing import Any

__all__ = ["generate_demo_cohort"]


def __getattr__(name: str) -> Any:
    if name == "generate_demo_cohort":
        from clinfuse.platform.demo.generator import generate_demo_cohort

        return generate_demo_cohort
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
