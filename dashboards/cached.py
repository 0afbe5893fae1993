"""Streamlit caching around data_source: score tables and explanations (st.cache_data), the feature cache and
model explainer (st.cache_resource). Every key includes the scores file's version, so a rescoring is picked up
without restarting the server; nothing is recomputed when a user switches back to a patient. `warm_up` fills
these caches when the server starts, before anyone signs in.
"""

from __future__ import annotations

import logging
import time
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
from clinfuse.platform.kinds import get_kind

WARM_PATIENTS = 3  # the highest-risk patients, the ones a clinician opens first, explained before they are opened


def _server_log() -> logging.Logger:
    """The dashboard's own lines in the server log. Not one of Streamlit's loggers: `clinfuse dashboard` sets
    those to warnings only (--logger.level), and Streamlit resets their level whenever it reads its config."""
    log = logging.getLogger("clinfuse.dashboards")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


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


# No spinners on the two loaders warm_up calls: a spinner outside a page's script run only logs a warning, and
# after the warm-up they load again only when the scores file is replaced (a fraction of a second).
@st.cache_data(show_spinner=False, max_entries=4)
def _scores(path: str, version: str) -> data_source.Scores:
    return data_source.load_scores(Path(path))


def scores(context: AppContext) -> data_source.Scores:
    return _scores(str(context.scores_path), context.version)


@st.cache_resource(show_spinner=False, max_entries=2)
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


def warm_up() -> None:
    """At server start (dashboard_server.py), in a background thread: read the scores, verify the model bundle,
    load the explainer, explain the WARM_PATIENTS highest-risk patients and let each modality's kind load what its
    section reads (`prepare_section`), into the caches the pages read, so the first patient opens at once; and make
    the sign-in's dummy hash. A failure is only logged (no details, which could name a patient): the page that
    needs the failing part shows it with its message."""
    started = time.perf_counter()
    try:
        path = scores_path()
        version = data_source.scores_version(path)
        patients = _scores(str(path), version).highest_risk(WARM_PATIENTS)
        data = _patient_data(str(path), version)
        for patient in patients:
            data.explain(patient)
        for name, kind in data.modalities.items():
            get_kind(kind).prepare_section(data.cache, name)
        UserStore(users_path()).prepare()
    except Exception as exc:
        _server_log().warning("dashboard warm-up failed (%s); the pages show why", type(exc).__name__)
        return
    seconds = time.perf_counter() - started
    message = "dashboard warm-up: explainer loaded, %d highest-risk patients explained, sections prepared, in %.1f s"
    _server_log().info(message, len(patients), seconds)


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
