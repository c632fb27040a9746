"""Data subjects: everything stored about one person, exported or erased (docs/privacy.md).

A person is named by their ``uid``. Their hits are those whose ``uid`` is it, or whose
parameters JSON holds it as a value (``{"email": "ann@example.com"}``), or whose ``url``,
``ref`` or Referer carries it as a query or fragment value (``?email=ann@example.com``, as
sent or percent-encoded) — :class:`Subject`, the same test in SQL (store/privacy_sql.py) and
here for the spill journals.

Erasure deletes those hits (events included), replaces the uid with ``[erased]`` where other
hits mention it (a uid of at least ``MIN_REDACT_CHARS`` characters, in their free-text
fields), and recomputes the rollup cells of both in the same transaction, so no sketch or
dimension value keeps them; then leaves no bytes behind:
SQLite zeroes what it deletes (``secure_delete``) and its WAL is checkpointed and truncated;
PostgreSQL vacuums the tables touched (what stays on disk is in docs/privacy.md). The lines
of those hits in the spill journals — a live server's too — are overwritten with spaces in
place (offsets stay valid; replay skips a blank line), before the store is erased and again
after, so a replay in flight cannot bring one back. The admin log records the erasure by a
keyed hash of the uid, never the uid itself: the same request later gives the same hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .export import present
from .spill import decode

if TYPE_CHECKING:
    from .hits import Hit
    from .store.base import Store

MAX_UID_CHARS = 512
# a uid at least this long is also redacted where another hit mentions it (a shorter one
# would match inside unrelated text: "r1" in every "r10")
MIN_REDACT_CHARS = 6
ERASE_ROUNDS = 3
URL_FIELDS = ("url", "ref", "referer")


class BadSubject(ValueError):
    """Not a uid this can look for."""


@dataclass(frozen=True)
class Subject:
    uid: str

    def __post_init__(self) -> None:
        if not self.uid or len(self.uid) > MAX_UID_CHARS or not self.uid.isprintable():
            raise BadSubject(f"a uid is 1 to {MAX_UID_CHARS} printable characters")

    @property
    def json_text(self) -> str:
        """The uid as a JSON string, as it reads inside a hit's parameters."""
        return json.dumps(self.uid, ensure_ascii=False)

    @property
    def url_values(self) -> tuple[str, ...]:
        """The uid as a query value, as sent and percent-encoded (``=`` before it)."""
        forms = {"=" + self.uid, "=" + quote(self.uid, safe=""), "=" + quote(self.uid)}
        return tuple(sorted(forms))

    @property
    def forms(self) -> tuple[str, ...]:
        """How the uid may read inside another text: as is, JSON-escaped, percent-encoded."""
        if len(self.uid) < MIN_REDACT_CHARS:
            return ()
        escaped = json.dumps(self.uid, ensure_ascii=False)[1:-1]
        return tuple(dict.fromkeys((self.uid, escaped, quote(self.uid, safe=""))))

    def matches(self, hit: Hit) -> bool:
        if hit.uid == self.uid:
            return True
        if hit.params is not None and self.json_text in hit.params:
            return True
        for name in URL_FIELDS:
            text = getattr(hit, name)
            if text and any(_carries(text, value) for value in self.url_values):
                return True
        return False


def _carries(text: str, value: str) -> bool:
    return value + "&" in text or value + "#" in text or text.endswith(value)


def subject_hash(secret: str, uid: str) -> str:
    """The uid as the admin log names it: an HMAC under the signing key."""
    mac = hmac.new(secret.encode(), b"pixel_server.subject.v1\x00" + uid.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


@dataclass
class Erasure:
    subject: str  # the keyed hash
    hits_deleted: int = 0
    hits_redacted: int = 0  # others' hits that mentioned the uid
    journal_lines: int = 0
    journals: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "hits_deleted": self.hits_deleted,
            "hits_redacted": self.hits_redacted,
            "journal_lines": self.journal_lines,
            "journals": self.journals,
        }


def scrub_journals(directory: Path | None, subject: Subject) -> tuple[int, list[str]]:
    """Overwrite the subject's lines in every journal of ``directory`` with spaces, in
    place, fsynced; (lines, journals touched)."""
    if directory is None or not directory.is_dir():
        return 0, []
    lines, touched = 0, []
    for path in sorted(directory.glob("spill-*.jsonl")):
        found = _scrub(path, subject)
        if found:
            lines += found
            touched.append(path.name)
    return lines, touched


def _scrub(path: Path, subject: Subject) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # replayed away meanwhile
        return 0
    # inside a journal's JSON a string reads escaped: look for that form (and the encoded one)
    forms = [form.encode() for form in subject.forms if form != subject.uid or _plain(form)]
    writes: list[tuple[int, bytes]] = []  # (offset, same-length bytes)
    offset = 0
    for line in data.splitlines(keepends=True):
        if line.endswith(b"\n") and line.strip():
            try:
                hit = decode(line, set())
            except ValueError:
                hit = None
            if hit is not None and subject.matches(hit):
                writes.append((offset, b" " * (len(line) - 1)))  # the newline stays
            elif any(form in line for form in forms):
                writes.append((offset, _masked(line, forms)))
        offset += len(line)
    if not writes:
        return 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for start, data in writes:
            os.pwrite(fd, data, start)  # the same length: every offset holds
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(writes)


def _plain(text: str) -> bool:
    return json.dumps(text, ensure_ascii=False)[1:-1] == text


def _masked(line: bytes, forms: list[bytes]) -> bytes:
    """``line`` with every form of the uid replaced by as many asterisks (valid JSON still:
    a form never holds a quote or a backslash unescaped)."""
    for form in forms:
        line = line.replace(form, b"*" * len(form))
    return line


async def erase(
    store: Store, subject: Subject, secret: str, spill_dir: Path | None, actor: str
) -> Erasure:
    """Erase ``subject`` everywhere (see the module docstring) and log it."""
    result = Erasure(subject_hash(secret, subject.uid))
    journals: set[str] = set()
    for _ in range(ERASE_ROUNDS):
        lines, touched = scrub_journals(spill_dir, subject)
        result.journal_lines += lines
        journals.update(touched)
        deleted, redacted = await store.erase_subject(subject.uid)
        result.hits_deleted += deleted
        result.hits_redacted += redacted
        if not deleted and not redacted and not lines:
            break
    result.journals = sorted(journals)
    await store.log_admin(time.time_ns() // 1_000_000, "erase", actor, result.as_dict())
    return result


async def export(store: Store, subject: Subject, secret: str, actor: str) -> dict[str, Any]:
    """Everything stored about ``subject``, as JSON; the export is logged."""
    rows = await store.subject_hits(subject.uid)
    detail = {"subject": subject_hash(secret, subject.uid), "hits": len(rows)}
    await store.log_admin(time.time_ns() // 1_000_000, "subject_export", actor, detail)
    return {
        "uid": subject.uid,
        "hits": [present(row) for row in rows],
        "matched_by": "uid, a parameter value, or a query value of url, ref or referer",
    }
