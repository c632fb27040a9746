"""The `hits` table: escaped cells, aligned in terminal columns whatever the script."""

from __future__ import annotations

from typing import Any

import wcwidth

from pixel_server.terminal import TABLE, hits_table


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": 1_764_000_000_000,
        "kind": "view",
        "cid": None,
        "uid": None,
        "utm_source": "nl",
        "browser": "Chrome",
        "browser_version": "124",
        "os": "Windows",
        "device": "desktop",
        "is_bot": 0,
        "ip": "203.0.113.0",
    }
    return {**base, **values}


def column_of(line: str, marker: str) -> int:
    """The terminal column at which ``marker`` starts in ``line``."""
    return wcwidth.width(line[: line.index(marker)])


def test_wide_characters_keep_the_columns_aligned() -> None:
    """CJK and emoji take two columns each; later columns start at the same place on every row."""
    rows = [
        row(cid="spring", uid="r-1"),
        row(cid="日本語のキャンペーン名です", uid="👍👍"),  # 26 columns: cut to 16
        row(cid="春", uid="👩‍👩‍👧 family"),  # a ZWJ emoji sequence is one 2-column glyph
        row(cid="ascii-but-much-too-long-for-the-column", uid="ok"),
    ]
    lines = hits_table(rows).splitlines()
    starts = {column_of(line, "nl") for line in lines[1:]}
    assert starts == {column_of(lines[0], "utm_source")}
    ip_starts = {column_of(line, "203.0.113.0") for line in lines[1:]}
    assert ip_starts == {column_of(lines[0], "ip")}


def test_a_cut_cell_fits_its_width_and_says_so() -> None:
    """A cell wider than its column is cut to the column's width, ending in an ellipsis."""
    width = dict(TABLE)["cid"]
    line = hits_table([row(cid="日本語のキャンペーン名です")]).splitlines()[1]
    start = column_of(line, "日")
    cell = line[line.index("日") : line.index("…") + 1]
    assert wcwidth.width(cell) <= width
    assert column_of(line, "…") < start + width


def test_control_characters_are_shown_escaped() -> None:
    """An ESC sequence or a bidi override in a value is printed as text, never sent raw."""
    out = hits_table([row(cid="\x1b[1m\u202e")])
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\\x1b[1m\\u202e" in out


def test_an_event_name_gets_its_column_when_a_row_has_one() -> None:
    """Only a table with events shows the event column, after kind; a hostile name is shown
    escaped there like any cell."""
    assert "event" not in hits_table([row()]).splitlines()[0]
    table = hits_table([row(), row(kind="event", event="video_started\x1b[2J")]).splitlines()
    assert table[0].split()[:4] == ["time", "(UTC)", "kind", "event"]
    assert table[2].split()[2:4] == ["event", "video_started\\x1b…"]
    assert "\x1b" not in "\n".join(table)
    header, view, _ = table
    assert header.index("utm_source") == view.index("nl")  # the columns line up below it
