"""Streamlit caching around data_source: score tables and explanations (st.cache_data), the feature cache and
model explainer (st.cache_resource). Every key includes the scores file's version, so a rescoring is picked up
without restarting the server; nothing is recomputed when a user switches back to a patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from clinfuse.dashboards import data_source
from clinfuse.dashboards.audit import AuditLog
from clinfuse.dashboards.dashboard_config import (
    DashboardSettings,
    audit_path,
    load_settings,
    scores_path,
    users_path,
)
from clinfuse.dashboards.users import LoginLimiter, UserStore, limiter_path


@dataclass(frozen=True)
class AppContext:
    """What every page needs, built at the start of each script run from the environment (cheap)."""

    settings: DashboardSettings
    users: UserStore
    limiter: LoginLimiter
    audit: AuditLog
    scores_path: Path

    @classmethod
    def from_environment(cls) -> AppContext:
        settings = load_settings()
        users = users_path()
        return cls(
            settings=settings,
            users=UserStore(users),
            limiter=LoginLimiter(
                limiter_path(users),
                settings.lockout_after_failures,
                settings.lockout_base_seconds,
                settings.lockout_max_seconds,
            ),
            audit=AuditLog(audit_path()),
            scores_path=scores_path(),
        )

    @property
    def version(self) -> str:
        return data_source.scores_version(self.scores_path)


@st.cache_data(show_spinner="Loading scores…", max_entries=4)
def _scores(path: str, version: str) -> data_source.Scores:
    return data_source.load_scores(Path(path))


def scores(context: AppContext) -> data_source.Scores:
    return _scores(str(context.scores_path), context.version)


@st.cache_resource(show_spinner="Opening the feature cache…", max_entries=2)
def _patient_data(path: str, version: str) -> data_source.PatientData:
    return data_source.PatientData(Path(path))


def patient_data(context: AppContext) -> data_source.PatientData:
    return _patient_data(str(context.scores_path), context.version)


@st.cache_data(show_spinner=False, max_entries=512)
def _explanation(path: str, version: str, patient: str) -> data_source.Explanation:
    return _patient_data(path, version).explain(patient)


def explanation(context: AppContext, patient: str) -> data_source.Explanation:
    return _explanation(str(context.scores_path), context.version, patient)


def section_data(context: AppContext, modality: str, patient: str, entry: dict):
    return patient_data(context).section_data(modality, patient, entry)


def prefetch(context: AppContext, patients: list[str]) -> None:
    patient_data(context).prefetch(patients)


@st.cache_data(show_spinner=False, max_entries=2)
def _source_ids(cohort_config: str) -> dict[str, str]:
    return data_source.source_ids(Path(cohort_config))


def source_ids(context: AppContext) -> dict[str, str]:
    """Pseudonym -> source id when the site configured `source_ids_from`, else empty (pseudonyms only)."""
    if context.settings.source_ids_from is None:
        return {}
    return _source_ids(str(context.settings.source_ids_from))


@st.cache_resource(show_spinner=False, max_entries=2)
def _model_files(model_dir: str) -> dict:
    return {
        "metrics": data_source.model_metrics(Path(model_dir)),
        "card": data_source.model_card(Path(model_dir)),
        "calibration_png": data_source.calibration_plot(Path(model_dir)),
    }


def model_files(context: AppContext) -> dict:
    return _model_files(str(scores(context).model_dir))
