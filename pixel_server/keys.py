"""Signing keys: the current key with its id, older verify-only keys, and the generated default.

When ``PIXEL_SECRET_KEY`` is unset, a 256-bit random key is created once, next to the
database, with mode 0600. Creation is atomic (write a temporary file, then ``link`` it into
place, which fails if another worker won the race), so several workers starting at the same
moment all end up with the same key.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, Settings, split_list
from .files import private_dir

log = logging.getLogger("pixel_server.keys")

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class Keyring:
    """``signing_id`` names the key that signs; ``secrets`` maps every accepted id to its key."""

    signing_id: str
    secrets: dict[str, str] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        current = settings.secret_key or load_or_create_secret(settings.secret_path)
        keys = {settings.key_id: current}
        for item in split_list(settings.verify_keys):
            kid, sep, secret = item.partition(":")
            if not sep or not secret:
                raise ConfigError("PIXEL_VERIFY_KEYS entries must look like id:secret")
            keys.setdefault(kid, secret)
        for kid, secret in keys.items():
            if not KEY_ID.fullmatch(kid):
                raise ConfigError(f"key id {kid!r} must match {KEY_ID.pattern}")
            if len(secret) < MIN_SECRET_CHARS:
                raise ConfigError(f"key {kid!r} is shorter than {MIN_SECRET_CHARS} characters")
        return cls(signing_id=settings.key_id, secrets=keys)


def load_or_create_secret(path: Path) -> str:
    """Return the key stored at ``path``, creating it first if it does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            log.warning(
                "generated a new signing key in %s (mode 0600); keep it to keep links valid",
                path,
            )
        except FileExistsError:
            pass  # another worker created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise ConfigError(f"signing key file {path} is empty")
    return secret
