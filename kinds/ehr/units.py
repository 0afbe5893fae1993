"""Units of lab values: one spelling per unit, so a lab is grouped by what was measured *and* in which unit.

A lab feature is keyed by code and unit (`LOINC:2160-0 [mg/dL]`): creatinine in mg/dL and in umol/L become two
features and are never averaged together. Converting between them would need each analyte's molar mass, which
no well-kept offline package ships for LOINC codes, so they stay apart. Only spellings of the same unit are
merged here (UCUM is case-sensitive, exports are not).
"""

from __future__ import annotations

import polars as pl

# lower-cased spelling -> UCUM-style spelling
_SPELLINGS: dict[str, str] = {
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "mg/l": "mg/L",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "micromol/l": "umol/L",
    "meq/l": "mEq/L",
    "pg/ml": "pg/mL",
    "ng/ml": "ng/mL",
    "ng/l": "ng/L",
    "iu/l": "IU/L",
    "u/l": "U/L",
    "k/ul": "K/uL",
    "10*3/ul": "K/uL",
    "10^3/ul": "K/uL",
    "x10e3/ul": "K/uL",
    "%": "%",
    "mm[hg]": "mm[Hg]",
    "mmhg": "mm[Hg]",
    "/min": "/min",
    "beats/min": "/min",
    "bpm": "/min",
    "cel": "Cel",
    "degc": "Cel",
    "°c": "Cel",
}


def unit_expr(unit: pl.Expr) -> pl.Expr:
    """One spelling per unit; an empty unit is null (no unit)."""
    trimmed = unit.cast(pl.String).str.strip_chars()
    lowered = trimmed.str.to_lowercase()
    spelled = lowered.replace_strict(_SPELLINGS, default=None)
    return pl.when(trimmed == "").then(None).otherwise(pl.coalesce(spelled, trimmed))


def lab_key(code: str, unit: str | None) -> str:
    """The feature name of a lab: its token and, when it has one, its unit in brackets."""
    return f"{code} [{unit}]" if unit else code
