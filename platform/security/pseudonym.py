"""Keyed pseudonyms: HMAC-SHA256 of the patient id under a secret key, so ids cannot be reversed or guessed.

The key comes from, in order: the CLINFUSE_PSEUDONYM_KEY environment variable (hex or any string of at least
32 characters), the file named by CLINFUSE_PSEUDONYM_KEY_FILE, or `$CLINFUSE_HOME/pseudonym.key`
(default `~/.clinfuse/pseudonym.key`), which is created with mode 600 on first use. Whoever holds the key and
the source cohort can re-identify a pseudonym by recomputing it; nothing ClinFuse writes holds the mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from clinfuse.platform.errors import ClinFuseError

KEY_ENV = "CLINFUSE_PSEUDONYM_KEY"
KEY_FILE_ENV = "CLINFUSE_PSEUDONYM_KEY_FILE"
HOME_ENV = "CLINFUSE_HOME"
MIN_KEY_CHARS = 32
PSEUDONYM_HEX_CHARS = 16


def clinfuse_home() -> Path:
    """The folder for ClinFuse's local state (keys, registry, users): $CLINFUSE_HOME or ~/.clinfuse."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".clinfuse")


def load_pseudonym_key() -> bytes:
    """Read the pseudonymisation key from the environment, a key file, or create the default key file."""
    if value := os.environ.get(KEY_ENV):
        return _checked(value.strip(), f"${KEY_ENV}")
    path = Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else clinfuse_home() / "pseudonym.key"
    if not path.exists():
        if os.environ.get(KEY_FILE_ENV):
            raise ClinFuseError(f"pseudonym key file {path} not found", f"create it or unset {KEY_FILE_ENV}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return _checked(path.read_text().strip(), str(path))


def _checked(key: str, source: str) -> bytes:
    if len(key) < MIN_KEY_CHARS:
        raise ClinFuseError(
            f"pseudonym key from {source} is too short ({len(key)} characters)",
            f"use at least {MIN_KEY_CHARS} random characters, "
            "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    return key.encode()


class Pseudonymiser:
    """Maps patient ids to stable pseudonyms ('p' + 16 hex characters); identity when disabled."""

    def __init__(self, key: bytes | None, enabled: bool = True) -> None:
        if enabled and not key:
            raise ValueError("a key is required when pseudonymisation is enabled")
        self._key = key
        self.enabled = enabled

    def __call__(self, patient_id: str) -> str:
        if not self.enabled:
            return patient_id
        digest = hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()
        return "p" + digest[:PSEUDONYM_HEX_CHARS]

    def key_fingerprint(self) -> str:
        """A short, non-reversible fingerprint of the key, so caches made with another key are detected."""
        if not self.enabled:
            return "disabled"
        return hashlib.sha256(b"clinfuse-key-fingerprint" + self._key).hexdigest()[:12]
