"""Hits as a readable terminal table. Every cell is escaped: a user agent or a parameter
carrying ESC sequences cannot move the cursor or recolour a terminal.

Cells are measured in terminal columns (wcwidth), not characters, so CJK text and emoji,
which take two columns each, do not push the rest of the row out of line."""

from __future__ import annotations

from typing import Any

import wcwidth

from .export import iso_time

TABLE = (
    ("time (UTC)", 19),
    ("kind", 5),
    ("cid", 16),
    ("uid", 16),
    ("utm_source", 12),
    ("browser", 14),
    ("os", 10),
    ("device", 7),
    ("ip", 15),
    ("class", 12),
    ("reasons", 30),
)
EVENT = ("event", 18)  # the event name, shown after kind when a row has one


def escape(value: Any) -> str:
    """Printable text only: anything else becomes a visible escape such as ``\\x1b``."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut and padded to exactly ``width`` terminal columns."""
    shown = wcwidth.width(text)
    if shown > width:
        # clip() pads with a space where it would split a two-column character
        text = wcwidth.clip(text, 0, width - 1) + "…"
        shown = wcwidth.width(text)
    return text + " " * (width - shown)


def hits_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no hits"
    table: tuple[tuple[str, int], ...] = TABLE
    if any(row.get("event") for row in rows):
        table = (*TABLE[:2], EVENT, *TABLE[2:])
    lines = ["  ".join(fit(name, width) for name, width in table)]
    for row in rows:
        shown = {
            **row,
            "time (UTC)": iso_time(row["ts"])[:19].replace("T", " "),
            "class": row.get("traffic"),
            "reasons": row.get("traffic_reasons"),
            "browser": " ".join(filter(None, (row["browser"], row["browser_version"]))),
        }
        lines.append("  ".join(fit(escape(shown.get(name)), width) for name, width in table))
    return "\n".join(line.rstrip() for line in lines)
