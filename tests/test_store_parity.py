"""The same hits give the same answers on SQLite and on PostgreSQL: pages, counts, CSV and
NDJSON exports byte for byte, for every filter."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pixel_server.export import csv_rows, iter_pages, ndjson_rows
from pixel_server.hits import Hit
from pixel_server.query import EQUALITY_FILTERS, HitQuery
from pixel_server.store import Store, opened
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore

TEXTS = ["a", "b", "spring ☀", "=cmd", "-1", " @x", "\u2028line", "", "\uff43"]


def random_hits(n: int, seed: int = 7) -> list[Hit]:
    rng = random.Random(seed)

    def text() -> str | None:
        return None if rng.random() < 0.3 else rng.choice(TEXTS)

    hits = []
    for _ in range(n):
        hits.append(
            Hit(
                ts=1_790_000_000_000 + rng.randrange(0, 2_000),  # many share a millisecond
                kind=rng.choice(("view", "open", "click", "event")),
                event=text(),
                eid=f"e{rng.randrange(n)}" if rng.random() < 0.5 else None,  # some repeat
                cid=text(),
                uid=text(),
                sid=text(),
                url=text(),
                utm_source=text(),
                utm_medium=text(),
                utm_campaign=text(),
                utm_term=text(),
                utm_content=text(),
                utm_id=text(),
                params='{"k":"v"}' if rng.random() < 0.2 else None,
                ua=text(),
                is_bot=rng.randrange(2),
                dnt=rng.randrange(2),
                gpc=rng.randrange(2),
                method=rng.choice(("GET", "HEAD")),
                flags="value_truncated" if rng.random() < 0.1 else None,
            )
        )
    return hits


@pytest.fixture
async def stores(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    hits = random_hits(600)
    async with (
        opened(SQLiteStore(str(tmp_path / "p.db"))) as lite,
        opened(PostgresStore(pg_url)) as pg,
    ):
        for start in range(0, len(hits), 97):  # the same batches: the same ids
            chunk = hits[start : start + 97]
            await lite.write(chunk)
            await pg.write(chunk)
        yield lite, pg


def filters() -> list[HitQuery]:
    out = [HitQuery(), HitQuery(since_ms=1_790_000_000_500, until_ms=1_790_000_001_500)]
    for key in EQUALITY_FILTERS:
        for value in ("a", "=cmd", "view" if key == "kind" else "e3"):
            out.append(HitQuery(equals={key: value}))
    return out


async def test_every_filter_pages_counts_and_exports_identically(
    stores: tuple[Store, Store],
) -> None:
    lite, pg = stores
    for query in filters():
        assert await lite.count(query) == await pg.count(query), query
        exported = []
        for store in (lite, pg):
            rows = [row async for page in iter_pages(store, query) for row in page]
            exported.append((csv_rows(rows), ndjson_rows(rows)))
        assert exported[0] == exported[1], query
        # small pages: the same rows in the same order, cursor by cursor
        assert await id_pages(lite, query) == await id_pages(pg, query), query


async def id_pages(store: Store, query: HitQuery) -> list[list[int]]:
    pages: list[list[int]] = []
    page_query = HitQuery(equals=query.equals, since_ms=query.since_ms, limit=7)
    while page := await store.query(page_query):
        pages.append([int(row["id"]) for row in page])
        page_query = page_query.after(page[-1])
    return pages


async def test_the_filters_are_not_vacuous(stores: tuple[Store, Store]) -> None:
    """Most filters of the parity test select some rows and leave others out."""
    lite, _ = stores
    total = await lite.count(HitQuery())
    selective = [q for q in filters() if 0 < await lite.count(q) < total]
    assert len(selective) >= len(EQUALITY_FILTERS)


async def test_the_same_batches_add_the_same_counts(tmp_path: Path, pg_url: str) -> None:
    hits = random_hits(400, seed=11)
    async with (
        opened(SQLiteStore(str(tmp_path / "q.db"))) as lite,
        opened(PostgresStore(pg_url)) as pg,
    ):
        for start in range(0, len(hits), 50):
            chunk = hits[start : start + 50]
            assert +await lite.write(chunk) == +await pg.write(chunk)
