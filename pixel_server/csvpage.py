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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

LINE_END = "\r\n"
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
    """The column's cells as CSV text, or None for a column this module does not handle.

    Each distinct value is looked at once: a page repeats most of them (user agents,
    campaigns, UTM values, None), and a cell only costs a dict lookup, or nothing in a column
    of one value.
    """
    try:
        distinct = set(column)
    except TypeError:  # an unhashable value
        return None
    kinds = set(map(type, distinct))
    if kinds <= _INT:  # digits and '-' only: never quoted, never fixed
        if len(distinct) > len(column) // 8:  # mostly distinct (ids, times): str() each
            return list(map(str, column))
        texts: dict[Any, str] = {value: str(value) for value in distinct}
    elif kinds <= _TEXT:
        texts = _texts(distinct, fix)
    else:
        return None
    if len(distinct) == 1:
        return [texts.get(column[0], column[0])] * len(column)
    return list(map(texts.get, column, column)) if texts else column


def _texts(distinct: set[str | None], fix: Fix | None) -> dict[str | None, str]:
    """What to write instead of those of the ``distinct`` values that are not written as
    they are: None, fixed and quoted texts."""
    texts: dict[str | None, str] = {None: ""} if None in distinct else {}
    strs = [value for value in distinct if value is not None]
    if fix is not None:
        texts.update(fix(strs))
    if _needs_quotes("".join(strs)) or _needs_quotes("".join(texts.values())):
        for value in strs:
            text = texts.get(value, value)
            if _needs_quotes(text):
                texts[value] = '"' + text.replace('"', '""') + '"'
    return texts


def _needs_quotes(text: str) -> bool:
    """Whether csv.writer quotes ``text``: it holds the delimiter, the quote character or a
    line-end character (four scans by memchr are cheaper than one regular expression)."""
    return "," in text or '"' in text or "\r" in text or "\n" in text


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
