"""What leaves the service in exports: CSV cells a spreadsheet cannot run as formulas, NDJSON
records that no reader splits."""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.csvpage import csv_text
from pixel_server.export import (
    EXPORT_COLUMNS,
    csv_rows,
    iso_times,
    ndjson_row,
    ndjson_rows,
    neutralise,
)
from pixel_server.hits import COLUMNS, Hit
from pixel_server.store.base import ROW_KEYS

from conftest import Harness

pytestmark = pytest.mark.both_stores

HIDDEN_FORMULAS = [
    " =1+1",  # spaces before the formula: Excel and LibreOffice trim them
    "   @SUM(A1)",
    "\u00a0=1",  # NO-BREAK SPACE
    "\u3000+1",  # IDEOGRAPHIC SPACE
    "\u2028-1",  # LINE SEPARATOR
    "\u200b=1",  # ZERO WIDTH SPACE
    "\ufeff@x",  # BYTE ORDER MARK
    "\u200e\u200f=1",  # LRM RLM
    '\uff1dHYPERLINK("http://x")',  # FULLWIDTH EQUALS SIGN
    "\uff0b1",  # FULLWIDTH PLUS SIGN
    "\uff0d1",  # FULLWIDTH HYPHEN-MINUS
    "\uff20SUM(A1)",  # FULLWIDTH COMMERCIAL AT
    " \uff1d1",
    "\ufe661",  # SMALL EQUALS SIGN
    "\ufe621",  # SMALL PLUS SIGN
    "\ufe631",  # SMALL HYPHEN-MINUS
    "\ufe6bx",  # SMALL COMMERCIAL AT
]


@pytest.mark.parametrize("cell", HIDDEN_FORMULAS)
def test_formulas_behind_whitespace_or_in_fullwidth_are_neutralised(cell: str) -> None:
    """A formula character after leading whitespace or invisible characters, or in its
    fullwidth or small form, gets the ' prefix like a plain = + - @ does."""
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", "a=1", "1-2", " 1", " ", "", "\u00a0", "x@y.example"])
def test_cells_without_a_leading_formula_are_left_alone(cell: str) -> None:
    """Text whose first visible character is not a formula character is not changed."""
    assert neutralise(cell) == cell


async def test_the_csv_export_neutralises_hidden_formulas_in_every_column(
    harness: Harness,
) -> None:
    """Through /api/hits.csv, a hidden formula in an id, a UTM value and the user agent is
    exported with the ' prefix, so a spreadsheet shows it as text."""
    payload = '\u00a0\uff1dHYPERLINK("http://evil.example")'
    await harness.client.get(
        f"/p.gif?cid={quote(' =1+1')}&utm_source={quote(payload)}",
        headers={"user-agent": "  @cmd"},
    )
    response = await harness.client.get("/api/hits.csv", headers=harness.auth)
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["cid"] == "' =1+1"
    assert row["utm_source"] == "'" + payload
    assert row["ua"] == "'  @cmd"


LINE_BREAKERS = ["\u2028", "\u2029", "\x85"]


async def test_ndjson_lines_escape_unicode_line_separators(harness: Harness) -> None:
    """U+2028, U+2029 and NEL in any value are written as \\u escapes: each hit is one line for
    str.splitlines() and for JavaScript, and parses back to the original text."""
    assert harness.rt.store is not None
    values = [f"a{char}b" for char in LINE_BREAKERS]
    await harness.rt.store.write(
        [
            Hit(ts=1_793_491_200_000, kind="view", cid=v, ua=v, params=json.dumps({"k": v}))
            for v in values
        ]
    )
    response = await harness.client.get("/api/hits.ndjson", headers=harness.auth)
    for char in LINE_BREAKERS:
        assert char not in response.text
    lines = response.text.splitlines()
    assert len(lines) == len(values)
    hits = [json.loads(line) for line in lines]
    assert sorted(hit["cid"] for hit in hits) == sorted(values)
    assert sorted(hit["params"]["k"] for hit in hits) == sorted(values)


def test_an_ndjson_row_is_one_line_whatever_the_text() -> None:
    """ndjson_row on a row full of every separator and control still makes exactly one line."""
    nasty = "x\u2028\u2029\x85\n\r\x0b\x0c\x1c\x1d\x1e\u0000y"
    row = dict.fromkeys(COLUMNS, nasty) | {
        "id": 1, "ts": 0, "params": json.dumps({nasty: nasty}), "flags": "", "is_bot": 0,
        "dnt": 0, "gpc": 0,
    }  # fmt: skip
    line = ndjson_row(row)
    assert line.endswith("\n")
    assert len(line.splitlines()) == 1
    decoded = json.loads(line)
    assert decoded["ua"] == nasty
    assert decoded["params"] == {nasty: nasty}


# --- the fast paths against a plain reference ----------------------------------------------------
#
# csv_rows() writes a page column by column (csvpage.py) and ndjson_rows() reads rows by index;
# both must give, byte for byte, what the straightforward code below gives: csv.writer on each
# row with every cell neutralised, and one json.dumps per row of a dict.

PARAMS = ROW_KEYS.index("params")
REFERENCE_FORMULA_CHARS = "=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b"


def reference_neutralise(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    visible = next(
        (c for c in value if not (c.isspace() or unicodedata.category(c) in ("Cc", "Cf"))), ""
    )
    if value[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") or (
        visible and visible in REFERENCE_FORMULA_CHARS
    ):
        return "'" + value
    return value


def reference_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def reference_csv(rows: list[tuple[Any, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        hit = dict(zip(ROW_KEYS, row, strict=True))
        cells = [reference_neutralise(hit[column]) for column in COLUMNS]
        writer.writerow([hit["id"], reference_time(hit["ts"]), *cells])
    return buffer.getvalue()


def reference_ndjson(rows: list[tuple[Any, ...]]) -> str:
    lines = []
    for row in rows:
        hit = dict(zip(ROW_KEYS, row, strict=True))
        out = {"id": hit["id"], "time": reference_time(hit["ts"])}
        out |= {column: hit[column] for column in COLUMNS}
        out["params"] = json.loads(hit["params"]) if hit["params"] else {}
        out["flags"] = hit["flags"].split(",") if hit["flags"] else []
        out |= {flag: bool(hit[flag]) for flag in ("is_bot", "dnt", "gpc")}
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
        for char in ("\u2028", "\u2029", "\x85"):
            text = text.replace(char, f"\\u{ord(char):04x}")
        lines.append(text + "\n")
    return "".join(lines)


# cells that exercise every rule: formulas (hidden, fullwidth, after invisible characters),
# near misses, quoting (comma, quote, CR, LF), line separators, non-ASCII, empty and None
TRICKY_TEXTS = [
    *HIDDEN_FORMULAS, "=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\nx", "'=1", "_x", "a=1",
    "1-2", " ", "", "\u00a0", "x@y.example", "a,b", 'say "hi"', '"', "a\r\nb", "a\nb", "a\rb",
    "\u2028", "x\u2029y", "\x85", "caf\u00e9", "\u65e5\u672c", "\U0001f600", "\uff11", "\x00",
    "\ufffd", " ,=1", '=HYPERLINK("http://x","y")', "Mozilla/5.0 (KHTML, like Gecko)",
]  # fmt: skip
TEXTS = st.one_of(
    st.none(),
    st.sampled_from(TRICKY_TEXTS),
    st.text(max_size=12),
    st.lists(st.sampled_from(TRICKY_TEXTS), max_size=3).map("".join),
)
TIMES = st.one_of(
    st.integers(0, 2_000_000_000_000),
    st.integers(-62_135_596_800_000, 253_402_300_799_999),  # datetime's years 1-9999
    st.sampled_from([0, 999, 1000, 3_599_999, 3_600_000, 2**32 * 1000 - 1, 2**32 * 1000, -1]),
)


@st.composite
def stored_rows(draw: st.DrawFn, json_params: bool = False) -> tuple[Any, ...]:
    """One query_rows() row: ints where the schema has integers, text or None elsewhere."""
    values: dict[str, Any] = {"id": draw(st.integers(1, 2**63 - 1)), "ts": draw(TIMES)}
    for column in COLUMNS[1:]:
        if column in ("is_bot", "dnt", "gpc"):
            values[column] = draw(st.sampled_from([0, 1, -1, 7]))
        elif column == "params" and json_params:
            params = draw(st.none() | st.dictionaries(st.sampled_from(TRICKY_TEXTS), TEXTS))
            values[column] = None if params is None else json.dumps(params, ensure_ascii=False)
        else:
            values[column] = draw(TEXTS)
    return tuple(values[key] for key in ROW_KEYS)


def pages(rows: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Pages of rows, some with repeated rows (a page repeats most values) or in ts order."""
    return st.one_of(
        st.lists(rows, max_size=25),
        st.lists(rows, min_size=1, max_size=6).map(lambda page: page * 3),
        st.lists(rows, max_size=25).map(lambda page: sorted(page, key=lambda r: -r[1])),
    )


@settings(max_examples=300, deadline=None)
@given(pages(stored_rows()))
def test_csv_rows_write_what_csv_writer_writes_of_neutralised_cells(
    page: list[tuple[Any, ...]],
) -> None:
    """csv_rows() is byte for byte csv.writer on every row with every cell neutralised."""
    assert csv_rows(page) == reference_csv(page)


@settings(max_examples=200, deadline=None)
@given(pages(stored_rows(json_params=True)))
def test_ndjson_rows_are_one_json_dumps_per_row(page: list[tuple[Any, ...]]) -> None:
    """ndjson_rows() is byte for byte one escaped json.dumps per row."""
    assert ndjson_rows(page) == reference_ndjson(page)


# any cell in any column: ints and None mixed with text (written column by column), and
# floats, bytes, bools (a page with one of those is written by csv.writer)
ANY_CELLS = st.one_of(
    st.just(st.one_of(TEXTS, st.integers())),
    st.just(st.one_of(TEXTS, st.floats(), st.binary(max_size=4), st.booleans(), st.integers())),
)


@settings(max_examples=300, deadline=None)
@given(
    ANY_CELLS.flatmap(
        lambda cells: st.lists(
            st.lists(cells, min_size=len(ROW_KEYS) - 2, max_size=len(ROW_KEYS) - 2),
            min_size=1,
            max_size=5,
        )
    )
)
def test_csv_rows_of_any_cell_types_still_match_csv_writer(cells: list[list[Any]]) -> None:
    """Ints in text columns, None or text in integer ones, floats, bytes, bools (none of which
    the schema stores) give the same bytes as csv.writer."""
    page = [(i, 1_767_225_600_000 + i, *row) for i, row in enumerate(cells, 1)]
    assert csv_rows(page) == reference_csv(page)


def test_csv_text_quotes_what_a_fix_returns() -> None:
    """csvpage.csv_text() quotes the text a fix gives (here with a comma or a quote) and
    leaves the columns before fix_from alone, as csv.writer on the fixed cells would."""

    def fix(texts: Iterable[str]) -> dict[str, str]:
        return {text: f'{text},"x"' for text in texts if text.startswith("f")}

    columns = [("f1", "a", None), (1, 2, 3), ("f", "b,c", None), ("fy", "q", "f")]
    buffer = io.StringIO()
    fixed = [
        columns[0],
        columns[1],
        *([fix([v]).get(v, v) if isinstance(v, str) else v for v in c] for c in columns[2:]),
    ]
    csv.writer(buffer, lineterminator="\r\n").writerows(zip(*fixed, strict=True))
    assert csv_text(columns, fix=fix, fix_from=2) == buffer.getvalue()
    assert csv_text([(), ()]) == ""


def test_a_big_page_of_repeated_values_matches_the_reference() -> None:
    """A 3,000-row page drawn from few values, as a campaign export is, with formulas and
    quoting in some rows only: the same bytes as the reference, and formulas defused."""
    rng = random.Random(6)
    choices = [None, "newsletter", "Mozilla/5.0 (KHTML, like Gecko)", *TRICKY_TEXTS]
    page = [
        (
            i + 1,
            1_767_225_600_000 + 3_700 * i,
            *(rng.choice(choices) if rng.random() < 0.02 else choices[1] for _ in COLUMNS[1:]),
        )
        for i in range(3000)
    ]
    text = csv_rows(page)
    assert text == reference_csv(page)
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert len(cells) == 3000 * len(EXPORT_COLUMNS)
    assert "'=1+1" in cells
    assert all(cell.startswith("'") or reference_neutralise(cell) == cell for cell in cells)
    no_params = [(*row[:PARAMS], None, *row[PARAMS + 1 :]) for row in page]
    assert ndjson_rows(no_params) == reference_ndjson(no_params)


@settings(max_examples=500)
@given(st.lists(TIMES, max_size=20).map(sorted))
def test_iso_times_match_iso_time(stamps: list[int]) -> None:
    """iso_times() gives iso_time() of each stamp, within an hour, across hours and past
    2106, where it stops using its tables."""
    assert iso_times(stamps) == [reference_time(ts) for ts in stamps]
    assert iso_times(stamps[::-1]) == [reference_time(ts) for ts in stamps[::-1]]


def test_iso_times_match_iso_time_over_datetimes_whole_range() -> None:
    """20,000 seeded stamps over years 1-9999, where iso_time()'s float differs from exact
    arithmetic far from 1970: iso_times() gives iso_time()'s text for every one."""
    rng = random.Random(2106)
    stamps = sorted(rng.randrange(-62_135_596_800_000, 253_402_300_800_000) for _ in range(20_000))
    assert iso_times(stamps) == [reference_time(ts) for ts in stamps]
