"""Private files: what we create is 0600 (directories 0700) whatever the umask, and a key file
that someone else could read or write is refused, as ssh refuses such a private key.

``os.open(path, flags, 0o600)`` alone is not enough: the mode is masked by the umask (0o277
would give 0400) and means nothing for a file that already exists. So files are created with
``O_EXCL`` and then ``fchmod``-ed, and only what we created is touched; an existing file keeps
the mode its owner gave it.

SQLite creates ``-wal``, ``-shm`` and rollback journals with the mode of the database file,
so creating the database file 0600 before SQLite opens it (:func:`ensure_private_file`)
makes those private too.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from .config import ConfigError

FILE_MODE = 0o600
DIR_MODE = 0o700


class InsecureFile(ConfigError):
    """Raised when a secret file is open to other users or owned by someone else."""


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700; existing ones are left alone."""
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # created by another process in the meantime: theirs, leave it
        os.chmod(directory, DIR_MODE)


def create_private(path: Path, flags: int = os.O_WRONLY) -> int:
    """A new file at ``path`` with mode 0600, open with ``flags``; FileExistsError if present."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then it is left as it is)."""
    private_dir(path.parent)
    with suppress(FileExistsError):
        os.close(create_private(path))


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a secret file that others can read or write, or that someone else owns."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise InsecureFile(
            f"{what} {path} is accessible by other users (mode {mode:04o}); "
            f"anyone who can read it can forge links: run `chmod 600 {path}`"
        )
    if st.st_uid != os.geteuid():
        raise InsecureFile(
            f"{what} {path} is owned by uid {st.st_uid}, not by the user running pixel-server "
            f"(uid {os.geteuid()}): whoever owns it can change it; "
            f"`chown {os.geteuid()} {path}` if it is yours"
        )


@contextmanager
def replaced_on_success(path: Path) -> Iterator[TextIO]:
    """A text file to write ``path`` through: a temporary file in the same directory, renamed
    over ``path`` only when the block succeeds, so a failed export leaves the old file whole.

    A new file is private (0600: exports hold recipient ids and IP addresses); a file that is
    replaced keeps its mode. Something that is not a regular file (``/dev/stdout``, a FIFO) is
    written directly.
    """
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with path.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fh = os.fdopen(create_private(tmp), "w", encoding="utf-8", newline="")
    try:
        with fh:
            if st is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode))
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _syncfs(fd: int) -> bool:
    """Flush the whole file system holding ``fd`` in one call (Linux ``syncfs``); False
    where it is not available (then the caller fsyncs each file)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    if syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return True


def write_batch(folder: Path, files: Iterable[tuple[str, str]]) -> int:
    """Write each ``(name, text)`` into ``folder`` durably, with one flush for the batch.

    Every file is written to a private temporary name beside its target, without a flush;
    then the data of all of them is flushed at once (``syncfs`` on Linux: one call for the
    file system, instead of one ``fsync`` a file; elsewhere an ``fsync`` each), then each is
    renamed over its target (the new file keeps the mode of the one it replaces, else 0600) and
    the folder is fsynced, so the new names are on disk too.
    When this returns, every file is on disk under its name. A failure before the renames
    leaves every old file as it was and removes the temporary ones; a crash before the
    renames leaves the old files and maybe ``.NAME.*.tmp`` ones to delete; a crash or an
    error during the renames leaves some files new and some old (each one whole; an error
    removes the temporary files not renamed). Returns how many.
    """
    pending: list[tuple[Path, Path]] = []
    count = 0
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    try:
        for name, text in files:
            target = folder / name
            tmp = folder / f".{name}.{tag}.tmp"
            pending.append((tmp, target))
            with os.fdopen(create_private(tmp), "w", encoding="utf-8", newline="") as fh:
                with suppress(FileNotFoundError):
                    st = target.stat()
                    if stat.S_ISREG(st.st_mode):  # a file replaced keeps its mode
                        os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode))
                fh.write(text)
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            if pending and not _syncfs(dir_fd):
                for tmp, _ in pending:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            while pending:
                tmp, target = pending[-1]
                os.replace(tmp, target)
                pending.pop()
                count += 1
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        for tmp, _ in pending:  # not renamed: a failure
            tmp.unlink(missing_ok=True)
    return count
