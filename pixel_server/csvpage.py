"""CSV text for a page of rows, given column by column: exactly what ``csv.writer`` with
``lineterminator="\\r\\n"`` writes, built with a few str operations per column and per distinct
value instead of the writer's C loop over every character (export-2m in docs/benchmarks.md).

The rules reproduced are the standard dialect's (``excel``, ``QUOTE_MINIMAL``): None is an
empty cell, an int its ``str()``, and a str that holds a comma, a double quote, CR or LF is
quoted, its double quotes doubled. A column holding anything else (floats, bytes, bools, str
subclasses, unhashable values) sends the whole page through ``csv.writer`` itself.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

LINE_END = "\r\n"
# csv.writer quotes a str with the delimiter, the quote character or a line-end character
_NEEDS_QUOTES = re.compile('[,"\r\n]').search
_INT = frozenset((int,))
_TEXT = frozenset((str, type(None)))
# the distinct strs of a column -> the text to write instead, for those to be changed
Fix = Callable[[Iterable[str]], dict[str, str]]


def csv_text(columns: Sequence[Sequence[Any]], fix: Fix | None = None, fix_from: int = 0) -> str:
    """The CSV lines of the rows whose cells are ``columns``: one sequence per column (two
    or more), all of the same length.

    ``fix``, given the distinct strs of a column from index ``fix_from`` on, returns the
    text to write instead of some of them (before quoting): the export's formula defusing.
    """
    if len(columns) < 2:  # csv.writer quotes a row that is one empty cell: not handled here
        return _written(columns, fix, fix_from)
    cells = []
    for index, column in enumerate(columns):
        text = _column_text(column, fix if index >= fix_from else None)
        if text is None:
            return _written(columns, fix, fix_from)
        cells.append(text)
    rows = zip(*cells, strict=True)
    return LINE_END.join(map(",".join, rows)) + LINE_END if columns[0] else ""


def _column_text(column: Sequence[Any], fix: Fix | None) -> Sequence[str] | None:
    """The column's cells as CSV text, or None for a column this module does not handle."""
    try:
        distinct = set(column)
    except TypeError:  # an unhashable value
        return None
    kinds = set(map(type, distinct))
    if kinds <= _INT:
        return list(map(str, column))  # digits and '-' only: never quoted, never fixed
    if not kinds <= _TEXT:
        return None
    # each distinct value is looked at once: a page repeats most of them (user agents,
    # campaigns, UTM values), and only the values that change go into ``replace``
    has_none = None in distinct
    distinct.discard(None)
    replace: dict[str | None, str] = {}
    if fix is not None:
        replace.update(fix(distinct))
    if _NEEDS_QUOTES("".join(distinct)) or _NEEDS_QUOTES("".join(replace.values())):
        for value in distinct:
            text = replace.get(value, value)
            if _NEEDS_QUOTES(text):
                replace[value] = '"' + text.replace('"', '""') + '"'
    if has_none:
        replace[None] = ""
    if not replace:
        return column
    return list(map(replace.get, column, column))


def _written(columns: Sequence[Sequence[Any]], fix: Fix | None, fix_from: int) -> str:
    """What csv.writer writes for the rows of ``columns``, ``fix`` applied cell by cell."""
    if fix is not None:
        columns = [
            [_fixed(cell, fix) for cell in column] if index >= fix_from else column
            for index, column in enumerate(columns)
        ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerows(zip(*columns, strict=True))
    return buffer.getvalue()


def _fixed(cell: Any, fix: Fix) -> Any:
    return fix((cell,)).get(cell, cell) if isinstance(cell, str) else cell
