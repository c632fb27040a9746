"""How stored hits leave the service: as JSON objects, CSV rows or NDJSON lines.

Shared by the read API and the CLI so both export exactly the same thing.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .hits import COLUMNS
from .ndjson import ndjson_line
from .query import HitQuery
from .store.base import Store

EXPORT_COLUMNS = ("id", "time", *COLUMNS)
PAGE = 1000
# a cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# ... and so is one starting with their fullwidth or small forms (spreadsheets fold them to
# ASCII, as IMEs type them), possibly after spaces and invisible characters that get trimmed
FORMULA_CHARS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b")


def iso_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def present(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: ISO time added, params decoded, flags as a list."""
    out = {"id": row["id"], "time": iso_time(row["ts"])}
    for column in COLUMNS:
        out[column] = row[column]
    out["params"] = json.loads(row["params"]) if row["params"] else {}
    out["flags"] = row["flags"].split(",") if row["flags"] else []
    for flag in ("is_bot", "dnt", "gpc"):
        out[flag] = bool(row[flag])
    return out


def neutralise(value: Any) -> Any:
    """Defuse spreadsheet formula injection: prefix with ' a cell that starts with tab, CR, LF
    or a formula character (= + - @, fullwidth or small forms too), also after leading
    whitespace or invisible characters."""
    if not isinstance(value, str) or value[:1].isalnum():
        return value  # the common case, checked first: a letter or digit starts no formula
    if value.startswith(FORMULA_START) or _first_visible(value) in FORMULA_CHARS:
        return "'" + value
    return value


def _first_visible(text: str) -> str:
    for char in text:
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            return char
    return ""


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(EXPORT_COLUMNS)
    return buffer.getvalue()


def csv_rows(rows: Iterable[dict[str, Any]]) -> str:
    """CSV lines, one per row; params stay a JSON string, flags a comma list, booleans 0/1.

    One writer and buffer serve a whole page: building them per row was half the cost of an
    export (docs/benchmarks.md, export-2m).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # neutralise() is called only for a string that does not start with a letter or digit:
    # most cells are None, numbers or plain words, and a call per cell was a third of the cost
    writer.writerows(
        [
            row["id"],
            iso_time(row["ts"]),
            *[
                v if v.__class__ is not str or v[:1].isalnum() else neutralise(v)
                for v in map(row.__getitem__, COLUMNS)
            ],
        ]
        for row in rows
    )
    return buffer.getvalue()


def ndjson_rows(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(ndjson_row(row) for row in rows)


def ndjson_row(row: dict[str, Any]) -> str:
    """One JSON object and a newline; U+2028, U+2029 and NEL escaped so no reader splits it."""
    return ndjson_line(json.dumps(present(row), ensure_ascii=False, separators=(",", ":")))


async def iter_pages(
    store: Store, query: HitQuery, max_rows: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching row, newest first, in short pages (no long read transaction); no page
    is empty."""
    sent = 0
    page_query = query
    while max_rows is None or sent < max_rows:
        size = PAGE if max_rows is None else min(PAGE, max_rows - sent)
        rows = await store.query(replace(page_query, limit=size))
        if rows:
            yield rows
        sent += len(rows)
        if len(rows) < size:
            return
        page_query = query.after(rows[-1])


async def iter_rows(
    store: Store, query: HitQuery, max_rows: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every matching row, one at a time (see :func:`iter_pages`)."""
    async for page in iter_pages(store, query, max_rows):
        for row in page:
            yield row
