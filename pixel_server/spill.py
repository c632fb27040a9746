"""The spill journal: where hits go, durably, while the store cannot take them.

When a write fails because the store is unavailable (locked, read-only, ...), the writer
appends the hits to a journal file and fsyncs it before answering, so "acknowledged" still
means "on disk". Once the store answers again the journal is replayed into it in chunks; each
chunk's rows and the journal offset they end at are committed in one transaction, so a crash
during replay neither loses nor duplicates a hit.

Each process writes its own file, ``spill-<pid>-<ns>.jsonl`` in the spill directory, and holds
an exclusive ``flock`` on it while alive. At start-up a worker claims files whose lock it can
take — journals of processes that died — and replays them too.

Format: one hit per line, a JSON object naming every field (:data:`hits.COLUMNS`) after its
version, ``{"v":2,"ts":...,"kind":"view",...}``; ``v`` is never a column name. Every field is
written, ``null`` included, so a default changed later never changes a spilled value. A line is
read back by name, so the journal of one release replays in another:

* a name the reading release does not know (a column added by a newer release, replayed after
  a rollback) is dropped, with one warning per journal naming it: the hit is kept;
* a missing name takes the :class:`hits.Hit` field's default (a journal from before a column
  was added); a missing ``ts`` or ``kind``, which have none, refuses the line;
* version 1, the format of earlier releases, is a bare JSON array of the values in
  :data:`V1_COLUMNS` order (their column order, frozen here), and still replays;
* a line of another version, or that is not a record, is refused: replay stores the lines
  before it, then stops there (retried with backoff, logged, ``/readyz`` degraded) and the
  journal is kept for a release that can read it. Adding a column does not change the
  version; changing what an existing name means does.

The record is flat, not ``{"v":2,"hit":{...}}``, for the releases before it (a rollback): they
read a line as ``Hit(*tuple(json.loads(line)))``, which turns a two-key object into a hit with
``ts="v"``, stores it and deletes the journal. A flat record has more keys (30) than their hit
has fields (29), so they refuse it instead and keep the journal for a release that reads it.

A line of spaces is a hit erased in place (erasure.py: same length, so offsets hold) and is
skipped. A torn last line, left by a crash in the middle of an append, was never acknowledged
(the fsync had not returned) and is skipped; a failed append in a live process is truncated
away at once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .files import create_private, private_dir
from .hits import COLUMNS, Hit

log = logging.getLogger("pixel_server.spill")

VERSION = 2
_RECORD_KEYS = ("v", *COLUMNS)
# the column order of version 1 (a bare array per line): frozen, whatever COLUMNS becomes
V1_COLUMNS = (
    "ts", "kind", "event", "eid", "cid", "uid", "sid", "url", "ref", "utm_source", "utm_medium",
    "utm_campaign", "utm_term", "utm_content", "utm_id", "params", "referer", "ip", "ua",
    "browser", "browser_version", "os", "os_version", "device", "is_bot", "dnt", "gpc", "method",
    "flags",
)  # fmt: skip
_NAMES = frozenset(COLUMNS)
_DEFAULTS = tuple(f.default for f in dataclasses.fields(Hit))
_REQUIRED = frozenset(f.name for f in dataclasses.fields(Hit) if f.default is dataclasses.MISSING)
# values are flat (str, int, None): no circular-reference bookkeeping
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


class SpillFull(OSError):
    """Raised when an append would take the journal past its size bound."""


class BadRecord(ValueError):
    """A complete journal line this release cannot read (see the module docstring)."""


def encode(hit: Hit) -> bytes:
    """One journal line: the current version's record of ``hit``."""
    return _encode(dict(zip(_RECORD_KEYS, (VERSION, *hit.row()), strict=True))).encode() + b"\n"


def decode(line: bytes, dropped: set[str]) -> Hit:
    """The hit of one complete line (either version); names it does not know go to ``dropped``."""
    record = json.loads(line)
    if isinstance(record, list):
        if len(record) != len(V1_COLUMNS):
            raise BadRecord(f"a version 1 row has {len(V1_COLUMNS)} values, not {len(record)}")
        return _hit(dict(zip(V1_COLUMNS, record, strict=True)), dropped)
    if not isinstance(record, dict):
        raise BadRecord("not a spill record")
    version = record.pop("v", None)
    if version != VERSION:
        raise BadRecord(f"a record of version {version!r}: this release reads 1 and 2")
    return _hit(record, dropped)


def _hit(fields: Mapping[str, Any], dropped: set[str]) -> Hit:
    if tuple(fields) == COLUMNS:  # every name, in this release's order: as it writes them
        return Hit(*fields.values())
    if not _NAMES.issuperset(fields):
        dropped.update(fields.keys() - _NAMES)
    if not fields.keys() >= _REQUIRED:
        missing = ", ".join(sorted(_REQUIRED - fields.keys()))
        raise BadRecord(f"the record has no {missing} (a field with no default)")
    return Hit(*map(fields.get, COLUMNS, _DEFAULTS))


class Journal:
    """One journal file, locked by this process for as long as it is open."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path = path
        self._fh = fh
        self.size = fh.seek(0, os.SEEK_END)
        self._dropped: set[str] = set()  # unknown names already warned about

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

    def append(self, hits: Sequence[Hit], max_bytes: int) -> None:
        """Write ``hits`` and fsync. Blocking: run it off the event loop."""
        data = b"".join(map(encode, hits))
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

    def read(self, offset: int, max_rows: int) -> tuple[list[Hit], int]:
        """Up to ``max_rows`` hits from ``offset``, and the offset after them.

        Raises :class:`BadRecord` if the line at ``offset`` cannot be read; one after it ends
        the chunk, so the hits before it can be stored.
        """
        hits: list[Hit] = []
        dropped: set[str] = set()
        with self.path.open("rb") as fh:
            fh.seek(offset)
            while len(hits) < max_rows:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    # end of file; or the torn tail of a crashed process's append, which was
                    # never acknowledged (its fsync had not returned): step over it
                    offset += len(line)
                    break
                if not line.strip():  # a hit erased in place (erasure.py)
                    offset += len(line)
                    continue
                try:
                    hits.append(decode(line, dropped))
                except ValueError as exc:  # BadRecord, or not JSON at all
                    if hits:
                        break
                    raise BadRecord(f"{self.name}, line at byte {offset}: {exc}") from None
                offset += len(line)
        if not dropped <= self._dropped:
            self._dropped |= dropped
            log.warning(
                "spill journal %s: fields unknown to this release dropped from its hits: %s",
                self.name,
                ", ".join(sorted(dropped)),
            )
        return hits, offset

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

    def append(self, hits: Sequence[Hit]) -> None:
        """Durably add hits (blocking: run in a thread)."""
        if self.journal is None:
            self.journal = Journal.create(self.directory)
        self.journal.append(hits, self.max_bytes)

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
