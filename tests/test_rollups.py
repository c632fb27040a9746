"""Rollups (rollup.py) on SQLite and PostgreSQL: what the writer adds in each batch's
transaction equals what ``rollups rebuild`` recomputes from the stored hits, and both equal
the hits counted afresh in memory — for random hits (property test: kinds, HEADs, proxy
repeats, duplicate eids, machine classes, declared event parameters, batches of any size);
a relabel (the burst pass, ``reclassify``) leaves them equal too; a database that held hits
before the rollups existed says so until rebuilt."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixel_server import sketch
from pixel_server.bursts import Relabel
from pixel_server.eventschema import EventSchema, Registry
from pixel_server.hits import COLUMNS, Hit
from pixel_server.query import HitQuery
from pixel_server.rollup import CellAnswer, CellQuery, Spec, answer, counting
from pixel_server.store import Store, opened
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.schema import MIGRATIONS
from pixel_server.store.sqlite import SQLiteStore

BASE = 1_795_996_800_000  # 2026-11-30T00:00:00Z
HOUR = 3_600_000
# an hour's end, and a day's end in Kolkata (18:30 UTC): repeats and cells across both
EDGES = (BASE + HOUR, BASE + 18 * HOUR + HOUR // 2)
REGISTRY = Registry(
    {
        "purchase_completed": EventSchema(
            {"total_value": "number"}, {"plan": "string", "items": "integer"}
        )
    }
)
SPEC = Spec.from_registry(REGISTRY, "Asia/Kolkata")  # days begin at 18:30 UTC
EVERY_DIM = SPEC.dimensions()
ALL_HOURS = (0, 2**31 - 1)
BY = ("cid", "event", "traffic", "value")
TRAFFIC = (None, "human", "human", "mail_proxy", "mail_proxy", "apple_mpp", "scanner")


@st.composite
def hits(draw: st.DrawFn) -> Hit:
    kind = draw(st.sampled_from(("view", "open", "click", "event")))
    event = params = None
    if kind == "event":
        event = draw(st.sampled_from(("purchase_completed", "video_started")))
        value = draw(st.one_of(st.none(), st.integers(-5, 500), st.floats(0, 99, width=32)))
        params = json.dumps(
            {"total_value": value, "plan": draw(st.sampled_from(("pro", "free", None)))}
        )
    return Hit(
        # within a few minutes of an hour boundary, so repeats cross it
        ts=draw(st.sampled_from(EDGES)) - 90_000 + draw(st.integers(0, 180_000)),
        kind=kind,
        event=event,
        eid=draw(st.one_of(st.none(), st.sampled_from(("e1", "e2", "e3")))),
        cid=draw(st.sampled_from((None, "", "spring", "autumn"))),
        uid=draw(st.one_of(st.none(), st.sampled_from(("u1", "u2", "u3", "u4")))),
        url="https://shop.example/" + draw(st.sampled_from("ab")) if kind == "click" else None,
        ref=draw(st.sampled_from((None, "https://www.news.example/a", "https://t.co/x"))),
        utm_source=draw(st.sampled_from((None, "news", "ads"))),
        params=params,
        browser=draw(st.sampled_from((None, "Chrome", "Firefox"))),
        device=draw(st.sampled_from(("desktop", "mobile"))),
        method=draw(st.sampled_from(("GET", "GET", "GET", "HEAD"))),
        traffic=draw(st.sampled_from(TRAFFIC)),
    )


def snapshot(answers: dict[str, CellAnswer]) -> dict[str, Any]:
    """Cells comparable across stores: counts and sums as sets, uniques as estimates."""
    out: dict[str, Any] = {}
    for dim, found in answers.items():
        unions: dict[tuple[Any, ...], sketch.Union] = {}
        for *key, item in found.sketches:
            union = unions.setdefault(tuple(key), sketch.Union())
            if isinstance(item, frozenset):
                union.add_uids(item)
            else:
                union.add(bytes(item))
        out[dim] = (
            sorted((*row[:-1], int(row[-1])) for row in found.counts),
            sorted((*row[:-2], round(float(row[-2]), 3), int(row[-1])) for row in found.sums),
            sorted((key, union.estimate()) for key, union in unions.items()),
        )
    return out


async def read_all(store: Store) -> dict[str, Any]:
    answers = {}
    for dim in EVERY_DIM:
        answers[dim] = await store.rollup_cells(CellQuery(dim, ALL_HOURS, machines=True, by=BY))
    return snapshot(answers)


async def counted_afresh(store: Store) -> dict[str, Any]:
    rows = await store.query_rows(HitQuery(limit=100_000, oldest_first=True))
    ordered = sorted(rows, key=lambda row: int(row[0]))  # stored order: by id
    cells = counting([tuple(row[1:]) for row in ordered], SPEC).cells()
    return snapshot(
        {dim: answer(cells, CellQuery(dim, ALL_HOURS, machines=True, by=BY)) for dim in EVERY_DIM}
    )


async def write_in_batches(store: Store, given: list[Hit], sizes: list[int]) -> None:
    start = 0
    for size in itertools.cycle(sizes):
        batch = given[start : start + size]
        if not batch:
            return
        if size % 2:
            await store.write(batch)
        else:
            await store.write_events(batch)
        start += size


Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=("sqlite", "postgresql"))
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """A function that makes an empty store of the kind under test, with SPEC."""
    counter = itertools.count()
    if request.param == "sqlite":

        async def new_file() -> Store:
            return SQLiteStore(str(tmp_path / f"r{next(counter)}.db"), spec=SPEC)

        return new_file
    url = request.getfixturevalue("pg_url")

    async def emptied() -> Store:
        conn = await asyncpg.connect(url)
        try:
            if await conn.fetchval("SELECT to_regclass('hits') IS NOT NULL"):
                await conn.execute("TRUNCATE hits, hit_eids, rollups, rollup_sums")
        finally:
            await conn.close()
        return PostgresStore(url, spec=SPEC)

    return emptied


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    given_hits=st.lists(hits(), min_size=1, max_size=40),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    every=st.integers(1, 5),
    relabel_to=st.sampled_from(("link_scanner", "mail_proxy", "human")),
)
def test_incremental_rollups_equal_rebuilt_and_counted_afresh(
    new_store: Opener, given_hits: list[Hit], sizes: list[int], every: int, relabel_to: str
) -> None:
    """Then relabel every ``every``-th stored hit (the burst pass, reclassify): the cells
    recomputed in the relabel's transaction equal a rebuild again."""

    async def check() -> None:
        async with opened(await new_store()) as store:
            await write_in_batches(store, given_hits, sizes)
            incremental = await read_all(store)
            assert incremental == await counted_afresh(store)
            assert await store.rebuild_rollups() == await store.count(HitQuery())
            assert await read_all(store) == incremental
            rows = await store.query(HitQuery(limit=1000, oldest_first=True))
            changes = [
                Relabel(int(r["id"]), int(r["ts"]), r["traffic"], relabel_to, "test:1")
                for r in rows[::every]
            ]
            await store.relabel(changes)
            relabelled = await read_all(store)
            assert relabelled == await counted_afresh(store)
            await store.rebuild_rollups()
            assert await read_all(store) == relabelled

    asyncio.run(check())


async def test_a_relabel_moves_the_hits_between_classes_in_the_rollups(
    new_store: Opener,
) -> None:
    async with opened(await new_store()) as store:
        clicks = [
            Hit(ts=BASE + i * 1000, kind="click", cid="spring", uid=f"u{i % 3}", traffic="human")
            for i in range(12)
        ]
        await store.write(clicks)
        rows = await store.query(HitQuery(limit=100, oldest_first=True))
        changes = [
            Relabel(int(r["id"]), int(r["ts"]), "human", "scanner", "burst:3") for r in rows[:5]
        ]
        assert await store.relabel(changes) == 5
        after = await read_all(store)
        assert after == await counted_afresh(store)
        totals = await store.rollup_cells(CellQuery("", ALL_HOURS, machines=True, by=("traffic",)))
        assert sorted((r[1], int(r[3])) for r in totals.counts) == [("human", 7), ("scanner", 5)]
        await store.rebuild_rollups()
        assert await read_all(store) == after


async def test_rollups_are_incomplete_for_hits_stored_before_them_until_rebuilt(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:11]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 11")
    hit = Hit(ts=BASE, kind="view", cid="spring")
    then = [c for c in COLUMNS if c != "visitor"]  # the columns of schema version 11
    names, marks = ", ".join(then), ", ".join("?" * len(then))
    values = [getattr(hit, c) for c in then]
    conn.execute(f"INSERT INTO hits ({names}) VALUES ({marks})", values)  # noqa: S608
    conn.commit()
    conn.close()
    async with opened(SQLiteStore(str(path))) as store:
        assert not await store.rollups_complete()
        assert (await store.rollup_cells(CellQuery("", ALL_HOURS))).counts == []
        assert await store.rebuild_rollups() == 1
        assert await store.rollups_complete()
        found = await store.rollup_cells(CellQuery("", ALL_HOURS))
        assert [(kind, int(n)) for _, kind, n in found.counts] == [("view", 1)]


async def test_an_empty_new_database_has_complete_rollups(tmp_path: Path) -> None:
    async with opened(SQLiteStore(str(tmp_path / "new.db"))) as store:
        assert await store.rollups_complete()


def test_a_sketch_counts_many_uids_within_its_stated_error() -> None:
    """20,000 distinct uids in 40 sketches of 500, unioned (as a report reads hours into
    a month): the estimate is within 3 standard errors (sketch.RELATIVE_ERROR_1SD)."""
    union = sketch.Union()
    for part in range(40):
        union.add(sketch.of({f"r-{part}-{i}" for i in range(500)}))
    estimate = union.estimate()
    assert abs(estimate - 20_000) <= 3 * sketch.RELATIVE_ERROR_1SD * 20_000
    small = sketch.Union()
    small.add(sketch.of({"a", "b", "c"}))
    small.add(sketch.of({"c", "d"}))
    assert small.estimate() == 4  # few uids: exact
