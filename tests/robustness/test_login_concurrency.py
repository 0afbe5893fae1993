"""Sign-in under concurrency and from several clients: the lockout holds when many wrong passwords arrive at
once (threads of one server, and several server processes sharing the lockout file), an attacker cannot lock a
user out of other clients, one client cannot spray passwords over many names, and an unknown name costs the same
bcrypt work as a known one.

The sign-ins go through the dashboard's own `login._attempt` (outside a Streamlit runtime its `st.*` calls do
nothing) with the production bcrypt cost; outcomes are read from the audit log, which every process appends to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import bcrypt
import pytest
from clinfuse.dashboards import login
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.users import BCRYPT_ROUNDS, UserStore

PASSWORD = "correct horse battery"
ATTEMPTS = 12
AFTER = 3  # the default lockout_after_failures


def _dashboard_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cost: int) -> dict[str, str]:
    """A users file with alice (bcrypt at `cost`), an audit log and the default settings, exported to the app."""
    users = tmp_path / "dashboard" / "users.yaml"
    users.parent.mkdir()
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(cost)).decode()
    users.write_text(f"users:\n  alice:\n    role: clinician\n    password_hash: '{stored}'\n")
    env = {
        "CLINFUSE_HOME": str(tmp_path / "home"),
        "CLINFUSE_DASHBOARD_USERS": str(users),
        "CLINFUSE_AUDIT_LOG": str(tmp_path / "dashboard" / "audit.jsonl"),
        "CLINFUSE_DASHBOARD_SCORES": str(tmp_path / "scores.parquet"),
    }
    monkeypatch.delenv("CLINFUSE_DASHBOARD_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def dashboard_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """At the production bcrypt cost: the checks take as long as in production, so the old race shows."""
    return _dashboard_files(tmp_path, monkeypatch, BCRYPT_ROUNDS)


@pytest.fixture
def cheap_dashboard_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """At bcrypt's lowest cost (unknown names follow the stored cost), for tests that count, not race."""
    return _dashboard_files(tmp_path, monkeypatch, 4)


def _outcomes(context: AppContext) -> Counter:
    return Counter(entry["action"] for entry in context.audit.entries())


def _in_threads(count: int, action) -> None:
    """Run `action(i)` in `count` threads released together, as simultaneous browser sessions are."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            action(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def bcrypt_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The hashes bcrypt.checkpw is asked to check, in order (the real check still runs)."""
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def recording_checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording_checkpw)
    return checked


def test_simultaneous_wrong_passwords_in_one_server_check_at_most_the_limit(
    dashboard_files: dict[str, str], bcrypt_checks: list[bytes]
) -> None:
    context = AppContext.from_environment()
    checks = bcrypt_checks
    _in_threads(ATTEMPTS, lambda i: login._attempt(context, "alice", f"wrong password {i}"))

    assert len(checks) == AFTER, f"{len(checks)} passwords were checked; the lockout allows {AFTER}"
    assert _outcomes(context) == {"login_failed": AFTER, "login_locked": ATTEMPTS - AFTER}
    login._attempt(context, "alice", PASSWORD)
    assert _outcomes(context)["login"] == 0, "the right password is refused while the name is locked"


CHILD = textwrap.dedent(
    """
    import sys, threading
    from clinfuse.dashboards import login
    from clinfuse.dashboards.cached import AppContext

    context = AppContext.from_environment()
    threads = int(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # the parent releases every process at once
    barrier = threading.Barrier(threads)

    def run(i):
        barrier.wait()
        login._attempt(context, "alice", f"wrong password {sys.argv[2]}-{i}")

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    """
)


def test_simultaneous_wrong_passwords_from_several_server_processes_check_at_most_the_limit(
    dashboard_files: dict[str, str],
) -> None:
    processes, threads = 2, ATTEMPTS // 2  # each process imports streamlit: keep them few
    env = {**os.environ, **dashboard_files}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(threads), str(p)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for p in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            child.stdin.close()
            assert child.wait(timeout=120) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert _outcomes(AppContext.from_environment()) == {"login_failed": AFTER, "login_locked": ATTEMPTS - AFTER}


def test_an_attacker_cannot_lock_a_user_out_of_other_clients(
    cheap_dashboard_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = AppContext.from_environment()
    monkeypatch.setattr(login, "client_address", lambda: "203.0.113.9")
    for i in range(AFTER + 2):
        login._attempt(context, "alice", f"wrong password {i}")
    assert _outcomes(context) == {"login_failed": AFTER, "login_locked": 2}
    login._attempt(context, "alice", PASSWORD)
    assert _outcomes(context)["login"] == 0, "the attacking client stays locked, even with the right password"

    monkeypatch.setattr(login, "client_address", lambda: "198.51.100.7")
    login._attempt(context, "alice", PASSWORD)
    assert _outcomes(context)["login"] == 1, "alice signs in from her own machine"


def test_one_client_cannot_spray_passwords_over_many_names(
    cheap_dashboard_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinfuse.dashboards.users import CLIENT_LOCKOUT_AFTER  # inside: the other probes run on older code too

    context = AppContext.from_environment()
    monkeypatch.setattr(login, "client_address", lambda: "203.0.113.9")
    names = [f"user{i}" for i in range(CLIENT_LOCKOUT_AFTER)]
    for name in names:  # one guess per name never reaches the per-name limit
        login._attempt(context, name, "Winter2025!")
    assert _outcomes(context) == {"login_failed": CLIENT_LOCKOUT_AFTER}
    login._attempt(context, "alice", PASSWORD)
    assert _outcomes(context)["login"] == 0, "the spraying client is locked out for every name"

    monkeypatch.setattr(login, "client_address", lambda: "198.51.100.7")
    login._attempt(context, "alice", PASSWORD)
    assert _outcomes(context)["login"] == 1


def test_client_counts_per_ipv6_network_and_starts_again_after_a_quiet_hour(tmp_path: Path) -> None:
    from clinfuse.dashboards.users import (
        CLIENT_FAILURE_MEMORY_S,
        CLIENT_LOCKOUT_AFTER,
        Attempt,
        LoginLimiter,
        client_id,
    )

    assert client_id("2001:db8::1") == client_id("2001:db8::ffff:2") != client_id("2001:db8:0:1::1")
    assert client_id("::ffff:192.0.2.1") == "192.0.2.1" and client_id(None) == "local"
    limiter = LoginLimiter(tmp_path / "lockout.yaml")
    client = client_id("198.51.100.7")
    for i in range(CLIENT_LOCKOUT_AFTER - 1):
        assert limiter.attempt(f"user{i}", client, now=1000.0) == Attempt(refused_s=0, lockout_s=0)
    later = 1000.0 + CLIENT_FAILURE_MEMORY_S
    assert limiter.attempt("user-late", client, now=later).lockout_s == 0, "typos an hour apart do not add up"
    for i in range(CLIENT_LOCKOUT_AFTER - 2):
        assert limiter.attempt(f"other{i}", client, now=later).lockout_s == 0
    assert limiter.attempt("one-too-many", client, now=later).lockout_s == limiter.base
    assert limiter.attempt("anyone", client, now=later + 1).refused_s == pytest.approx(limiter.base - 1)
    assert limiter.attempt("anyone", client_id("198.51.100.8"), now=later + 1).refused_s == 0


def _cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


@pytest.mark.parametrize("stored_cost", [BCRYPT_ROUNDS, 10])
def test_an_unknown_name_costs_the_same_bcrypt_work_as_a_known_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored_cost: int, bcrypt_checks: list[bytes]
) -> None:
    users = Path(_dashboard_files(tmp_path, monkeypatch, stored_cost)["CLINFUSE_DASHBOARD_USERS"])
    checked = bcrypt_checks

    store = UserStore(users)
    assert store.verify("alice", "wrong password!") is None
    assert store.verify("mallory", "wrong password!") is None
    assert [_cost(h) for h in checked] == [stored_cost, stored_cost], "a name's existence must not change the work"
