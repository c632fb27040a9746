"""On PostgreSQL too, every read filter pages by keyset without sorting, across partitions.

The planner's choice depends on statistics, so the table is filled with enough rows (spread
over three monthly partitions) and ANALYZEd first, as it would be in production.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pgtest
import pytest

from pixel_server.hits import Hit
from pixel_server.query import EQUALITY_FILTERS, FILTER_COLUMNS, HitQuery
from pixel_server.store import opened, sql
from pixel_server.store.pgschema import month_start_ms
from pixel_server.store.postgres import PostgresStore

# past months: the store makes this month's partition and the next ones itself
MONTHS = [month_start_ms(2025, m) for m in (1, 2, 3)]
CURSOR = (MONTHS[2] + 5_000, 10**6)
# every filtered column but eid: "big" on a fifth of the rows (6,000: a campaign worth paging
# through, where a sort per page would cost), other values spread thin
VALUED = (
    "event",
    "cid",
    "uid",
    "sid",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "traffic",
)


def value(i: int) -> str:
    return "big" if i % 5 == 0 else f"v{i % 97}"


async def fill(url: str) -> None:
    store = PostgresStore(url)
    async with opened(store):
        c = await asyncpg.connect(url)
        try:
            for month in MONTHS:  # the store makes partitions from now on: add these months
                await c.execute(
                    f"CREATE TABLE IF NOT EXISTS hits_t{month} PARTITION OF hits"
                    f" FOR VALUES FROM ({month}) TO ({month + 28 * 86_400_000})"
                )
            hits = [
                Hit(
                    ts=MONTHS[i % 3] + i,
                    kind=("view", "open", "click", "event")[i % 4],
                    eid=f"e{i}",
                    **{column: value(i) for column in VALUED},  # type: ignore[arg-type]
                )
                for i in range(30_000)
            ]
            for start in range(0, len(hits), 5_000):
                await store.write(hits[start : start + 5_000])
            await c.execute("ANALYZE hits")
        finally:
            await c.close()


@pytest.fixture(scope="module")
def filled(pg_database: str) -> Iterator[str]:
    """The URL of a PostgreSQL store with 30,000 hits over three partitions, analyzed."""
    url, drop = pgtest.new_schema(pg_database)
    pgtest.run(lambda: fill(url))
    yield url
    drop()


@pytest.fixture
async def conn(filled: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(filled)
    yield c
    await c.close()


def queries() -> list[tuple[str, HitQuery]]:
    out = [
        ("no filter", HitQuery()),
        ("time range", HitQuery(since_ms=MONTHS[1], until_ms=MONTHS[2])),
    ]
    for key in EQUALITY_FILTERS:
        value = {"kind": "open", "eid": "e42"}.get(key, "big")
        out.append((key, HitQuery(equals={key: value})))
        out.append((f"{key}+since", HitQuery(equals={key: value}, since_ms=MONTHS[1])))
    return out


CASES = [
    *(pytest.param(q, id=name) for name, q in queries()),
    *(pytest.param(replace(q, before=CURSOR), id=f"{name}+cursor") for name, q in queries()),
]


def nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    found = [plan]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found += nodes(child)
    return found


@pytest.mark.parametrize("query", CASES)
async def test_page_query_walks_indexes_without_sorting(
    conn: asyncpg.Connection, query: HitQuery
) -> None:
    """EXPLAIN of a page: no Sort node, every partition read through an index. (eid is left
    out of the no-sort rule: it matches at most one row per kind, and sorting four rows is the
    right plan.)"""
    text, args = sql.page(replace(query, limit=100), sql.numbered)
    [[raw]] = await conn.fetch(f"EXPLAIN (FORMAT JSON) {text}", *args)
    plan = json.loads(raw)[0]["Plan"]
    kinds = [str(node["Node Type"]) for node in nodes(plan)]
    if "eid" in query.equals:
        return
    assert "Sort" not in kinds, kinds
    scans = [k for k in kinds if "Scan" in k]
    assert scans, kinds
    assert all("Index" in k for k in scans), kinds
    if query.equals:
        [key] = query.equals
        column = FILTER_COLUMNS.get(key, key)
        used = {str(node.get("Index Name", "")) for node in nodes(plan)}
        assert any(column in name or "hits_ts" in name or "ts_id" in name for name in used), used


async def test_the_burst_pass_reads_the_clicks_index(conn: asyncpg.Connection) -> None:
    text, args = sql.clicks_since(1_000, 100, sql.numbered)
    await conn.execute("SET enable_seqscan = off")  # a few rows: show the index can serve it
    [[raw]] = await conn.fetch(f"EXPLAIN (FORMAT JSON) {text}", *args)
    found = nodes(json.loads(raw)[0]["Plan"])
    scans = [node for node in found if "Scan" in str(node["Node Type"])]
    assert scans, found
    assert all("Index" in str(node["Node Type"]) for node in scans), found
    # the partial index (its partitions' copies are named *_ts_id_idx1): no row is read only to
    # be filtered out by kind
    assert not any("kind" in str(node.get("Filter", "")) for node in scans), scans
