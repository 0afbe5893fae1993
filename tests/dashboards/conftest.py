"""Dashboard fixtures: users, and per-test users/audit/settings paths (scores: `demo_scores` of tests/conftest.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORDS = {"clara": "clinician-password-1", "dana": "scientist-password-2"}
ROLES = {"clara": "clinician", "dana": "data_scientist"}


@pytest.fixture(scope="session")
def users_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A users file with one clinician and one data scientist (hashed once per session: bcrypt is slow)."""
    from clinfuse.dashboards.users import UserStore

    path = tmp_path_factory.mktemp("users") / "users.yaml"
    store = UserStore(path)
    for name, password in PASSWORDS.items():
        store.add(name, ROLES[name], password)
    return path


@dataclass(frozen=True)
class DashboardEnv:
    scores: Path
    users: Path
    audit: Path
    settings: Path
    passwords: dict[str, str]

    def audit_entries(self) -> list[dict]:
        from clinfuse.dashboards.audit import AuditLog

        return AuditLog(self.audit).entries()


@pytest.fixture
def dashboard_env(
    demo_scores: Path, users_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> DashboardEnv:
    """Private users file (and lockout state), audit log and settings for one test, exported to the app."""
    folder = tmp_path / "dashboard"
    folder.mkdir()
    users = folder / "users.yaml"
    shutil.copy(users_template, users)
    env = DashboardEnv(
        scores=demo_scores,
        users=users,
        audit=folder / "audit.jsonl",
        settings=folder / "settings.yaml",
        passwords=dict(PASSWORDS),
    )
    env.settings.write_text("idle_timeout_minutes: 15\nlockout_after_failures: 3\nlockout_base_seconds: 60\n")
    monkeypatch.setenv("CLINFUSE_DASHBOARD_SCORES", str(env.scores))
    monkeypatch.setenv("CLINFUSE_DASHBOARD_USERS", str(env.users))
    monkeypatch.setenv("CLINFUSE_AUDIT_LOG", str(env.audit))
    monkeypatch.setenv("CLINFUSE_DASHBOARD_CONFIG", str(env.settings))
    return env
