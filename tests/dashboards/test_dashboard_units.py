"""Dashboard building blocks without a browser: users, lockout, audit log, bands, filters, charts, CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.dashboards import charts
from clinfuse.dashboards.audit import AuditLog
from clinfuse.dashboards.dashboard_config import DashboardSettings, RiskBands, load_settings
from clinfuse.dashboards.tables import CohortFilter, disagreement, with_bands
from clinfuse.dashboards.users import LoginLimiter, UserStore
from clinfuse.platform.errors import ClinFuseError


def test_users_file_keeps_bcrypt_hashes_only_with_mode_600(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "dash" / "users.yaml")
    store.add("alice", "clinician", "correct horse battery")
    text = store.path.read_text()
    assert "correct horse" not in text and "$2b$" in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.verify("alice", "correct horse battery").role == "clinician"
    assert store.verify("alice", "wrong password!!") is None
    assert store.verify("nobody", "correct horse battery") is None
    with pytest.raises(ClinFuseError, match="already exists"):
        store.add("alice", "data_scientist", "another password")
    store.add("alice", "data_scientist", "another password", replace=True)
    assert store.verify("alice", "another password").role == "data_scientist"
    with pytest.raises(ClinFuseError, match="role"):
        store.add("bob", "admin", "long enough password")
    with pytest.raises(ClinFuseError, match="too short"):
        store.add("bob", "clinician", "short")


def test_lockout_grows_exponentially_and_survives_a_new_limiter(tmp_path: Path) -> None:
    limiter = LoginLimiter(tmp_path / "lock.yaml", after=3, base=30, maximum=100)
    # each attempt after the lock has run out: 3 failures lock for 30 s, then 60, then the maximum
    lockouts = [limiter.attempt("alice", now=t).lockout_s for t in (1000.0, 1000.0, 1000.0, 1031.0, 1092.0)]
    assert lockouts == [0, 0, 30, 60, 100]
    assert limiter.attempt("alice", now=1100.0).refused_s == pytest.approx(92)  # locked: not counted
    reopened = LoginLimiter(tmp_path / "lock.yaml", after=3, base=30, maximum=100)
    assert reopened.seconds_locked("alice", now=1142.0) == pytest.approx(50)
    assert reopened.seconds_locked("Alice ", now=1142.0) == pytest.approx(50), "names compare case-insensitively"
    assert reopened.seconds_locked("bob", now=1142.0) == 0
    assert "alice" not in (tmp_path / "lock.yaml").read_text(), "names are stored hashed"
    reopened.success("alice")
    assert reopened.seconds_locked("alice", now=1142.0) == 0


def test_audit_log_appends_one_json_line_per_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record("login", "alice", "clinician")
    log.record("view_patient", "alice", "clinician", "p0123456789abcdef")
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[1])
    assert {k: entry[k] for k in ("user", "role", "patient", "action")} == {
        "user": "alice",
        "role": "clinician",
        "patient": "p0123456789abcdef",
        "action": "view_patient",
    }
    assert entry["time"].endswith("+00:00")
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        log.record("delete_everything", "alice", "clinician")


def test_risk_bands_defaults_and_settings_file(tmp_path: Path) -> None:
    bands = RiskBands()
    assert [bands.band(r) for r in (0.1, 0.2, 0.49, 0.5, float("nan"))] == [
        "low",
        "intermediate",
        "intermediate",
        "high",
        "not scored",
    ]
    path = tmp_path / "settings.yaml"
    path.write_text("risk_bands: {intermediate: 0.1, high: 0.3}\nidle_timeout_minutes: 5\n")
    settings = load_settings(path)
    assert settings.risk_bands.band(0.2) == "intermediate" and settings.idle_timeout_minutes == 5
    path.write_text("risk_bands: {intermediate: 0.6, high: 0.3}\n")
    with pytest.raises(ClinFuseError, match="invalid"):
        load_settings(path)
    path.write_text("idle_timout_minutes: 5\n")
    with pytest.raises(ClinFuseError, match="invalid"):
        load_settings(path)  # misspelt options are errors
    assert load_settings(tmp_path / "absent.yaml") == DashboardSettings()


def test_cohort_filters() -> None:
    table = with_bands(
        pd.DataFrame(
            {
                "patient_id": ["a", "b", "c", "d"],
                "risk": [0.7, 0.3, 0.1, np.nan],
                "sex": ["F", "M", "F", None],
                "age": [80, 55, 40, 60],
                "modalities_present": ["imaging+ehr", "genomics+ehr", "imaging+genomics+ehr", ""],
            }
        ),
        RiskBands(),
    )
    names = ["imaging", "genomics", "ehr"]
    assert CohortFilter(bands=("high",)).apply(table, names)["patient_id"].tolist() == ["a"]
    assert CohortFilter(missing=("imaging",)).apply(table, names)["patient_id"].tolist() == ["b", "d"]
    assert CohortFilter(sexes=("F",)).apply(table, names)["patient_id"].tolist() == ["a", "c"]
    assert CohortFilter(age_range=(50, 70)).apply(table, names)["patient_id"].tolist() == ["b", "d"]
    assert CohortFilter(search="C").apply(table, names)["patient_id"].tolist() == ["c"]


def test_disagreement_note() -> None:
    bands = RiskBands()
    assert disagreement(0.30, 0.32, bands, 0.15) is None
    note = disagreement(0.60, 0.15, bands, 0.15)
    assert "high band" in note and "low band" in note and "45 percentage points" in note
    assert "imaging" in disagreement(0.3, 0.3, bands, 0.15, {"imaging": 0.5}, {"imaging": -0.4})


def test_waterfall_shows_absent_modality_as_absent_not_zero() -> None:
    figure = charts.modality_waterfall(0.4, {"imaging": 0.1, "ehr": -0.05}, ["genomics"], 0.45)
    waterfall = figure.data[0]
    assert list(waterfall.x) == ["base risk", "imaging", "ehr", "patient risk"]
    assert "genomics" not in waterfall.x, "an absent modality never gets a (zero) bar"
    assert list(figure.data[1].x) == ["genomics (absent)"] and "absent" in figure.data[1].text[0]
    assert np.isclose(sum(waterfall.y[:-1]), waterfall.y[-1])


def test_image_window_level_and_overlay() -> None:
    image = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    plain = charts.compose_image(image, level=0.5, width=1.0, scale=1)
    assert plain.shape == (4, 4, 3) and plain.dtype == np.uint8 and plain[0, 0, 0] == 0 and plain[-1, -1, 0] == 255
    narrow = charts.compose_image(image, level=0.5, width=0.2, scale=1)
    assert (narrow[..., 0] == 0).sum() > (plain[..., 0] == 0).sum(), "a narrow window saturates more pixels"
    heat = np.zeros((4, 4), np.float32)
    heat[1, 1] = 1.0
    overlaid = charts.compose_image(image, 0.5, 1.0, heat, opacity=0.8, scale=2)
    assert overlaid.shape == (8, 8, 3)
    assert overlaid[2, 2, 0] > overlaid[2, 2, 2], "the hot spot is tinted red/yellow"
    assert (overlaid[0:2, 0:2] == charts.compose_image(image, 0.5, 1.0, scale=2)[0:2, 0:2]).all()


def _clinfuse(clinfuse_exe: Path, *args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(clinfuse_exe), *args], input=stdin, capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def test_users_cli_demo_prints_passwords_once(clinfuse_exe: Path, tmp_path: Path) -> None:
    env = {"CLINFUSE_DASHBOARD_USERS": str(tmp_path / "users.yaml")}
    first = _clinfuse(clinfuse_exe, "users", "demo", env=env)
    assert first.returncode == 0, first.stderr
    passwords = dict(line.split()[1::2] for line in first.stdout.splitlines() if line.strip().startswith("user "))
    assert set(passwords) == {"demo-clinician", "demo-scientist"}
    store = UserStore(tmp_path / "users.yaml")
    assert store.verify("demo-clinician", passwords["demo-clinician"]).role == "clinician"
    assert store.verify("demo-scientist", passwords["demo-scientist"]).role == "data_scientist"
    second = _clinfuse(clinfuse_exe, "users", "demo", env=env)
    assert second.returncode == 0 and passwords["demo-clinician"] not in second.stdout and "already" in second.stdout
    added = _clinfuse(
        clinfuse_exe,
        "users",
        "add",
        "erin",
        "--role",
        "clinician",
        "--password-stdin",
        env=env,
        stdin="a long enough password\n",
    )
    assert added.returncode == 0, added.stderr
    listed = _clinfuse(clinfuse_exe, "users", "list", env=env)
    assert "erin" in listed.stdout and "$2b$" not in listed.stdout
    bad = _clinfuse(clinfuse_exe, "users", "add", "frank", "--role", "admin", "--password-stdin", env=env, stdin="x\n")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown role")


def test_dashboard_cli_refuses_without_users_or_scores(clinfuse_exe: Path, tmp_path: Path, demo_scores: Path) -> None:
    env = {"CLINFUSE_DASHBOARD_USERS": str(tmp_path / "users.yaml")}
    missing = _clinfuse(clinfuse_exe, "dashboard", "--scores", str(tmp_path / "none.parquet"), env=env)
    assert missing.returncode == 2 and "not found" in missing.stderr
    not_scores = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(not_scores)
    foreign = _clinfuse(clinfuse_exe, "dashboard", "--scores", str(not_scores), env=env)
    assert foreign.returncode == 2 and "not written by `clinfuse score`" in foreign.stderr
    no_users = _clinfuse(clinfuse_exe, "dashboard", "--scores", str(demo_scores), env=env)
    assert no_users.returncode == 2 and "clinfuse users add" in no_users.stderr


def test_model_decision_tables_format_estimates_and_tolerate_older_metrics() -> None:
    from clinfuse.dashboards import model_decision

    point = {"rule": "risk >= 0.2", "threshold": 0.2, "sensitivity": 0.8, "sensitivity_ci": [0.7, 0.9],
             "specificity": 0.6, "specificity_ci": [0.5, 0.7], "ppv": None, "ppv_ci": None, "npv": 0.9,
             "npv_ci": [0.85, 0.95], "alerts_per_100": 42.0, "alerts_per_100_ci": [38.5, 45.5]}  # fmt: skip
    metrics = {
        "fusion": {"ece": 0.04, "calibration_intercept": 0.1, "calibration_intercept_ci": [-0.2, 0.4],
                   "calibration_slope": 0.9, "calibration_slope_ci": None, "operating_points": [point]},
        "subgroups": {"sex=F": {"n": 30, "positives": 4, "observed_risk": 0.133, "mean_predicted_risk": 0.15,
                                "calibration_intercept": -0.1, "calibration_slope": None,
                                "calibration_slope_note": "too few: 4 events, 26 non-events"}},
        "decision_curve": {"thresholds": [0.1, 0.2], "net_benefit": {"fusion": [0.2, 0.1], "treat_all": [0.1, 0.0],
                                                                     "treat_none": [0.0, 0.0]}},
    }  # fmt: skip
    row = model_decision.operating_points_table(metrics).iloc[0]
    assert (row["model"], row["sensitivity"], row["PPV"], row["alerts per 100"]) == (
        "fusion", "0.800 [0.700, 0.900]", "n/a", "42.0 [38.5, 45.5]")  # fmt: skip
    calibration = model_decision.calibration_table(metrics).iloc[0]
    assert calibration["calibration intercept"] == "0.100 [-0.200, 0.400]"
    assert calibration["calibration slope"] == "0.900", "no CI where the bootstrap gave none"
    assert model_decision.group_calibration_table(metrics).iloc[0]["slope"].startswith("too few")
    chart = model_decision.decision_curve_chart(metrics)
    assert [trace.name for trace in chart.data] == ["fusion", "treat all", "treat none"]
    assert list(chart.data[0].x) == [10.0, 20.0]

    older = {"fusion": {"auroc": 0.8, "ece": 0.05}, "subgroups": {"sex=F": {"n": 30, "positives": 4, "auroc": 0.7}}}
    assert model_decision.operating_points_table(older).empty and model_decision.calibration_table(older).empty
    assert model_decision.group_calibration_table(older).empty and model_decision.decision_curve_chart(older) is None


def test_an_explanation_being_prefetched_is_waited_for_and_a_failure_is_retried(demo_scores: Path) -> None:
    """The page asking for the patient the background is explaining gets that result (computed once); a failed
    explanation is not kept: asking again computes it again."""
    from clinfuse.dashboards.data_source import PatientData, load_scores

    data = PatientData(demo_scores)
    first, second = load_scores(demo_scores).highest_risk(2)
    calls: list[str] = []
    computing = threading.Event()

    def compute(patient: str) -> str:
        calls.append(patient)
        computing.set()
        time.sleep(0.3)  # the page asks while the prefetcher is still at it
        if patient == second and calls.count(second) == 1:
            raise ClinFuseError("explanation failed", "try again")
        return f"explanation of {patient}"

    data._compute = compute  # the model is not needed for what is tested here
    data.prefetch([first])
    assert computing.wait(10)
    assert data.explain(first) == f"explanation of {first}" and calls == [first]
    with pytest.raises(ClinFuseError, match="explanation failed"):
        data.explain(second)
    assert data.explain(second) == f"explanation of {second}" and calls == [first, second, second]
