"""Signing keys: the current key with its id, older verify-only keys, and the key file.

The key is ``PIXEL_SECRET_KEY`` or, when that is empty, the key file (``PIXEL_SECRET_FILE``,
default ``<PIXEL_DB>.key``). Only the server (:meth:`Keyring.create_or_load`, called by
``serve``) and ``pixel-server keys init`` create a key file; every other command loads the
keys with :meth:`Keyring.load`, which never creates one, so a command run against the wrong
database fails instead of signing links with a key the server does not know.

The key file holds one ``id:secret`` line per key: the first line signs, the others only
verify (``pixel-server keys rotate`` puts a new key on top). A file written before key ids
were recorded holds just the secret; it is read as ``k1``, the id such files were generated
under. The file must be private (mode 0600, owned by the user running pixel-server), see
:mod:`pixel_server.files`. Creation is atomic (write a temporary file, then ``link`` it into
place, which fails if another worker won the race), so workers starting at the same moment
all end up with the same key.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, Settings, split_list
from .files import check_private, create_private, private_dir

log = logging.getLogger("pixel_server.keys")

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
DEFAULT_KEY_ID = "k1"
MIN_SECRET_CHARS = 16
ROTATE_HINT = (
    "to rotate, run `pixel-server keys rotate` (a new key signs, the old one keeps verifying), "
    "or set PIXEL_SECRET_KEY=<new secret> PIXEL_KEY_ID=<new id> "
    "PIXEL_VERIFY_KEYS=<old id>:<old secret>"
)


class KeyMissing(ConfigError):
    """Raised by :meth:`Keyring.load` when there is no key to sign with."""


@dataclass(frozen=True)
class Keyring:
    """``signing_id`` names the key that signs; ``secrets`` maps every accepted id to its key;
    ``sources`` says where each key came from (a file path or a variable), for ``keys show``."""

    signing_id: str
    secrets: dict[str, str] = field(repr=False)
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> Keyring:
        """The configured keys. Never creates a key: :class:`KeyMissing` if there is none."""
        if settings.secret_key:
            signing = settings.key_id or DEFAULT_KEY_ID
            keys = [(signing, settings.secret_key, "PIXEL_SECRET_KEY")]
        else:
            path = settings.secret_path.absolute()
            try:
                key_file = KeyFile.read(path)
            except FileNotFoundError:
                raise KeyMissing(missing_message(settings)) from None
            signing = key_file.signing_id
            if settings.key_id and settings.key_id != signing:
                raise ConfigError(
                    f"PIXEL_KEY_ID={settings.key_id} but the signing key in {path} is "
                    f"{signing}: renaming it would break every link signed as {signing}. "
                    f"Unset PIXEL_KEY_ID to sign with {signing}; {ROTATE_HINT}"
                )
            keys = [(kid, secret, str(path)) for kid, secret in key_file.keys]
        for item in split_list(settings.verify_keys):
            kid, sep, secret = item.partition(":")
            if not sep or not secret:
                raise ConfigError("PIXEL_VERIFY_KEYS entries must look like id:secret")
            keys.append((kid, secret, "PIXEL_VERIFY_KEYS"))
        return cls.build(signing, keys)

    @classmethod
    def create_or_load(cls, settings: Settings) -> Keyring:
        """For the server: create the key file first if there is no key at all."""
        path = settings.secret_path
        if not settings.secret_key and KeyFile.create(path, settings.key_id or DEFAULT_KEY_ID):
            log.warning(
                "generated a new signing key in %s (mode 0600); back it up to keep links valid",
                path.absolute(),
            )
        return cls.load(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The same as :meth:`load` (never creates a key); kept for existing callers."""
        return cls.load(settings)

    @classmethod
    def build(cls, signing_id: str, keys: list[tuple[str, str, str]]) -> Keyring:
        """A keyring from ``(id, secret, source)`` triples, checked."""
        by_id: dict[str, str] = {}
        sources: dict[str, str] = {}
        for kid, secret, source in keys:
            if not KEY_ID.fullmatch(kid):
                raise ConfigError(f"key id {kid!r} must match {KEY_ID.pattern}")
            if len(secret) < MIN_SECRET_CHARS:
                raise ConfigError(f"key {kid!r} is shorter than {MIN_SECRET_CHARS} characters")
            if kid in by_id:
                if by_id[kid] != secret:
                    raise ConfigError(
                        f"key id {kid!r} names two different keys ({sources[kid]} and {source}): "
                        "a token signed as it would verify with only one of them"
                    )
                continue
            by_id[kid] = secret
            sources[kid] = source
        return cls(signing_id=signing_id, secrets=by_id, sources=sources)

    def fingerprint(self, kid: str) -> str:
        """A short, one-way tag of a key, to compare two machines' keys without showing them."""
        digest = hmac.new(self.secrets[kid].encode(), b"pixel-server key fingerprint", "sha256")
        return digest.hexdigest()[:8]


def missing_message(settings: Settings) -> str:
    path = settings.secret_path
    if settings.secret_file:
        where = f"PIXEL_SECRET_FILE={settings.secret_file}"
    elif settings.data_source == "PIXEL_DB":
        where = f"PIXEL_DB={settings.db} + .key"
    else:
        where = f"PIXEL_DATA_DIR={settings.data_dir or 'pixel-data'} + /pixel.key"
    return (
        f"no signing key: PIXEL_SECRET_KEY is empty and there is no key file at "
        f"{path.absolute()} ({where}). Point this command at the server's key: set PIXEL_DB "
        "(--db) to the server's database (or PIXEL_DATA_DIR to its data directory), "
        "PIXEL_SECRET_FILE (--secret-file) to its key file, "
        "or PIXEL_SECRET_KEY to its key (`pixel-server serve` or `pixel-server keys init` "
        "create a new key, which the links already sent do not know)"
    )


@dataclass(frozen=True)
class KeyFile:
    """The keys in a key file, ``(id, secret)`` in order: the first signs."""

    path: Path
    keys: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def signing_id(self) -> str:
        return self.keys[0][0]

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        """Read and check a key file. FileNotFoundError if there is none."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, encoding="utf-8") as fh:
            check_private(path, os.fstat(fd), "key file")
            try:
                text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read key file {path}: {exc}") from None
        return cls(path, parse_key_file(path, text))

    @classmethod
    def create(cls, path: Path, key_id: str) -> bool:
        """Create the key file with a new random key unless it exists; True if we created it."""
        if path.exists():
            return False
        if not KEY_ID.fullmatch(key_id):
            raise ConfigError(f"key id {key_id!r} must match {KEY_ID.pattern}")
        private_dir(path.parent)
        tmp = cls(path, ((key_id, secrets.token_urlsafe(32)),))._write_temporary()
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another worker created it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def rotated(self, new_id: str | None) -> KeyFile:
        """This file with a new random key on top (signing) and the current ones verify-only."""
        if new_id is None:
            number = re.fullmatch(r"k(\d{1,6})", self.signing_id)
            if number is None:
                raise ConfigError(f"cannot number the key after {self.signing_id!r}: give --id")
            new_id = f"k{int(number.group(1)) + 1}"
        if not KEY_ID.fullmatch(new_id):
            raise ConfigError(f"key id {new_id!r} must match {KEY_ID.pattern}")
        if new_id in dict(self.keys):
            raise ConfigError(f"key id {new_id!r} is already in {self.path}: choose another --id")
        return KeyFile(self.path, ((new_id, secrets.token_urlsafe(32)), *self.keys))

    def replace(self) -> None:
        """Write this key file over the old one atomically (a reader sees old or new)."""
        os.replace(self._write_temporary(), self.path)

    def _write_temporary(self) -> Path:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(create_private(tmp), "w", encoding="utf-8") as fh:
            fh.writelines(f"{kid}:{secret}\n" for kid, secret in self.keys)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp


def parse_key_file(path: Path, text: str) -> tuple[tuple[str, str], ...]:
    """``id:secret`` lines (blank lines and ``#`` comments skipped); a bare secret is k1."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ConfigError(f"signing key file {path} is empty")
    if len(lines) == 1 and ":" not in lines[0]:
        return ((DEFAULT_KEY_ID, lines[0]),)  # written before key ids were recorded
    keys = []
    for number, line in enumerate(lines, 1):
        kid, sep, secret = line.partition(":")
        if not sep or not KEY_ID.fullmatch(kid):
            raise ConfigError(f"key file {path}: key {number} is not id:secret")
        keys.append((kid, secret))
    return tuple(keys)
