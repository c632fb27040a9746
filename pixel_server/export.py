"""How stored hits leave the service: as JSON objects, CSV rows or NDJSON lines.

Shared by the read API and the CLI so both export exactly the same thing.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from .csvpage import csv_text
from .hits import COLUMNS
from .ndjson import ndjson_line
from .query import HitQuery
from .store.base import ROW_KEYS, Store

EXPORT_COLUMNS = ("id", "time", *COLUMNS)
PAGE = 1000
# a cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# ... and so is one starting with their fullwidth or small forms (spreadsheets fold them to
# ASCII, as IMEs type them), possibly after spaces and invisible characters that get trimmed
FORMULA_CHARS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b")

# Rows come from Store.query_rows(): sequences in ROW_KEYS order, read by index
_ID, _TS = ROW_KEYS.index("id"), ROW_KEYS.index("ts")
_PARAMS, _FLAGS = ROW_KEYS.index("params"), ROW_KEYS.index("flags")
_BOOLS = tuple((flag, ROW_KEYS.index(flag)) for flag in ("is_bot", "dnt", "gpc"))
_COLUMNS = tuple(ROW_KEYS.index(column) for column in COLUMNS)
_ts = itemgetter(_TS)
_columns = itemgetter(*_COLUMNS)  # a tuple
_values = itemgetter(*ROW_KEYS)  # a stored row's dict as a query_rows() row

# iso_times(): the time of day from tables, the date and hour from iso_time() once an hour
_HOUR_MS = 3_600_000
_MINUTES_SECONDS = tuple(f":{m:02}:{s:02}." for m in range(60) for s in range(60))
_MILLISECONDS = tuple(f"{ms:03}+00:00" for ms in range(1000))
# Below 2**32 s (year 2106) the float ts_ms / 1000 that iso_time() converts is within 0.5 us
# of the exact time, so it rounds to the exact millisecond: integer arithmetic gives the same
# text. Past that, iso_time() itself is used.
_EXACT_MS = 2**32 * 1000


def iso_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def iso_times(stamps: Iterable[int]) -> list[str]:
    """``iso_time()`` of each of ``stamps``, about 6x faster on a page of an export: the
    ``YYYY-MM-DDTHH`` prefix is kept while the hour lasts (pages are in time order) and the
    minutes, seconds and milliseconds are looked up."""
    out: list[str] = []
    append = out.append
    start = end = 0  # the hour of ``prefix``, [start, end) in ms
    prefix = ""
    for ts in stamps:
        if ts.__class__ is int and start <= ts < end:
            within = ts - start
            append(f"{prefix}{_MINUTES_SECONDS[within // 1000]}{_MILLISECONDS[within % 1000]}")
        elif ts.__class__ is int and 0 <= ts < _EXACT_MS:
            start = ts - ts % _HOUR_MS
            end = start + _HOUR_MS
            prefix = iso_time(start)[:13]
            within = ts - start
            append(f"{prefix}{_MINUTES_SECONDS[within // 1000]}{_MILLISECONDS[within % 1000]}")
        else:
            append(iso_time(ts))
    return out


def present(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: ISO time added, params decoded, flags as a list."""
    return _presented(_values(row), iso_time(row["ts"]))


def _presented(row: Sequence[Any], time: str) -> dict[str, Any]:
    """:func:`present` of a ``query_rows()`` row whose ``iso_time`` is ``time``."""
    out = dict(zip(EXPORT_COLUMNS, (row[_ID], time, *_columns(row)), strict=True))
    params, flags = row[_PARAMS], row[_FLAGS]
    out["params"] = json.loads(params) if params else {}
    out["flags"] = flags.split(",") if flags else []
    for flag, index in _BOOLS:
        out[flag] = bool(row[index])
    return out


def neutralise(value: Any) -> Any:
    """Defuse spreadsheet formula injection: prefix with ' a cell that starts with tab, CR, LF
    or a formula character (= + - @, fullwidth or small forms too), also after leading
    whitespace or invisible characters."""
    return "'" + value if isinstance(value, str) and is_formula(value) else value


def is_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula (see :func:`neutralise`)."""
    if text[:1].isalnum():
        return False  # the common case, checked first: a letter or digit starts no formula
    return text.startswith(FORMULA_START) or _first_visible(text) in FORMULA_CHARS


def _first_visible(text: str) -> str:
    for char in text:
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            return char
    return ""


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(EXPORT_COLUMNS)
    return buffer.getvalue()


def csv_rows(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines, one per ``query_rows()`` row; params stay a JSON string, flags a comma list,
    booleans 0/1.

    A page is turned into columns and written a column at a time (csvpage.py): a column's
    distinct values are checked for formulas and quoting once, and no Python code runs per
    cell unless a column needs it (docs/benchmarks.md, export-2m).
    """
    if not rows:
        return ""
    columns = list(zip(*rows, strict=True))
    if len(columns) != len(ROW_KEYS):
        raise ValueError(f"a row has {len(columns)} values, not {len(ROW_KEYS)} (ROW_KEYS)")
    cells = [columns[_ID], iso_times(columns[_TS]), *(columns[i] for i in _COLUMNS)]
    return csv_text(cells, fix=formula_fixes, fix_from=2)  # the id and time are not fixed


def formula_fixes(texts: Iterable[str]) -> dict[str, str]:
    """:func:`neutralise` for the few of ``texts`` it changes: ``{text: "'" + text}``."""
    return {text: "'" + text for text in texts if not text[:1].isalnum() and is_formula(text)}


def ndjson_rows(rows: Sequence[Sequence[Any]]) -> str:
    """NDJSON lines, one per ``query_rows()`` row (see :func:`ndjson_row`)."""
    return "".join(map(_ndjson_line, rows, iso_times(map(_ts, rows))))


def ndjson_row(row: Mapping[str, Any]) -> str:
    """One JSON object and a newline; U+2028, U+2029 and NEL escaped so no reader splits it."""
    return _ndjson_line(_values(row), iso_time(row["ts"]))


def _ndjson_line(row: Sequence[Any], time: str) -> str:
    return ndjson_line(json.dumps(_presented(row, time), ensure_ascii=False, separators=(",", ":")))


async def iter_pages(
    store: Store, query: HitQuery, max_rows: int | None = None
) -> AsyncIterator[list[Sequence[Any]]]:
    """Every matching row (``Store.query_rows()`` rows), newest first, in short pages (no long
    read transaction); no page is empty."""
    sent = 0
    page_query = query
    while max_rows is None or sent < max_rows:
        size = PAGE if max_rows is None else min(PAGE, max_rows - sent)
        rows = await store.query_rows(replace(page_query, limit=size))
        if rows:
            yield rows
        sent += len(rows)
        if len(rows) < size:
            return
        page_query = query.after_key(rows[-1][_TS], rows[-1][_ID])


async def iter_rows(
    store: Store, query: HitQuery, max_rows: int | None = None
) -> AsyncIterator[Sequence[Any]]:
    """Every matching row, one at a time (see :func:`iter_pages`)."""
    async for page in iter_pages(store, query, max_rows):
        for row in page:
            yield row
