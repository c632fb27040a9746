"""How stored hits leave the service: as JSON objects, CSV rows or NDJSON lines.

Shared by the read API and the CLI so both export exactly the same thing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .hits import COLUMNS
from .query import HitQuery
from .store.base import Store

EXPORT_COLUMNS = ("id", "time", *COLUMNS)
PAGE = 1000
# a cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


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
    """Defuse spreadsheet formula injection: prefix a leading = + - @ (or tab/CR/LF) with '."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def csv_header() -> str:
    return csv_line(list(EXPORT_COLUMNS))


def csv_row(row: dict[str, Any]) -> str:
    """One CSV line; params stay a JSON string, flags a comma list, booleans 0/1."""
    shown = {**row, "time": iso_time(row["ts"])}
    return csv_line([neutralise(shown[c]) for c in EXPORT_COLUMNS])


def ndjson_row(row: dict[str, Any]) -> str:
    return json.dumps(present(row), ensure_ascii=False, separators=(",", ":")) + "\n"


async def iter_rows(
    store: Store, query: HitQuery, max_rows: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every matching row, newest first, read in short pages (no long read transaction)."""
    sent = 0
    page_query = query
    while max_rows is None or sent < max_rows:
        size = PAGE if max_rows is None else min(PAGE, max_rows - sent)
        rows = await store.query(replace(page_query, limit=size))
        for row in rows:
            yield row
        sent += len(rows)
        if len(rows) < size:
            return
        page_query = query.after(rows[-1])
