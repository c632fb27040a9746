"""Recipient lists for minting in bulk: a CSV in, the same rows with their signed URL out.

The input has a header row with a ``uid`` column; every other column is a field signed into
that recipient's token (an empty cell signs nothing), except the columns *carried*
(``--carry email``): those reach the output as read and are signed into nothing — the
address a mailer sends to, which must never be in a link. Output is CSV (the input columns
plus one for the URL) or NDJSON (one object per recipient), in input order.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from .ndjson import ndjson_line


class RecipientsError(ValueError):
    """Raised for a recipients file that cannot be used; the message names the line."""


@dataclass(frozen=True)
class Recipient:
    line: int  # where the row starts in the file (the header is line 1)
    cells: dict[str, str]  # every column, as read
    carried: frozenset[str] = frozenset()  # columns for the output only, never signed

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The cells to sign: the non-empty ones of the columns not carried."""
        return [(k, v) for k, v in self.cells.items() if v and k not in self.carried]


def read_recipients(
    fh: TextIO, name: str, carry: Iterable[str] = ()
) -> tuple[list[str], list[Recipient]]:
    """The header and rows of a recipients CSV, or :class:`RecipientsError` naming the line;
    ``carry`` names columns that must exist and are signed into nothing."""
    reader = csv.reader(fh, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise RecipientsError(f"{name} line 1: the file is empty (it needs a 'uid' column)")
        _check_header(header, name)
        carried = _carried(header, name, carry)
        rows: list[Recipient] = []
        seen: dict[str, int] = {}
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                raise RecipientsError(
                    f"{name} line {line}: {len(cells)} cells, but the header has {len(header)}"
                )
            row = dict(zip(header, cells, strict=True))
            uid = row["uid"]
            if not uid:
                raise RecipientsError(f"{name} line {line}: the uid is empty")
            if uid in seen:
                raise RecipientsError(
                    f"{name} line {line}: uid {uid!r} is already on line {seen[uid]}"
                )
            seen[uid] = line
            rows.append(Recipient(line, row, carried))
    except csv.Error as exc:
        raise RecipientsError(f"{name} line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipientsError(
            f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    return header, rows


def _carried(header: list[str], name: str, carry: Iterable[str]) -> frozenset[str]:
    carried = frozenset(carry)
    for column in sorted(carried):
        if column == "uid":
            raise RecipientsError(f"{name} line 1: the uid is signed into every token; not --carry")
        if column not in header:
            raise RecipientsError(f"{name} line 1: --carry {column!r}: no such column")
    return carried


def _check_header(header: list[str], name: str) -> None:
    if "uid" not in header:
        shown = ", ".join(repr(c) for c in header[:10])
        raise RecipientsError(f"{name} line 1: no 'uid' column (the header has {shown})")
    for i, column in enumerate(header):
        if column in header[:i]:
            raise RecipientsError(f"{name} line 1: column {column!r} appears twice")


def write_rows(
    columns: list[str], rows: Iterable[tuple[Recipient, str]], fmt: str, column: str
) -> Iterator[str]:
    """Output text, chunk by chunk: ``rows`` pairs each recipient with its signed URL."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([*columns, column])
        for recipient, url in rows:
            writer.writerow([*recipient.cells.values(), url])
            if buffer.tell() > 1 << 16:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
        return
    for recipient, url in rows:
        yield ndjson_line(json.dumps({**recipient.cells, column: url}, ensure_ascii=False))
