"""Dashboard users (bcrypt hashes in a YAML file, mode 600) and the per-user-name lockout after wrong passwords.

Why a small module of our own rather than streamlit-authenticator (0.4): that package keeps the login in a
JWT cookie valid for days (we want an idle timeout measured in minutes, enforced server side), rewrites the
credentials file to count failed attempts (mixing secrets with state) without any lockout, and needs a custom
cookie component that streamlit.testing's AppTest cannot run. Password checking itself is bcrypt's job; this
module only stores hashes, checks them and counts failures.

Users file (`clinfuse users add` writes it; never edit hashes by hand):

    users:
      alice:
        role: clinician
        password_hash: $2b$12$...
        created: 2025-01-01T00:00:00+00:00
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import yaml
from clinfuse.platform.errors import ClinFuseError

CLINICIAN = "clinician"
DATA_SCIENTIST = "data_scientist"
ROLES = (CLINICIAN, DATA_SCIENTIST)
# Pages each role may open; the app builds its navigation from this and every page checks it again.
PAGES_BY_ROLE: dict[str, tuple[str, ...]] = {
    CLINICIAN: ("cohort", "patient"),
    DATA_SCIENTIST: ("cohort", "patient", "model"),
}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused rather than silently truncated
BCRYPT_ROUNDS = 12
FAILURE_MEMORY_S = 24 * 3600  # a failure older than this no longer counts towards a lockout


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def may_open(self, page: str) -> bool:
        return page in PAGES_BY_ROLE.get(self.role, ())


def hash_password(password: str) -> str:
    check_password_rules(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ClinFuseError(f"password too short ({len(password)} characters)", f"use at least {MIN_PASSWORD_CHARS}")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ClinFuseError("password too long for bcrypt", f"use at most {MAX_PASSWORD_BYTES} bytes")


# Checked against when the user name is unknown, so that a wrong name costs as much time as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"clinfuse-no-such-user", bcrypt.gensalt(4))


def _write_private(path: Path, text: str) -> None:
    """Replace a file atomically with mode 600 (folder 700 when created)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, so concurrent writers (CLI, server sessions) do not lose updates."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class UserStore:
    """The users file: names, roles and bcrypt hashes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def _read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ClinFuseError(
                f"users file {self.path} is not valid YAML", "recreate it with `clinfuse users add`"
            ) from exc
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise ClinFuseError(f"users file {self.path} has no 'users' mapping", "see docs/dashboard.md")
        return users

    def users(self) -> list[User]:
        return [User(name, entry.get("role", "")) for name, entry in sorted(self._read().items())]

    def add(self, name: str, role: str, password: str, replace: bool = False) -> User:
        if not NAME_PATTERN.match(name):
            raise ClinFuseError(f"user name '{name}' is not allowed", "use letters, digits and _ . @ - (max 64)")
        if role not in ROLES:
            raise ClinFuseError(f"unknown role '{role}'", f"use one of {', '.join(ROLES)}")
        password_hash = hash_password(password)
        with _locked(self.path):
            users = self._read()
            if name in users and not replace:
                raise ClinFuseError(f"user '{name}' already exists", "pass --replace to set a new password or role")
            users[name] = {
                "role": role,
                "password_hash": password_hash,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._write(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        with _locked(self.path):
            users = self._read()
            if name not in users:
                raise ClinFuseError(f"no user '{name}' in {self.path}", "see `clinfuse users list`")
            del users[name]
            self._write(users)

    def _write(self, users: dict[str, dict]) -> None:
        header = "# ClinFuse dashboard users: bcrypt hashes only. Manage with `clinfuse users add/remove/list`.\n"
        _write_private(self.path, header + yaml.safe_dump({"users": users}, sort_keys=True))

    def verify(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (same cost whether or not the name exists)."""
        entry = self._read().get(name)
        stored = entry.get("password_hash", "").encode() if isinstance(entry, dict) else _DUMMY_HASH
        try:
            matches = bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], stored)
        except ValueError:  # malformed hash in the file
            return None
        if not matches or entry is None or entry.get("role") not in ROLES:
            return None
        return User(name, entry["role"])


class LoginLimiter:
    """Counts consecutive wrong passwords per user name in a file, so a page reload or restart keeps the lockout.

    After `after` failures, each further attempt within the lockout is refused without checking the password;
    the lockout lasts base * 2^(failures - after) seconds, at most `maximum`. A success clears the count. Names
    are stored hashed: a password typed into the name field never lands on disk.
    """

    def __init__(self, path: Path, after: int = 3, base: float = 30, maximum: float = 3600) -> None:
        self.path = Path(path)
        self.after, self.base, self.maximum = after, base, maximum

    @staticmethod
    def _key(name: str) -> str:
        return hashlib.sha256(b"clinfuse-login:" + name.strip().lower().encode()).hexdigest()[:24]

    def _read(self) -> dict[str, dict]:
        try:
            data = yaml.safe_load(self.path.read_text())
        except (FileNotFoundError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    def seconds_locked(self, name: str, now: float | None = None) -> float:
        """Seconds until `name` may try again (0 when it may try now)."""
        now = time.time() if now is None else now
        entry = self._read().get(self._key(name))
        if not entry:
            return 0.0
        return max(0.0, float(entry.get("locked_until", 0)) - now)

    def failure(self, name: str, now: float | None = None) -> float:
        """Record a wrong password; returns the lockout (seconds) now in force for that name."""
        now = time.time() if now is None else now
        with _locked(self.path):
            state = self._read()
            state = {k: v for k, v in state.items() if now - float(v.get("last", 0)) < FAILURE_MEMORY_S}
            entry = state.setdefault(self._key(name), {"failures": 0, "locked_until": 0.0})
            entry["failures"] = int(entry["failures"]) + 1
            entry["last"] = now
            lockout = 0.0
            if entry["failures"] >= self.after:
                lockout = min(self.maximum, self.base * 2 ** (entry["failures"] - self.after))
                entry["locked_until"] = now + lockout
            _write_private(self.path, yaml.safe_dump(state))
        return lockout

    def success(self, name: str) -> None:
        with _locked(self.path):
            state = self._read()
            if state.pop(self._key(name), None) is not None:
                _write_private(self.path, yaml.safe_dump(state))


def limiter_path(users_file: Path) -> Path:
    """The lockout state lives beside the users file (users.yaml -> users.lockout.yaml)."""
    return users_file.with_name(f"{users_file.stem}.lockout.yaml")
