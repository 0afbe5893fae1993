"""The pseudonymisation key: a key file others may read or write, or a guessable key, is refused with the fix.

Covers issue 17, item 10b. Whoever holds the key can re-identify every pseudonym, so a world-readable key file or
a key like 'aaaa...' protects nothing.
"""

from __future__ import annotations

import base64
import os
import random
import stat
from pathlib import Path

import pytest
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security import load_pseudonym_key
from clinfuse.platform.security.pseudonym import HOME_ENV, KEY_ENV, KEY_FILE_ENV

RANDOM_KEY = "5be2c08f6d1a94e7b3f0c6d29a8e4b17f25c0d9e6a3b18f4c7e2d05a9b6f31c8"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No key from the outside world; an empty, private CLINFUSE_HOME."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    home = tmp_path / "clinfuse-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    return home


def _key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, mode: int) -> Path:
    path = tmp_path / "site.key"
    path.write_text(text + "\n")
    path.chmod(mode)
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    return path


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666, 0o620, 0o601], ids=oct)
def test_a_key_file_open_to_other_users_is_refused_with_the_chmod_fix(tmp_path, monkeypatch, mode: int) -> None:
    path = _key_file(tmp_path, monkeypatch, RANDOM_KEY, mode)
    with pytest.raises(ClinFuseError) as caught:
        load_pseudonym_key()
    assert f"pseudonym key file {path} is open to other users (mode {mode:04o})" in str(caught.value)
    assert caught.value.fix == f"run `chmod 600 {path}`"


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440], ids=oct)
def test_a_private_or_group_readable_key_file_is_accepted(tmp_path, monkeypatch, mode: int) -> None:
    """Group read stays allowed: Kubernetes mounts the secret as 0440 for the pod's fsGroup."""
    _key_file(tmp_path, monkeypatch, RANDOM_KEY, mode)
    assert load_pseudonym_key() == RANDOM_KEY.encode()


def test_the_cli_refuses_a_world_readable_key_file_in_one_line(probe, tmp_path: Path, monkeypatch) -> None:
    path = _key_file(tmp_path, monkeypatch, RANDOM_KEY, 0o644)
    (tmp_path / "cohort.csv").write_text("patient_id,label,index_time,split\nP0,0,2150-01-01,train\n")
    (tmp_path / "genomics.csv").write_text("patient_id,g1\nP0,1.5\n")
    config = tmp_path / "cohort.yaml"
    config.write_text(
        "name: key\ncohort: {path: cohort.csv, split: split}\n"
        "modalities: [{name: genomics, kind: table, path: genomics.csv}]\n"
    )
    outcome = probe.run_main(["ingest", "--config", str(config), "--out", str(tmp_path / "cache")])
    probe.assert_user_error(outcome, str(path), "open to other users", "chmod 600")
    assert not (tmp_path / "cache").exists()


GUESSABLE = ["a" * 64, "ab" * 32, "0123456789abcdef" * 2, "abc" * 11, "a" * 40 + "b", "0" * 31 + "1" * 2]


@pytest.mark.parametrize("key", GUESSABLE)
def test_a_guessable_key_is_refused_with_the_fix_to_regenerate(tmp_path, monkeypatch, key: str) -> None:
    monkeypatch.setenv(KEY_ENV, key)
    with pytest.raises(ClinFuseError, match=f"pseudonym key from \\${KEY_ENV} is guessable") as caught:
        load_pseudonym_key()
    assert "secrets.token_hex(32)" in caught.value.fix
    monkeypatch.delenv(KEY_ENV)
    path = _key_file(tmp_path, monkeypatch, key, 0o600)
    with pytest.raises(ClinFuseError, match="guessable") as caught:
        load_pseudonym_key()
    assert str(path) in str(caught.value)


def test_random_keys_of_the_minimum_length_are_accepted(monkeypatch) -> None:
    """Hex, base64 and decimal keys of 32 characters, seeded so the test is reproducible."""
    rng = random.Random(17)
    for _ in range(2000):
        for key in (
            rng.randbytes(16).hex(),
            base64.urlsafe_b64encode(rng.randbytes(24)).decode(),
            "".join(rng.choice("0123456789") for _ in range(32)),
        ):
            monkeypatch.setenv(KEY_ENV, key)
            assert load_pseudonym_key() == key.encode()


def test_the_generated_key_is_private_and_accepted_even_under_a_permissive_umask(clean_environment: Path) -> None:
    previous = os.umask(0)
    try:
        key = load_pseudonym_key()
    finally:
        os.umask(previous)
    path = clean_environment / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_pseudonym_key() == key  # read back through every check


def test_a_key_file_that_is_not_text_is_one_error(tmp_path, monkeypatch) -> None:
    path = tmp_path / "site.key"
    path.write_bytes(bytes(range(256)))
    path.chmod(0o600)
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    with pytest.raises(ClinFuseError, match="cannot be read as text"):
        load_pseudonym_key()
