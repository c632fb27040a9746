"""What ``serve`` checks before any server starts: the paths it will write, and everything a
worker builds from the settings.

A worker that meets a bad setting can only log a traceback and die, and the parent process
(uvicorn's supervisor, granian) would then restart it or exit with a status that says nothing.
So the parent builds the app once itself and tries each path it will write, as the user it
runs as, and a problem is a :class:`~pixel_server.config.ConfigError`: one line, exit status 2.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, Settings, accepted

if TYPE_CHECKING:
    from .urls import TargetPolicy

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def build_once(settings: Settings) -> None:
    """Build the app as each worker will (the key must exist): a bad setting raises here."""
    from .app import create_app  # the app's imports are only needed by `serve`

    redirect_policy(settings)
    create_app(settings)


def redirect_policy(settings: Settings) -> TargetPolicy:
    """The redirect policy; an allowlist entry it refuses is a ConfigError."""
    from .urls import TargetPolicy, TargetRejected

    try:
        return TargetPolicy.from_settings(settings)
    except TargetRejected as exc:
        field = FIELDS["redirect_hosts"]
        message = f"PIXEL_REDIRECT_HOSTS: {exc}; accepted: {accepted(field)}"
        raise ConfigError(message, "PIXEL_REDIRECT_HOSTS") from None


def check_store(settings: Settings) -> None:
    """Open the store once (which migrates it) and close it: an unreachable PostgreSQL or a
    schema from a newer release stops ``serve`` with one line, before any worker starts."""
    import asyncio

    from .store import open_store, opened

    async def touch() -> None:
        async with opened(open_store(settings)):
            pass

    try:
        asyncio.run(touch())
    except RuntimeError as exc:  # a newer schema (store/schema.py, store/pgschema.py)
        if "newer" not in str(exc):
            raise
        env = "PIXEL_DATABASE_URL" if settings.database_url else "PIXEL_DB"
        raise ConfigError(f"{env}: {exc}", env) from None


def check_paths(settings: Settings) -> None:
    """Every file and directory ``serve`` writes can be written by this process's user."""
    if settings.sqlite_path is not None:
        db = Path(settings.sqlite_path)
        env = "PIXEL_DATABASE_URL" if settings.database_url else "PIXEL_DB"
        writable_dir(db.parent, env)
        for path in (db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")):
            writable_file(path, env)
        check_database_file(db, env)
    if not settings.secret_key:
        env = "PIXEL_SECRET_FILE" if settings.secret_file else settings.data_source
        try:
            settings.secret_path.open("rb").close()
        except FileNotFoundError:
            writable_dir(settings.secret_path.parent, env)
        except OSError as exc:
            raise _refused(env, f"cannot read the key file {settings.secret_path}", exc) from None
    if settings.spill_path is not None:
        env = "PIXEL_SPILL_DIR" if settings.spill_dir else settings.data_source
        writable_dir(settings.spill_path, env)


def check_database_file(path: Path, env: str = "PIXEL_DB") -> None:
    """``path`` is missing, empty (SQLite makes it a database) or an SQLite database file."""
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _refused(env, f"cannot read {path}", exc) from None
    if header and header != SQLITE_HEADER:
        raise ConfigError(
            f"{env}: {path} is not an SQLite database; point {env} at the server's "
            "database file (or at a new path)",
            env,
        )


def writable_dir(path: Path, env: str) -> None:
    """Files can be created in ``path``, or in the directory that will hold it once created."""
    try:
        existing = path.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        import tempfile  # only serve needs it

        fd, probe = tempfile.mkstemp(prefix=".pixel-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _refused(env, f"cannot create files in {existing}", exc) from None


def writable_file(path: Path, env: str) -> None:
    """``path`` does not exist yet, or this user can open it for writing."""
    try:
        path.open("r+b").close()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _refused(env, f"cannot write {path}", exc) from None


def _refused(env: str, what: str, exc: OSError) -> ConfigError:
    uid = os.geteuid()
    try:
        user = f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        user = f"uid {uid}"
    return ConfigError(
        f"{env}: {what} as user {user}: {exc.strerror or exc}; give this user access "
        f"(e.g. with chown) or set {env} to another path",
        env,
    )
