"""Dashboard settings: where users, audit log and settings live, risk bands, session and lockout policy.

Paths (each overridable by an environment variable, which `clinfuse dashboard` sets for the server it starts):

    users file     $CLINFUSE_DASHBOARD_USERS   else $CLINFUSE_HOME/dashboard/users.yaml
    audit log      $CLINFUSE_AUDIT_LOG         else $CLINFUSE_HOME/dashboard/audit.jsonl
    settings       $CLINFUSE_DASHBOARD_CONFIG  else $CLINFUSE_HOME/dashboard/settings.yaml (optional file)
    scores         $CLINFUSE_DASHBOARD_SCORES  (the Parquet file written by `clinfuse score`)

The module is a plain one (no streamlit import) so the CLI and the tests can use it.
The file name is not `config.py`: `streamlit run` puts this folder on sys.path, where a generic name could shadow
another top-level module.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security.pseudonym import clinfuse_home
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

USERS_ENV = "CLINFUSE_DASHBOARD_USERS"
AUDIT_ENV = "CLINFUSE_AUDIT_LOG"
SETTINGS_ENV = "CLINFUSE_DASHBOARD_CONFIG"
SCORES_ENV = "CLINFUSE_DASHBOARD_SCORES"


def dashboard_home() -> Path:
    return clinfuse_home() / "dashboard"


def users_path() -> Path:
    return Path(os.environ.get(USERS_ENV) or dashboard_home() / "users.yaml")


def audit_path() -> Path:
    return Path(os.environ.get(AUDIT_ENV) or dashboard_home() / "audit.jsonl")


def settings_path() -> Path:
    return Path(os.environ.get(SETTINGS_ENV) or dashboard_home() / "settings.yaml")


def scores_path() -> Path:
    value = os.environ.get(SCORES_ENV)
    if not value:
        raise ClinFuseError("no scores file given to the dashboard", "start it with `clinfuse dashboard --scores PATH`")
    return Path(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskBands(_Strict):
    """Calibrated risk r is low when r < intermediate, intermediate when intermediate <= r < high, else high."""

    intermediate: float = Field(0.2, gt=0, lt=1)
    high: float = Field(0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if not self.intermediate < self.high:
            raise ValueError("risk_bands.intermediate must be below risk_bands.high")
        return self

    def band(self, risk: float) -> str:
        if risk != risk:  # NaN: the patient could not be scored
            return "not scored"
        if risk < self.intermediate:
            return "low"
        return "intermediate" if risk < self.high else "high"


class DashboardSettings(_Strict):
    """Everything a site may tune; every field has a safe default, so the settings file is optional."""

    risk_bands: RiskBands = RiskBands()
    # Sessions end after this long without interaction, and in any case after session_max_hours.
    idle_timeout_minutes: float = Field(15, gt=0)
    session_max_hours: float = Field(12, gt=0)
    # Wrong passwords: after `lockout_after_failures` consecutive failures for a user name, further attempts are
    # refused for lockout_base_seconds, doubling with each further failure up to lockout_max_seconds.
    lockout_after_failures: int = Field(3, ge=1)
    lockout_base_seconds: float = Field(30, gt=0)
    lockout_max_seconds: float = Field(3600, gt=0)
    # Fusion and XGBoost risks further apart than this (or in different bands) get a disagreement note.
    disagreement_threshold: float = Field(0.15, gt=0, lt=1)
    # Pseudonyms are shown unless a cohort.yaml is named here: then the source id (recomputed with the
    # pseudonym key) is shown beside the pseudonym. The audit log always records pseudonyms only.
    source_ids_from: Path | None = None


def load_settings(path: Path | None = None) -> DashboardSettings:
    """The settings file when it exists, else the defaults; a malformed file is an error, never ignored."""
    path = path or settings_path()
    if not path.is_file():
        if os.environ.get(SETTINGS_ENV):
            raise ClinFuseError(f"dashboard settings file {path} not found", f"create it or unset {SETTINGS_ENV}")
        return DashboardSettings()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        settings = DashboardSettings.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise ClinFuseError(
            f"dashboard settings {path} are invalid: {' '.join(first[:3])}", "see docs/dashboard.md"
        ) from exc
    if settings.source_ids_from is not None and not settings.source_ids_from.is_absolute():
        settings = settings.model_copy(update={"source_ids_from": (path.parent / settings.source_ids_from).resolve()})
    return settings
