"""The spill journal: where hits go, durably, while the store cannot take them.

When a write fails because the store is unavailable (locked, read-only, ...), the writer
appends the hits to a journal file and fsyncs it before answering, so "acknowledged" still
means "on disk". Once the store answers again the journal is replayed into it in chunks; each
chunk's rows and the journal offset they end at are committed in one transaction, so a crash
during replay neither loses nor duplicates a hit.

Each process writes its own file, ``spill-<pid>-<ns>.jsonl`` in the spill directory, and holds
an exclusive ``flock`` on it while alive. At start-up a worker claims files whose lock it can
take — journals of processes that died — and replays them too.

Format: one JSON array (a hit row, in column order) per line. A torn last line, left by a
crash in the middle of an append, was never acknowledged (the fsync had not returned) and is
skipped; a failed append in a live process is truncated away at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .files import create_private, private_dir

Row = tuple[Any, ...]


class SpillFull(OSError):
    """Raised when an append would take the journal past its size bound."""


class Journal:
    """One journal file, locked by this process for as long as it is open."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path = path
        self._fh = fh
        self.size = fh.seek(0, os.SEEK_END)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, directory: Path) -> Journal:
        private_dir(directory)
        path = directory / f"spill-{os.getpid()}-{time.time_ns()}.jsonl"
        fh = os.fdopen(create_private(path, os.O_WRONLY | os.O_APPEND), "ab")
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return cls(path, fh)

    @classmethod
    def claim(cls, path: Path) -> Journal | None:
        """Open and lock ``path`` if no live process holds it; None if one does."""
        try:  # without O_CREAT: a journal replayed away meanwhile is not made again
            fh = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND), "ab")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return cls(path, fh)

    def append(self, rows: Sequence[Row], max_bytes: int) -> None:
        """Write ``rows`` and fsync. Blocking: run it off the event loop."""
        data = b"".join(
            json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for row in rows
        )
        if self.size + len(data) > max_bytes:
            raise SpillFull(f"spill journal {self.path} would exceed {max_bytes} bytes")
        try:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError:
            # never leave half a batch behind: the next append would run into it
            self._fh.truncate(self.size)
            raise
        self.size += len(data)

    def read(self, offset: int, max_rows: int) -> tuple[list[Row], int]:
        """Up to ``max_rows`` complete rows from ``offset``, and the offset after them."""
        rows: list[Row] = []
        with self.path.open("rb") as fh:
            fh.seek(offset)
            while len(rows) < max_rows:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    # end of file; or the torn tail of a crashed process's append, which was
                    # never acknowledged (its fsync had not returned): step over it
                    offset += len(line)
                    break
                rows.append(tuple(json.loads(line)))
                offset += len(line)
        return rows, offset

    def remove(self) -> None:
        """Delete the file and release the lock. Idempotent."""
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def orphans(directory: Path) -> Iterator[Journal]:
    """Journals left by processes that are gone, each locked for the caller."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("spill-*.jsonl")):
        journal = Journal.claim(path)
        if journal is not None:
            yield journal


class Spill:
    """The writer's side of spilling: our own journal, plus orphans adopted at start-up.

    ``active`` is True while this process has a journal that is not fully replayed; the writer
    then appends new hits to it instead of writing them to the store, so hits stay in order
    and the store gets one catch-up path.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.journal: Journal | None = None
        self.backlog: list[Journal] = list(orphans(directory))
        self._offsets: dict[str, int] = {}

    @property
    def active(self) -> bool:
        return self.journal is not None

    @property
    def pending(self) -> bool:
        """Anything left to replay: adopted orphans or our own journal."""
        return bool(self.backlog) or self.journal is not None

    @property
    def bytes(self) -> int:
        return sum(j.size for j in self.backlog) + (self.journal.size if self.journal else 0)

    def append(self, rows: Sequence[Row]) -> None:
        """Durably add rows (blocking: run in a thread)."""
        if self.journal is None:
            self.journal = Journal.create(self.directory)
        self.journal.append(rows, self.max_bytes)

    def next_to_replay(self) -> Journal | None:
        return self.backlog[0] if self.backlog else self.journal

    def offset(self, journal: Journal) -> int | None:
        return self._offsets.get(journal.name)

    def advanced(self, journal: Journal, offset: int) -> bool:
        """Record replay progress; True (and the journal deleted) when it is all replayed."""
        self._offsets[journal.name] = offset
        if offset < journal.size:
            return False
        journal.remove()
        self._offsets.pop(journal.name, None)
        if journal is self.journal:
            self.journal = None
        else:
            self.backlog.remove(journal)
        return True

    def close(self) -> None:
        for journal in [*self.backlog, *([self.journal] if self.journal else [])]:
            journal.close()
