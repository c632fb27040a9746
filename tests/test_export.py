"""What leaves the service in exports: CSV cells a spreadsheet cannot run as formulas, NDJSON
records that no reader splits."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import quote

import pytest

from pixel_server.export import ndjson_row, neutralise
from pixel_server.hits import COLUMNS, Hit

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
