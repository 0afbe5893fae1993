"""Dashboard users (bcrypt hashes in a YAML file, mode 600) and the sign-in lockout after wrong passwords.

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
import functools
import hashlib
import ipaddress
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import yaml
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.file_lock import exclusive

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
# Wrong passwords from one client address, over all user names, before that client is locked out (see LoginLimiter).
CLIENT_LOCKOUT_AFTER = 10
CLIENT_FAILURE_MEMORY_S = 3600  # a client's count starts again after an hour without a wrong password
LOCAL_CLIENT = "local"  # connections from this machine (Streamlit reports no address for loopback)


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


def _cost(password_hash: str) -> int | None:
    """The cost field of a bcrypt hash ($2b$12$...), or None for anything else."""
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() and 4 <= int(parts[2]) <= 31 else None


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    """Checked against when the user name is unknown, at the cost of the stored hashes, so that a wrong name
    costs the same bcrypt work (and time) as a wrong password; made once per cost, on first use."""
    return bcrypt.hashpw(b"clinfuse-no-such-user", bcrypt.gensalt(cost))


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


def _locked(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock beside `path`, so concurrent writers (CLI, server sessions) do not lose updates."""
    return exclusive(path.with_name(f".{path.name}.lock"))


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
        users = self._read()
        entry = users.get(name)
        dummy = self._dummy(users)  # made on the first sign-in of any name, so that one costs the same too
        stored = entry.get("password_hash", "").encode() if isinstance(entry, dict) else dummy
        try:
            matches = bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], stored)
        except ValueError:  # malformed hash in the file
            return None
        if not matches or entry is None or entry.get("role") not in ROLES:
            return None
        return User(name, entry["role"])

    def prepare(self) -> None:
        """Make the dummy hash now (the dashboard's warm-up), so that the first sign-in does not pay for it."""
        self._dummy(self._read())

    @staticmethod
    def _dummy(users: dict[str, dict]) -> bytes:
        """A dummy hash at the cost most of the stored hashes have (a file written with another cost, or with
        hashes upgraded over time, still makes an unknown name indistinguishable from a typical known one)."""
        costs = Counter(
            _cost(str(entry.get("password_hash", ""))) for entry in users.values() if isinstance(entry, dict)
        )
        costs.pop(None, None)
        cost = max(costs, key=lambda c: (costs[c], c)) if costs else BCRYPT_ROUNDS
        return _dummy_hash(cost)


@dataclass(frozen=True)
class Attempt:
    """The limiter's answer to a sign-in attempt."""

    refused_s: float  # > 0: refused without checking the password; seconds until this client may try this name
    lockout_s: float  # the lockout in force should the password be wrong (the attempt is already counted)


def client_id(address: str | None) -> str:
    """The client a sign-in comes from, as the limiter counts it: LOCAL_CLIENT for a loopback connection (which
    Streamlit reports as None), an IPv4 address, or the /64 network of an IPv6 address (one host usually holds
    a whole /64, so single IPv6 addresses would give an attacker endless fresh clients)."""
    if not address:
        return LOCAL_CLIENT
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginLimiter:
    """Counts wrong passwords in a file beside the users file, so a page reload, a restart or a second server
    process sees the same counts.

    Two counters, each of which locks out for base * 2^(failures - threshold) seconds (at most `maximum`) once
    it reaches its threshold:
    - per user name and client address, threshold `after`: guesses at one account from one client. Keyed by
      the client too, so that an attacker elsewhere cannot lock a user out (a lockout is not a denial of
      service for the user's own machine);
    - per client address over all names, threshold `client_after`: one client spraying guesses over many names.
      It starts again after CLIENT_FAILURE_MEMORY_S without a failure, so the occasional typos of the many
      users behind one shared address do not add up to a lockout.

    `attempt` is the one atomic step, taken under an exclusive lock of the file: refuse while either counter
    is locked, else count the attempt as a failure in advance. The password is checked after the lock is
    released (a slow bcrypt check never holds up other sign-ins), yet at most `after` checks can ever run for
    one name and client, however many arrive at once, across threads and processes. `success` takes the
    advance count back. Names and addresses are stored hashed: a password typed as a name never lands on disk.
    """

    def __init__(
        self,
        path: Path,
        after: int = 3,
        base: float = 30,
        maximum: float = 3600,
        client_after: int = CLIENT_LOCKOUT_AFTER,
    ) -> None:
        self.path = Path(path)
        self.after, self.base, self.maximum, self.client_after = after, base, maximum, client_after

    @staticmethod
    def _keys(name: str, client: str) -> tuple[str, str]:
        """(name-and-client key, client key)."""
        name_part = name.strip().lower().encode()
        pair = hashlib.sha256(b"clinfuse-login:" + name_part + b"\0" + client.encode()).hexdigest()[:24]
        return f"n{pair}", f"c{hashlib.sha256(b'clinfuse-client:' + client.encode()).hexdigest()[:24]}"

    def _read(self) -> dict[str, dict]:
        try:
            data = yaml.safe_load(self.path.read_text())
        except (FileNotFoundError, yaml.YAMLError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, state: dict[str, dict], now: float) -> None:
        recent = {k: v for k, v in state.items() if now - float(v.get("last", 0)) < FAILURE_MEMORY_S}
        _write_private(self.path, yaml.safe_dump(recent))

    def _count_failure(self, state: dict[str, dict], name: str, client: str, now: float) -> float:
        """Add one failure to both counters; returns the lockout (seconds) now in force for this name and client."""
        lockout = 0.0
        pair, client_key = self._keys(name, client)
        quiet = state.get(client_key)
        if quiet is not None and now - float(quiet.get("last", 0)) >= CLIENT_FAILURE_MEMORY_S:
            del state[client_key]  # a shared address (a ward's NAT) does not collect its users' typos all day
        for key, threshold in ((pair, self.after), (client_key, self.client_after)):
            entry = state.setdefault(key, {"failures": 0, "locked_until": 0.0})
            entry["failures"] = int(entry["failures"]) + 1
            entry["last"] = now
            if entry["failures"] >= threshold:
                locked = min(self.maximum, self.base * 2 ** (entry["failures"] - threshold))
                entry["locked_until"] = now + locked
                lockout = max(lockout, locked)
        return lockout

    def _locked(self, state: dict[str, dict], name: str, client: str, now: float) -> float:
        until = [float(state.get(key, {}).get("locked_until", 0)) for key in self._keys(name, client)]
        return max(0.0, max(until) - now)

    def seconds_locked(self, name: str, client: str = LOCAL_CLIENT, now: float | None = None) -> float:
        """Seconds until `client` may try `name` again (0 when it may try now)."""
        now = time.time() if now is None else now
        return self._locked(self._read(), name, client, now)

    def attempt(self, name: str, client: str = LOCAL_CLIENT, now: float | None = None) -> Attempt:
        """Refuse a locked sign-in, or count it as a failure before its password is checked (see the class)."""
        now = time.time() if now is None else now
        with _locked(self.path):
            state = self._read()
            refused = self._locked(state, name, client, now)
            if refused > 0:
                return Attempt(refused_s=refused, lockout_s=0.0)
            lockout = self._count_failure(state, name, client, now)
            self._write(state, now)
        return Attempt(refused_s=0.0, lockout_s=lockout)

    def success(self, name: str, client: str = LOCAL_CLIENT, now: float | None = None) -> None:
        """The right password: clear the name's count for this client and take back the client's advance count."""
        now = time.time() if now is None else now
        pair, client_key = self._keys(name, client)
        with _locked(self.path):
            state = self._read()
            state.pop(pair, None)
            entry = state.get(client_key)
            if entry is not None:
                entry["failures"] = int(entry["failures"]) - 1
                if entry["failures"] <= 0:
                    del state[client_key]
                elif entry["failures"] < self.client_after:
                    entry["locked_until"] = 0.0
            self._write(state, now)


def limiter_path(users_file: Path) -> Path:
    """The lockout state lives beside the users file (users.yaml -> users.lockout.yaml)."""
    return users_file.with_name(f"{users_file.stem}.lockout.yaml")
