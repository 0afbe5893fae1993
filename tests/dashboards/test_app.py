"""The Streamlit app's logic through streamlit.testing's AppTest: login gate, role gate, rate limiting, session
expiry, patient views (audited) and absent modalities shown as absent."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from clinfuse.dashboards.data_source import load_scores
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
TIMEOUT = 120  # the first patient view loads the model


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


PASSWORDS = {"clara": "clinician-password-1", "dana": "scientist-password-2"}  # as in conftest.py


def _sign_in(at: AppTest, name: str, password: str | None = None) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(PASSWORDS.get(name, "") if password is None else password)
    return at.button[0].click().run()


def _texts(at: AppTest) -> str:
    parts = []
    for kind in ("title", "header", "markdown", "caption", "info", "warning", "error", "metric", "subheader"):
        for element in getattr(at, kind):
            parts.append(str(getattr(element, "value", "")) + " " + str(getattr(element, "label", "")))
    return "\n".join(parts)


def _open_page(at: AppTest, url_path: str) -> AppTest:
    """What typing /<url_path> does: ask for that page (registered or not) and run."""
    at._page_hash = calc_hash(url_path)  # AppTest.switch_page only knows file pages; these are callables
    return at.run()


def _navigation(at: AppTest) -> set[str]:
    """Titles of the pages st.navigation registered in the last run (what the sidebar offers)."""
    return {info.get("page_name") for info in at._registered_pages.values()}


def _patient_missing_a_modality(scores: Path) -> tuple[str, str]:
    table = load_scores(scores).table
    names = list(load_scores(scores).modalities)
    for row in table.itertuples():
        present = set(str(row.modalities_present).split("+"))
        missing = [m for m in names if m not in present]
        if missing and row.risk == row.risk:
            return row.patient_id, missing[0]
    raise AssertionError("the demo cohort always has patients missing a modality")


def test_nothing_about_patients_before_sign_in(dashboard_env) -> None:
    at = _app()
    assert not at.exception
    assert [t.value for t in at.title] == ["ClinFuse"] and len(at.text_input) == 2
    assert len(at.dataframe) == 0 and len(at.get("plotly_chart")) == 0
    pseudonyms = pd.read_parquet(dashboard_env.scores, columns=["patient_id"])["patient_id"]
    text = _texts(at)
    assert not any(p in text for p in pseudonyms)
    _open_page(at, "patient")  # a deep link does not get past the gate
    assert [t.value for t in at.title] == ["ClinFuse"] and len(at.get("plotly_chart")) == 0


def test_wrong_passwords_are_rate_limited_across_reloads(dashboard_env) -> None:
    at = _app()
    for _ in range(3):
        _sign_in(at, "clara", "not the password")
    assert "locked for 60 s" in at.error[0].value
    _sign_in(at, "clara")  # the right password is refused while locked
    assert "Try again in" in at.error[0].value and [t.value for t in at.title] == ["ClinFuse"]
    reloaded = _sign_in(_app(), "clara")  # a new session (page reload) is still locked
    assert "Try again in" in reloaded.error[0].value
    other = _sign_in(_app(), "dana")  # other users are not affected
    assert [t.value for t in other.title] == ["Cohort"]
    actions = [(e["action"], e["user"]) for e in dashboard_env.audit_entries()]
    assert actions == [("login_failed", "clara")] * 3 + [("login_locked", "clara")] * 2 + [("login", "dana")]
    _sign_in(_app(), "typed-my-password-here", "whatever")
    assert dashboard_env.audit_entries()[-1]["user"] is None, "unknown names are not written to the audit log"


def test_clinician_never_reaches_the_model_page(dashboard_env) -> None:
    at = _sign_in(_app(), "clara")
    assert [t.value for t in at.title] == ["Cohort"] and not at.exception
    assert _navigation(at) == {"Cohort", "Patient"}
    _open_page(at, "model")
    assert "Model" not in [t.value for t in at.title] and "Test-split performance" not in _texts(at)

    scientist = _sign_in(_app(), "dana")
    assert _navigation(scientist) == {"Cohort", "Patient", "Model"}
    _open_page(scientist, "model")
    assert [t.value for t in scientist.title] == ["Model"] and not scientist.exception
    assert ("Version", str(load_scores(dashboard_env.scores).model_version)) in [
        (m.label, m.value) for m in scientist.metric
    ]
    if (load_scores(dashboard_env.scores).model_dir / "metrics.json").is_file():
        assert "AUROC [95% CI]" in scientist.dataframe[0].value.columns
    else:  # a bundle that was never evaluated says so
        assert "no metrics.json" in scientist.warning[0].value


def test_model_page_shows_operating_points_and_the_decision_curve(dashboard_env) -> None:
    metrics = json.loads((load_scores(dashboard_env.scores).model_dir / "metrics.json").read_text())
    at = _open_page(_sign_in(_app(), "dana"), "model")
    assert not at.exception, at.exception
    assert "Clinical decision figures" in [s.value for s in at.subheader]
    points = next(d.value for d in at.dataframe if "rule" in d.value.columns)
    expected = [p["rule"] for model in ("fusion", "xgboost") for p in metrics[model]["operating_points"]]
    assert list(points["rule"]) == expected and "target sensitivity 0.8" in expected
    fusion_row = points.iloc[0]
    point = metrics["fusion"]["operating_points"][0]
    assert fusion_row["sensitivity"].startswith(f"{point['sensitivity']:.3f} [")
    assert any("calibration slope" in d.value.columns for d in at.dataframe)
    curve = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Decision curve" in c.proto.spec)
    assert [trace["name"] for trace in curve["data"]] == ["fusion", "xgboost", "treat all", "treat none"]


def test_a_click_in_a_filtered_table_opens_the_patient_of_that_row(dashboard_env) -> None:
    at = _sign_in(_app(), "clara")
    wanted = str(at.dataframe[0].value.iloc[5]["patient"])
    at.text_input(key="filter_search").input(wanted).run()
    assert list(at.dataframe[0].value["patient"]) == [wanted]
    key = f"cohort_table_{at.session_state['cohort_table_generation']}"
    at.session_state[key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == [f"Patient {wanted}"]


def test_cohort_click_opens_highest_risk_patient_and_each_view_is_audited(dashboard_env) -> None:
    at = _sign_in(_app(), "clara")
    table = at.dataframe[0].value
    top = str(table.iloc[0]["patient"])
    assert table["risk %"].is_monotonic_decreasing or table["risk %"].isna().any()
    key = f"cohort_table_{at.session_state['cohort_table_generation']}"
    at.session_state[key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == [f"Patient {top}"]
    charts = at.get("plotly_chart")
    assert any('"type":"waterfall"' in c.proto.spec.replace(" ", "") for c in charts)
    level = [s for s in at.slider if s.key and s.key.startswith("level_")]
    if level:  # adjusting the image is not another view
        level[0].set_value(0.4).run()
    at.button(key="next_patient").click().run()
    second = str(table.iloc[1]["patient"])
    assert [h.value for h in at.header] == [f"Patient {second}"]
    views = [
        (e["action"], e["patient"], e["user"], e["role"])
        for e in dashboard_env.audit_entries()
        if e["action"] == "view_patient"
    ]
    assert views == [("view_patient", top, "clara", "clinician"), ("view_patient", second, "clara", "clinician")]
    at.download_button(key="export_patient").click().run()
    export = dashboard_env.audit_entries()[-1]
    assert (export["action"], export["patient"]) == ("export", second)


def test_absent_modality_is_shown_as_absent(dashboard_env) -> None:
    patient, missing = _patient_missing_a_modality(dashboard_env.scores)
    at = _sign_in(_app(), "clara")
    at.session_state["patient"] = patient
    _open_page(at, "patient")
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == [f"Patient {patient}"]
    assert any(f"{missing}: absent for this patient" in i.value for i in at.info)
    waterfall = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"waterfall"' in c.proto.spec)
    bars, *labels = waterfall["data"]
    assert missing not in bars["x"], "an absent modality gets no bar, not even a zero one"
    assert labels and f"{missing} (absent)" in labels[0]["x"]


def test_session_expires_after_idle_time_and_sign_out(dashboard_env) -> None:
    at = _sign_in(_app(), "dana")
    at.session_state["auth_activity"] = time.time() - 16 * 60
    at.run()
    assert [t.value for t in at.title] == ["ClinFuse"] and "session ended" in at.info[0].value
    assert dashboard_env.audit_entries()[-1]["action"] == "session_expired"
    at = _sign_in(at, "dana")
    at.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["ClinFuse"] and "signed out" in at.info[0].value
    assert [e["action"] for e in dashboard_env.audit_entries()][-2:] == ["login", "logout"]


@pytest.mark.parametrize("bad", ["risk_bands: {intermediate: 0.9, high: 0.2}\n"])
def test_bad_settings_stop_the_app_with_a_message(dashboard_env, bad: str) -> None:
    dashboard_env.settings.write_text(bad)
    at = _app()
    assert "misconfigured" in at.error[0].value and len(at.text_input) == 0
