"""The dashboard's audit log: one JSON line per login, logout, patient view and export, append-only.

Each line: {"time": UTC ISO-8601, "user", "role", "action", "patient": pseudonym or null, ...detail}. Patients are
recorded by pseudonym only, even where the screen shows source ids. The file is only ever opened with O_APPEND
(mode 600) and each record is one write() under an exclusive lock, so concurrent sessions never interleave lines.
For tamper evidence at the operating-system level, see docs/dashboard.md (`chattr +a`, log shipping).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path

VIEW_PATIENT = "view_patient"
EXPORT = "export"
LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGIN_LOCKED = "login_locked"
LOGOUT = "logout"
SESSION_EXPIRED = "session_expired"
ACTIONS = (VIEW_PATIENT, EXPORT, LOGIN, LOGIN_FAILED, LOGIN_LOCKED, LOGOUT, SESSION_EXPIRED)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def record(self, action: str, user: str | None, role: str | None, patient: str | None = None, **detail) -> dict:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": user,
            "role": role,
            "action": action,
            "patient": patient,
            **detail,
        }
        line = (json.dumps(entry, sort_keys=False, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[dict]:
        """Every record, oldest first (for tests and reviews; the dashboard never reads the log)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
