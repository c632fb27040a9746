"""Hit log filters shared by the read API and the CLI: parsing and the SQL WHERE clause.

Paging is by keyset, newest first by ``(ts, id)``: a cursor names the last row a page showed,
and the next page is the rows strictly below it in that order. Every filter has an index that
yields rows in this order (store/schema.py, migration 3), so a page costs the same whether it
is the first or the thousandth, and an export reads each matching row once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .hits import KINDS, UTM_KEYS

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
EQUALITY_FILTERS = ("kind", "e", "eid", "cid", "uid", "sid", *UTM_KEYS)
_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class QueryError(ValueError):
    """Raised for a filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class HitQuery:
    """Filters for reading hits, newest first by ``(ts, id)``.

    ``before`` is the keyset cursor: the ``(ts, id)`` of the last row already seen.
    """

    since_ms: int | None = None
    until_ms: int | None = None
    equals: dict[str, str] = field(default_factory=dict)
    before: tuple[int, int] | None = None
    limit: int | None = None  # page size for reads; a total cap for exports

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, str],
        *,
        now_ms: int | None = None,
        max_limit: int | None = MAX_LIMIT,
    ) -> HitQuery:
        """Build a query from string parameters (API query string or CLI options).

        ``max_limit`` bounds a page; exports pass None, where ``limit`` caps the whole export.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        known = {"since", "until", "cursor", "limit", *EQUALITY_FILTERS}
        unknown = sorted(set(params) - known)
        if unknown:
            raise QueryError(f"unknown filter {unknown[0]!r}; known: {', '.join(sorted(known))}")
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
        """The query for the page after the one that ended with ``row`` (a stored row)."""
        return replace(self, before=(int(row["ts"]), int(row["id"])))

    def where(self, placeholder: str = "?") -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause (possibly empty) and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.since_ms is not None:
            clauses.append(f"ts >= {placeholder}")
            args.append(self.since_ms)
        if self.until_ms is not None:
            clauses.append(f"ts < {placeholder}")
            args.append(self.until_ms)
        for key, value in sorted(self.equals.items()):
            column = "event" if key == "e" else key
            clauses.append(f"{column} = {placeholder}")
            args.append(value)
        if self.before is not None:
            # a row value, so the index on (..., ts) [+ rowid] is entered at the cursor
            clauses.append(f"(ts, id) < ({placeholder}, {placeholder})")
            args.extend(self.before)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


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
        raise QueryError(CURSOR_HELP)
    ts, row_id = int(match[1]), int(match[2])
    if row_id < 1:  # 18 digits stay below SQLite's 2**63
        raise QueryError(CURSOR_HELP)
    return ts, row_id


def filter_names() -> tuple[str, ...]:
    return ("since", "until", *EQUALITY_FILTERS)


def parse_time(raw: str | None, now_ms: int, name: str) -> int | None:
    """Epoch milliseconds from ``1712345678901``, ISO 8601 (UTC if no zone) or ``15m/2h/7d`` ago."""
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    if _RELATIVE.fullmatch(raw):
        return now_ms - parse_duration_ms(raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(
            f"{name}: use epoch milliseconds, ISO 8601 or a duration like 2h"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_duration_ms(raw: str) -> int:
    """Milliseconds in ``90s``, ``15m``, ``2h``, ``7d`` or ``4w``."""
    match = _RELATIVE.fullmatch(raw.strip())
    if match is None:
        raise QueryError(f"{raw!r} is not a duration like 90s, 15m, 2h, 7d or 4w")
    return int(match[1]) * _UNIT_MS[match[2]]


def _parse_int(
    raw: str | None, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise QueryError(f"{name} must be a whole number")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
        raise QueryError(f"{name} must be {bound}")
    return value
