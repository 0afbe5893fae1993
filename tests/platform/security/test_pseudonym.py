"""Keyed pseudonyms: stability, key dependence, key sources and the default key file."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key
from clinfuse.platform.security.pseudonym import HOME_ENV, KEY_ENV, KEY_FILE_ENV, MIN_KEY_CHARS, clinfuse_home

KEY = b"0123456789abcdef0123456789abcdef-test-key"
OTHER_KEY = b"fedcba9876543210fedcba9876543210-other-key"
HEX_KEY = "9c4f1e07b2d86a35f0e7c91b4d2a68e3157fb0c9d4a2e8613b7f05c9e2d4a1f6"  # random: a weak key is refused
IDS = ["10024395", "10025026", "P000123", "MRN-77-0042", "1"]
PSEUDONYM = re.compile(r"^p[0-9a-f]{16}$")


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No key from the outside world: every test starts with an empty, private CLINFUSE_HOME."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    home = tmp_path / "clinfuse-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    return home


def test_env_names_are_the_documented_ones() -> None:
    assert (KEY_ENV, KEY_FILE_ENV, HOME_ENV) == (
        "CLINFUSE_PSEUDONYM_KEY",
        "CLINFUSE_PSEUDONYM_KEY_FILE",
        "CLINFUSE_HOME",
    )
    assert MIN_KEY_CHARS == 32


def test_pseudonym_format() -> None:
    pseudonymise = Pseudonymiser(KEY)
    for pid in IDS:
        assert PSEUDONYM.match(pseudonymise(pid)), pseudonymise(pid)


def test_pseudonym_is_stable_for_one_key() -> None:
    first, second = Pseudonymiser(KEY), Pseudonymiser(bytes(KEY))
    assert [first(pid) for pid in IDS] == [first(pid) for pid in IDS]
    assert [first(pid) for pid in IDS] == [second(pid) for pid in IDS]


def test_pseudonym_is_the_keyed_hmac_sha256_of_the_id() -> None:
    expected = "p" + hmac.new(KEY, b"10024395", hashlib.sha256).hexdigest()[:16]
    assert Pseudonymiser(KEY)("10024395") == expected
    # not a plain (unkeyed) hash, which anyone could recompute from the id
    assert Pseudonymiser(KEY)("10024395")[1:] != hashlib.sha256(b"10024395").hexdigest()[:16]


def test_different_ids_give_different_pseudonyms() -> None:
    pseudonymise = Pseudonymiser(KEY)
    pseudonyms = [pseudonymise(f"{i:08d}") for i in range(2000)]
    assert len(set(pseudonyms)) == len(pseudonyms)


def test_different_keys_give_different_pseudonyms() -> None:
    first, other = Pseudonymiser(KEY), Pseudonymiser(OTHER_KEY)
    for pid in IDS:
        assert first(pid) != other(pid)


def test_pseudonym_does_not_contain_the_id() -> None:
    for key in (KEY, OTHER_KEY):
        pseudonymise = Pseudonymiser(key)
        for pid in IDS[:4]:
            assert pid.lower() not in pseudonymise(pid).lower()
            assert pid not in pseudonymise(pid)


def test_key_fingerprint_is_stable_short_and_key_dependent() -> None:
    fingerprint = Pseudonymiser(KEY).key_fingerprint()
    assert fingerprint == Pseudonymiser(KEY).key_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", fingerprint)
    assert fingerprint != Pseudonymiser(OTHER_KEY).key_fingerprint()
    assert fingerprint not in KEY.decode()


def test_disabled_pseudonymiser_is_the_identity() -> None:
    pseudonymise = Pseudonymiser(None, enabled=False)
    assert not pseudonymise.enabled
    for pid in IDS:
        assert pseudonymise(pid) == pid
    assert pseudonymise.key_fingerprint() == "disabled"
    assert Pseudonymiser(KEY, enabled=False)("10024395") == "10024395"


@pytest.mark.parametrize("key", [None, b""])
def test_enabled_pseudonymiser_needs_a_key(key: bytes | None) -> None:
    with pytest.raises(ValueError, match="key is required"):
        Pseudonymiser(key)


def test_key_from_environment_variable(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    secret = HEX_KEY[:40]
    monkeypatch.setenv(KEY_ENV, f"  {secret}\n")
    assert load_pseudonym_key() == secret.encode()
    assert not clean_environment.exists()  # no key file is created when the key is configured


def test_environment_key_wins_over_a_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "file.key"
    key_file.write_text(HEX_KEY[::-1])
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    monkeypatch.setenv(KEY_ENV, HEX_KEY)
    assert load_pseudonym_key() == HEX_KEY.encode()


def test_key_of_exactly_the_minimum_length_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, HEX_KEY[:MIN_KEY_CHARS])
    assert load_pseudonym_key() == HEX_KEY[:MIN_KEY_CHARS].encode()


def test_too_short_environment_key_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * (MIN_KEY_CHARS - 1))
    with pytest.raises(ClinFuseError) as caught:
        load_pseudonym_key()
    assert f"pseudonym key from ${KEY_ENV} is too short (31 characters)" in str(caught.value)
    assert "at least 32" in caught.value.fix


def test_whitespace_does_not_count_towards_the_key_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "short-key" + " " * 40)
    with pytest.raises(ClinFuseError, match=r"too short \(9 characters\)"):
        load_pseudonym_key()


def test_key_from_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_environment: Path) -> None:
    key_file = tmp_path / "keys" / "site.key"
    key_file.parent.mkdir()
    key_file.write_text(HEX_KEY + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert load_pseudonym_key() == HEX_KEY.encode()
    assert not (clean_environment / "pseudonym.key").exists()


def test_missing_key_file_raises_and_is_not_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "absent.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    with pytest.raises(ClinFuseError) as caught:
        load_pseudonym_key()
    assert f"pseudonym key file {key_file} not found" in str(caught.value)
    assert KEY_FILE_ENV in caught.value.fix
    assert not key_file.exists()


def test_too_short_key_file_raises_naming_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "weak.key"
    key_file.write_text("password\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    with pytest.raises(ClinFuseError, match="too short") as caught:
        load_pseudonym_key()
    assert str(key_file) in str(caught.value)


def test_default_key_file_is_created_private_under_clinfuse_home(clean_environment: Path) -> None:
    assert not clean_environment.exists()
    key = load_pseudonym_key()
    key_file = clean_environment / "pseudonym.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert re.fullmatch(rb"[0-9a-f]{64}", key)
    assert key_file.read_text().strip().encode() == key


def test_default_key_file_is_reused_not_replaced(clean_environment: Path) -> None:
    first = load_pseudonym_key()
    key_file = clean_environment / "pseudonym.key"
    written = key_file.read_bytes()
    assert load_pseudonym_key() == first
    assert key_file.read_bytes() == written
    assert Pseudonymiser(load_pseudonym_key())("10024395") == Pseudonymiser(first)("10024395")


def test_separate_homes_get_separate_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = load_pseudonym_key()
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "second-home"))
    second = load_pseudonym_key()
    assert first != second
    assert Pseudonymiser(first)("10024395") != Pseudonymiser(second)("10024395")


def test_existing_default_key_file_is_used(clean_environment: Path) -> None:
    clean_environment.mkdir()
    (clean_environment / "pseudonym.key").write_text(HEX_KEY[:48])
    (clean_environment / "pseudonym.key").chmod(0o600)
    assert load_pseudonym_key() == HEX_KEY[:48].encode()


def test_without_clinfuse_home_the_key_lives_in_the_user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(HOME_ENV)
    assert clinfuse_home() == tmp_path / "user-home" / ".clinfuse"
    load_pseudonym_key()
    key_file = tmp_path / "user-home" / ".clinfuse" / "pseudonym.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
