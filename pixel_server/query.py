"""Hit log filters shared by the read API and the CLI: parsed into a :class:`HitQuery`, data
that each store renders in its own terms (store/sql.py for the SQL stores).

Paging is by keyset, newest first by ``(ts, id)``: a cursor names the last row a page showed,
and the next page is the rows strictly below it in that order. Every filter has an index that
yields rows in this order (store/schema.py, migration 3), so a page costs the same whether it
is the first or the thousandth, and an export reads each matching row once.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .fields import KINDS, UTM_KEYS

MAX_LIMIT = 1000
# Cursor: "<ts>_<id>" of the last row seen, in ASCII digits; opaque to users (README says
# "pass next_cursor back unchanged"), so the format may change with the ordering.
_CURSOR = re.compile(r"([0-9]{1,18})_([0-9]{1,18})", re.ASCII)
CURSOR_HELP = (
    "cursor: not a cursor this API handed out; pass next_cursor unchanged,"
    " or leave cursor out to start from the newest hit"
)
DEFAULT_LIMIT = 100
# filters that compare a column for equality; the public name is the column name except `e`
EQUALITY_FILTERS = ("kind", "e", "eid", "cid", "uid", "sid", *UTM_KEYS, "traffic")
FILTER_COLUMNS = {"e": "event"}  # a filter's stored column, where its name differs
OPERATORS = (">=", "<", "=")
# one filter: (stored column, one of OPERATORS, value)
Condition = tuple[str, str, Any]
# ASCII digits only: \d and str.isdigit() also match '²' or '٣', which int() rejects or reads
_RELATIVE = re.compile(r"([0-9]{1,15})([smhdw])")
_DIGITS = re.compile(r"[0-9]+")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
MAX_DURATION_MS = 3650 * _UNIT_MS["d"]  # ten years: any longer is a typo, not a time window
EPOCH_MS_DIGITS = 13  # 2001-09-09 .. 2286-11-20; the only length read as epoch milliseconds
BASIC_DATE_DIGITS = 8  # 20261101, ISO 8601 basic format
TIME_FORMS = (
    "ISO 8601 (2026-11-01, 20261101, 2026-11-01T08:00:00Z, 20261101T0800Z; UTC if no zone), "
    "epoch milliseconds (13 digits, e.g. 1793491200000) "
    "or a duration ago (90s, 15m, 2h, 7d, 4w; at most 3650d)"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHOWN_CHARS = 40


class QueryError(ValueError):
    """Raised for a filter value that cannot be used; the message says which and why."""

    code = "bad_filter"


class CursorError(QueryError):
    """Raised for a cursor the store cannot use (forged, truncated, out of range)."""

    code = "bad_cursor"


@dataclass(frozen=True)
class HitQuery:
    """Filters for reading hits, newest first by ``(ts, id)`` (``oldest_first``: the reverse).

    ``before`` is the keyset cursor of newest-first pages: the ``(ts, id)`` of the last row
    already seen; ``beyond`` is that of oldest-first pages (``pixel-server copy``), and
    ``through`` bounds them: rows at or before that ``(ts, id)``, a snapshot taken at start.
    """

    since_ms: int | None = None
    until_ms: int | None = None
    equals: dict[str, str] = field(default_factory=dict)
    before: tuple[int, int] | None = None
    limit: int | None = None  # page size for reads; a total cap for exports
    beyond: tuple[int, int] | None = None
    through: tuple[int, int] | None = None
    oldest_first: bool = False

    @classmethod
    def from_params(
        cls,
        given: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        now_ms: int | None = None,
        max_limit: int | None = MAX_LIMIT,
    ) -> HitQuery:
        """Build a query from string parameters (API query string or CLI options), as a mapping
        or as (name, value) pairs; a name given more than once is refused, never "last wins".

        ``max_limit`` bounds a page; exports pass None, where ``limit`` caps the whole export.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        pairs = given.items() if isinstance(given, Mapping) else given
        known = {"since", "until", "cursor", "limit", *EQUALITY_FILTERS}
        params = single_params(pairs, known, "filter")
        equals = {k: v for k, v in params.items() if k in EQUALITY_FILTERS and v != ""}
        if "kind" in equals and equals["kind"] not in KINDS:
            raise QueryError(f"kind must be one of {', '.join(KINDS)}")
        return cls(
            since_ms=parse_time(params.get("since"), now, "since"),
            until_ms=parse_time(params.get("until"), now, "until"),
            equals=equals,
            before=parse_cursor(params.get("cursor")),
            limit=_parse_int(params.get("limit"), "limit", minimum=1, maximum=max_limit),
        )

    @property
    def page_size(self) -> int:
        return self.limit or DEFAULT_LIMIT

    def after(self, row: Mapping[str, Any]) -> HitQuery:
        """The query for the page after the one that ended with ``row`` (a stored row), in
        the query's own order."""
        return self.after_key(row["ts"], row["id"])

    def after_key(self, ts: int, row_id: int) -> HitQuery:
        """The query for the page after the one that ended with the row ``(ts, row_id)``."""
        key = (int(ts), int(row_id))
        return replace(self, beyond=key) if self.oldest_first else replace(self, before=key)

    def conditions(self) -> list[Condition]:
        """The filters as data, ``(column, operator, value)``, every one to hold; each store
        renders them (SQL with its own placeholders, or a test in memory). The keyset bounds
        are not among them: they are row-value comparisons, ``(ts, id) < before``,
        ``(ts, id) > beyond`` and ``(ts, id) <= through`` (:meth:`keyset`)."""
        out: list[Condition] = []
        if self.since_ms is not None:
            out.append(("ts", ">=", self.since_ms))
        if self.until_ms is not None:
            out.append(("ts", "<", self.until_ms))
        for key, value in sorted(self.equals.items()):
            out.append((FILTER_COLUMNS.get(key, key), "=", value))
        return out

    def keyset(self) -> list[tuple[str, tuple[int, int]]]:
        """The keyset bounds as ``(operator, (ts, id))``, each a comparison of ``(ts, id)``."""
        bounds = (("<", self.before), (">", self.beyond), ("<=", self.through))
        return [(operator, bound) for operator, bound in bounds if bound is not None]


def format_cursor(row: Mapping[str, Any]) -> str:
    """The opaque cursor of the page that follows ``row``."""
    return f"{int(row['ts'])}_{int(row['id'])}"


def parse_cursor(raw: str | None) -> tuple[int, int] | None:
    """``(ts, id)`` from a cursor made by :func:`format_cursor`; None if absent or empty.

    Anything else (forged, truncated, out of range, a bare id from before keyset paging)
    raises QueryError.
    """
    if raw is None or raw == "":
        return None
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise CursorError(CURSOR_HELP)
    ts, row_id = int(match[1]), int(match[2])
    if row_id < 1:  # 18 digits stay below SQLite's 2**63
        raise CursorError(CURSOR_HELP)
    return ts, row_id


def filter_names() -> tuple[str, ...]:
    return ("since", "until", *EQUALITY_FILTERS)


def parse_time(raw: str | None, now_ms: int, name: str) -> int | None:
    """Epoch milliseconds from ISO 8601 (extended or basic; UTC if no zone), 13-digit epoch
    milliseconds, or a duration ago (``15m``, ``2h``, ``7d``). Other digit strings are refused:
    ``20261101`` is a date, not 20,261,101 ms after 1970, and 10 digits are probably seconds."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not text.isascii():
        raise QueryError(f"{name}: {_shown(raw)} is not a time; use {TIME_FORMS}")
    digits = _DIGITS.fullmatch(text) is not None
    if digits and len(text) == EPOCH_MS_DIGITS:
        return int(text)
    if digits and len(text) != BASIC_DATE_DIGITS:
        raise QueryError(
            f"{name}: {_shown(raw)} is not a time: only 13 digits are read as epoch"
            f" milliseconds, and 8 as a date (YYYYMMDD); use {TIME_FORMS}"
        )
    if _RELATIVE.fullmatch(text):
        try:
            return now_ms - parse_duration_ms(text)
        except QueryError as exc:
            raise QueryError(f"{name}: {exc}") from None
    try:
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise QueryError(f"{name}: {_shown(raw)} is not a time; use {TIME_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # exact integer arithmetic: timestamp() goes through a float
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def parse_duration_ms(raw: str) -> int:
    """Milliseconds in ``90s``, ``15m``, ``2h``, ``7d`` or ``4w`` (at most ten years)."""
    match = _RELATIVE.fullmatch(raw.strip())
    if match is None:
        raise QueryError(f"{_shown(raw)} is not a duration like 90s, 15m, 2h, 7d or 4w")
    value = int(match[1]) * _UNIT_MS[match[2]]
    if value > MAX_DURATION_MS:
        raise QueryError(f"{_shown(raw)} is too long: durations go up to 3650d (ten years)")
    return value


def _parse_int(
    raw: str | None, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    if raw is None or raw == "":
        return None
    bound = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
    if not _DIGITS.fullmatch(raw):
        raise QueryError(f"{name} must be a whole number {bound} (ASCII digits)")
    if len(raw) > 18:
        raise QueryError(f"{name} must be {bound}; {len(raw)} digits is too many")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise QueryError(f"{name} must be {bound}")
    return value


def single_params(
    pairs: Iterable[tuple[str, str]], known: Collection[str], noun: str
) -> dict[str, str]:
    """``pairs`` (a query string's, or CLI options') as a dict, or QueryError for a name not
    ``known`` or given more than once (never "last wins"); ``noun`` names them in the error."""
    pairs = list(pairs)
    unknown = sorted({name for name, _ in pairs} - set(known))
    if unknown:
        raise QueryError(f"unknown {noun} {_shown(unknown[0])}; known: {', '.join(sorted(known))}")
    for name, times in Counter(name for name, _ in pairs).items():
        if times > 1:
            raise QueryError(
                f"{name} is given {times} times; give each {noun} once"
                " (several values are not combined: run one query per value)"
            )
    return dict(pairs)


def _shown(raw: str) -> str:
    """``raw`` quoted for an error message, cut so a huge value is not echoed whole."""
    return repr(raw if len(raw) <= _SHOWN_CHARS else raw[:_SHOWN_CHARS] + "...")
