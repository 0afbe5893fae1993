"""Table logic of the pages as pure functions (bands, filters, display tables, metrics, disagreement notes)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clinfuse.dashboards.dashboard_config import RiskBands


def with_bands(table: pd.DataFrame, bands: RiskBands) -> pd.DataFrame:
    table = table.copy()
    table["band"] = [bands.band(float(r)) for r in table["risk"]]
    return table


def present_list(value: str) -> list[str]:
    return [m for m in str(value or "").split("+") if m]


def missing_list(value: str, modalities: list[str]) -> list[str]:
    present = set(present_list(value))
    return [m for m in modalities if m not in present]


@dataclass(frozen=True)
class CohortFilter:
    """What the cohort page's filters select; an empty choice means no restriction."""

    bands: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # patients missing any of these modalities
    sexes: tuple[str, ...] = ()
    age_range: tuple[float, float] | None = None
    search: str = ""

    def apply(self, table: pd.DataFrame, modalities: list[str]) -> pd.DataFrame:
        keep = np.ones(len(table), bool)
        if self.bands:
            keep &= table["band"].isin(self.bands).to_numpy()
        if self.missing:
            missing = table["modalities_present"].map(lambda v: set(missing_list(v, modalities)))
            keep &= missing.map(lambda m: bool(m & set(self.missing))).to_numpy(bool)
        if self.sexes and "sex" in table:
            keep &= table["sex"].fillna("unknown").astype(str).isin(self.sexes).to_numpy()
        if self.age_range is not None and "age" in table:
            age = pd.to_numeric(table["age"], errors="coerce")
            keep &= (age.between(*self.age_range) | age.isna()).to_numpy()
        if self.search.strip():
            needle = self.search.strip().lower()
            columns = [c for c in ("patient_id", "source_id") if c in table]
            hit = np.zeros(len(table), bool)
            for column in columns:
                hit |= table[column].astype(str).str.lower().str.contains(needle, regex=False).to_numpy()
            keep &= hit
        return table.loc[keep]


def cohort_display(table: pd.DataFrame, modalities: list[str]) -> pd.DataFrame:
    """The cohort page's table: one row per patient, risk in percent, present and missing modalities."""
    out = pd.DataFrame({"rank": table["rank"].to_numpy(), "patient": table["patient_id"].to_numpy()})
    if "source_id" in table:
        out["source id"] = table["source_id"].to_numpy()
    out["risk %"] = 100 * table["risk"].to_numpy(float)
    out["95% interval"] = [
        _interval(lo, hi)
        for lo, hi in zip(
            table.get("risk_lower", np.nan * table["risk"]),
            table.get("risk_upper", np.nan * table["risk"]),
            strict=True,
        )
    ]
    out["band"] = table["band"].to_numpy()
    out["modalities"] = table["modalities_present"].map(lambda v: ", ".join(present_list(v)) or "none").to_numpy()
    out["missing"] = table["modalities_present"].map(lambda v: ", ".join(missing_list(v, modalities))).to_numpy()
    if "risk_xgboost" in table:
        out["XGBoost %"] = 100 * table["risk_xgboost"].to_numpy(float)
    for column in ("sex", "age"):
        if column in table:
            out[column] = table[column].to_numpy()
    out["notes"] = [_notes(w, e) for w, e in zip(table["warnings"], table["error"], strict=True)]
    return out


# A spreadsheet runs a text cell starting with one of these as a formula (=cmd|..., =HYPERLINK(...)); OWASP's CSV
# injection guidance (and ASVS 1.2.10, which adds NUL) is to make such cells text with a leading single quote.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")


def spreadsheet_text(value: object) -> object:
    """`value` with a leading ' when it is text a spreadsheet would run as a formula; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def cohort_csv(display: pd.DataFrame) -> bytes:
    """The cohort page's CSV export, safe to open in a spreadsheet: source ids, sex and notes come from site data
    and may hold formulas, so every text cell is neutralised and quoted (an embedded separator cannot start a new
    cell); numeric columns stay unquoted numbers, so a negative number is still a number."""
    safe = display.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_text)
    return safe.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode()


def _interval(lower: float, upper: float) -> str:
    if lower != lower or upper != upper:
        return ""
    return f"{100 * lower:.1f}–{100 * upper:.1f}%"


def _notes(warnings: str, error: str) -> str:
    if error:
        return f"not scored: {error}"
    return warnings


def disagreement(
    risk: float,
    risk_xgboost: float,
    bands: RiskBands,
    threshold: float,
    fusion_logit: dict[str, float] | None = None,
    xgboost_logit: dict[str, float] | None = None,
) -> str | None:
    """A note when the fusion model and the XGBoost baseline disagree (band, size, or direction), else None."""
    if risk != risk or risk_xgboost is None or risk_xgboost != risk_xgboost:
        return None
    reasons = []
    fusion_band, xgboost_band = bands.band(risk), bands.band(risk_xgboost)
    if fusion_band != xgboost_band:
        reasons.append(f"fusion puts the patient in the {fusion_band} band, XGBoost in the {xgboost_band} band")
    if abs(risk - risk_xgboost) >= threshold:
        reasons.append(f"the risks differ by {100 * abs(risk - risk_xgboost):.0f} percentage points")
    if fusion_logit and xgboost_logit:
        opposite = [
            m
            for m, v in fusion_logit.items()
            if m in xgboost_logit
            and abs(v) > 0.1
            and abs(xgboost_logit[m]) > 0.1
            and np.sign(v) != np.sign(xgboost_logit[m])
        ]
        if opposite:
            reasons.append(f"they read {', '.join(opposite)} in opposite directions")
    if not reasons:
        return None
    return "The fusion model and the XGBoost baseline disagree: " + "; ".join(reasons) + ". Review before acting."


def _with_ci(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return "n/a"
    ci = entry.get(f"{key}_ci")
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def metrics_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for model in ("fusion", "xgboost"):
        entry = metrics.get(model)
        if not entry:
            continue
        rows.append(
            {
                "model": model,
                "AUROC [95% CI]": _with_ci(entry, "auroc"),
                "AUPRC [95% CI]": _with_ci(entry, "auprc"),
                "Brier": _fmt(entry.get("brier")),
                "ECE": _fmt(entry.get("ece")),
                "ECE before calibration": _fmt(entry.get("ece_uncalibrated")),
            }
        )
    return pd.DataFrame(rows)


def single_modality_table(metrics: dict) -> pd.DataFrame:
    rows = [
        {
            "modality": name,
            "AUROC [95% CI]": _with_ci(entry, "auroc"),
            "n with modality": entry.get("n_present"),
            "AUROC (with modality)": _fmt(entry.get("auroc_present_only")),
        }
        for name, entry in (metrics.get("single_modality") or {}).items()
    ]
    return pd.DataFrame(rows)


def group_table(groups: dict | None, label: str) -> pd.DataFrame:
    rows = [
        {label: name, "n": entry.get("n"), "positives": entry.get("positives"), "AUROC": _fmt(entry.get("auroc"))}
        for name, entry in (groups or {}).items()
    ]
    return pd.DataFrame(rows)


def targets_table(metrics: dict) -> pd.DataFrame:
    rows = [
        {
            "target": name,
            "value": entry.get("value"),
            "goal": entry.get("goal"),
            "met": "yes" if entry.get("met") else "no",
        }
        for name, entry in (metrics.get("targets") or {}).items()
    ]
    return pd.DataFrame(rows)


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"
