"""Every read filter walks an index in page order: no page sorts, so paging stays linear."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pixel_server.hits import KINDS, Hit
from pixel_server.query import EQUALITY_FILTERS, HitQuery, QueryError, format_cursor, parse_cursor
from pixel_server.store import sql
from pixel_server.store.memory import MemoryStore
from pixel_server.store.schema import migrate
from pixel_server.store.sqlite import SQLiteStore, connect

from conftest import Harness

CURSOR = (1_700_000_000_000, 42)
# filters without an index of their own (few values, or set on most hits: store/schema.py)
TIME_INDEX_FILTERS = {
    "kind",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "traffic",  # nine classes, most hits human
}
TIME_RANGES = {
    "since": {"since_ms": 1_600_000_000_000},
    "until": {"until_ms": 1_800_000_000_000},
    "since+until": {"since_ms": 1_600_000_000_000, "until_ms": 1_800_000_000_000},
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A real SQLite file at the current schema, with a few rows in it."""
    db = connect(str(tmp_path / "plan.db"))
    migrate(db)
    db.execute("INSERT INTO hits (ts, kind, method, cid) VALUES (1, 'view', 'GET', 'c')")
    yield db
    db.close()


def plan(conn: sqlite3.Connection, query: HitQuery) -> str:
    text, args = sql.page(query)
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {text}", args))


def queries() -> Iterator[tuple[str, HitQuery]]:
    """No filter, each time bound, each equality filter alone and with each time range."""
    yield "no filter", HitQuery()
    for name, bounds in TIME_RANGES.items():
        yield name, HitQuery(**bounds)  # type: ignore[arg-type]
    for key in EQUALITY_FILTERS:
        value = "view" if key == "kind" else "x"
        yield key, HitQuery(equals={key: value})
        for name, bounds in TIME_RANGES.items():
            yield f"{key}+{name}", HitQuery(equals={key: value}, **bounds)  # type: ignore[arg-type]


CASES = [
    *(pytest.param(query, id=name) for name, query in queries()),
    *(
        pytest.param(replace(query, before=CURSOR), id=f"{name}+cursor")
        for name, query in queries()
    ),
]


@pytest.mark.parametrize("query", CASES)
def test_page_query_walks_an_index_without_sorting(
    conn: sqlite3.Connection, query: HitQuery
) -> None:
    """EXPLAIN QUERY PLAN of a page uses an index and no temp B-tree for ORDER BY."""
    text = plan(conn, query)
    assert "TEMP B-TREE" not in text, text
    assert "USING INDEX" in text, text
    if query.equals:
        [key] = query.equals
        column = "event" if key == "e" else key
        if key in TIME_INDEX_FILTERS:
            assert "USING INDEX hits_ts" in text, text  # newest first, skipping other rows
        else:
            assert f"({column}=?" in text, text  # its own index, entered at its value


async def test_pages_over_equal_timestamps_visit_every_row_once(tmp_path: Path) -> None:
    """Keyset pages split runs of hits with the same ts without losing or repeating one."""
    hits = [Hit(ts=1000 + i // 7, kind=KINDS[i % 2], cid="c") for i in range(50)]
    memory = MemoryStore()
    await memory.write(hits)
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        await store.write(hits)
        for backend in (store, memory):
            for base in (HitQuery(limit=3), HitQuery(equals={"kind": "view"}, limit=4)):
                seen: list[tuple[int, int]] = []
                query = base
                while page := await backend.query(query):
                    seen += [(row["ts"], row["id"]) for row in page]
                    query = base.after(page[-1])
                expected = await backend.query(replace(base, limit=1000))
                assert seen == [(row["ts"], row["id"]) for row in expected]
                assert seen == sorted(set(seen), reverse=True)
                assert len(seen) == (50 if not base.equals else 25)


def test_cursor_round_trips_the_last_rows_ts_and_id() -> None:
    """parse_cursor(format_cursor(row)) is the row's (ts, id); no cursor means the first page."""
    assert parse_cursor(format_cursor({"ts": 1_767_225_600_123, "id": 42})) == (
        1_767_225_600_123,
        42,
    )
    assert parse_cursor(None) is None
    assert parse_cursor("") is None


@pytest.mark.parametrize(
    "raw",
    [
        "42",  # a bare id, the format before keyset paging
        "1767225600123_",
        "_42",
        "1767225600123_0",
        "1767225600123_-1",
        "-1_42",
        "1_2_3",
        "a_b",
        "\uff11_\uff12",  # fullwidth digits: str.isdigit() accepts them
        "\u00b2_1",
        "9" * 19 + "_1",  # beyond SQLite's 64-bit integers
        "1_" + "9" * 19,
        " 1_2",
        "1_2\n",
        "1.5_2",
    ],
)
def test_forged_or_truncated_cursor_is_a_query_error(raw: str) -> None:
    """Anything format_cursor did not make raises QueryError, never another exception."""
    with pytest.raises(QueryError, match="cursor"):
        parse_cursor(raw)


async def test_forged_cursor_answers_400_in_the_error_shape(harness: Harness) -> None:
    """/api/hits with a forged cursor is a 400 bad_filter, not a 500."""
    for raw in ("42", "9" * 19 + "_1", "1_2_3"):
        response = await harness.client.get(
            "/api/hits", params={"cursor": raw}, headers=harness.auth
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["status"] == 400
        assert "cursor" in error["message"]


def test_the_burst_pass_reads_the_clicks_index(conn: sqlite3.Connection) -> None:
    text, args = sql.clicks_since(1_000, 100)
    steps = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {text}", args))
    assert "hits_click_ts" in steps, steps
    assert "TEMP B-TREE" not in steps, steps
