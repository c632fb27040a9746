"""The SQLite store: schema, idempotent writes, locking, and several processes on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from pixel_server.hits import COLUMNS, Hit
from pixel_server.query import HitQuery
from pixel_server.store.base import ROW_KEYS, StoreUnavailable
from pixel_server.store.memory import MemoryStore
from pixel_server.store.schema import MIGRATIONS, migrate, schema_version
from pixel_server.store.sqlite import SQLiteStore, connect


def make_hits(prefix: str, n: int) -> list[Hit]:
    return [Hit(ts=i, kind="view", eid=f"{prefix}-{i}", cid="c") for i in range(n)]


async def test_new_database_is_wal_with_current_schema(tmp_path: Path) -> None:
    """Opening creates the file in WAL mode at the newest schema version."""
    db = tmp_path / "new" / "pixel.db"
    async with SQLiteStore(str(db)):
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(conn) == len(MIGRATIONS)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(hits)")]
    assert columns == ["id", *COLUMNS]


def test_migrations_run_once(tmp_path: Path) -> None:
    """Running the migrations again changes nothing."""
    conn = connect(str(tmp_path / "m.db"))
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer pixel_server is not silently used."""
    conn = connect(str(tmp_path / "m.db"))
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)


async def test_duplicate_eid_is_stored_once_and_counted(tmp_path: Path) -> None:
    """Writing an eid twice (across and within batches) stores it once."""
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        assert (await store.write(make_hits("a", 3)))["view"] == 3
        again = [
            *make_hits("a", 3),
            Hit(ts=1, kind="view", eid="b"),
            Hit(ts=1, kind="view", eid="b"),
        ]
        assert (await store.write(again))["view"] == 1
        assert await store.count(HitQuery()) == 4


async def test_hits_without_eid_are_never_deduplicated(tmp_path: Path) -> None:
    """Only eid is an idempotency key: identical hits without one are all kept."""
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        await store.write([Hit(ts=1, kind="view", cid="c")] * 5)
        assert await store.count(HitQuery()) == 5


async def test_query_is_newest_first_with_filters_and_cursor(tmp_path: Path) -> None:
    """query() filters by time/kind/ids and pages backwards from a cursor."""
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        await store.write(
            [
                Hit(ts=1000 + i, kind="view" if i % 2 else "click", cid=f"c{i % 3}")
                for i in range(30)
            ]
        )
        page = await store.query(HitQuery(equals={"kind": "click"}, limit=5))
        assert [row["ts"] for row in page] == [1028, 1026, 1024, 1022, 1020]
        nxt = await store.query(HitQuery(equals={"kind": "click"}, limit=5).after(page[-1]))
        assert [row["ts"] for row in nxt] == [1018, 1016, 1014, 1012, 1010]
        window = await store.query(HitQuery(since_ms=1010, until_ms=1013, limit=100))
        assert sorted(row["ts"] for row in window) == [1010, 1011, 1012]
        assert await store.count(HitQuery(equals={"cid": "c0"})) == 10


async def test_query_rows_are_the_query_values_in_row_keys_order(tmp_path: Path) -> None:
    """query_rows() gives query()'s rows, same order, as value sequences read by index in
    ROW_KEYS order (id first, then every column), on SQLite and in memory alike."""
    hits = [
        Hit(ts=2000 - i, kind="open", cid="c", uid=f"u{i}", params='{"k":"v"}', is_bot=i % 2)
        for i in range(7)
    ]
    memory = MemoryStore()
    await memory.write(hits)
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        await store.write(hits)
        for backend in (store, memory):
            query = HitQuery(equals={"cid": "c"}, limit=5)
            rows, dicts = await backend.query_rows(query), await backend.query(query)
            assert len(rows) == 5
            assert [list(row) for row in rows] == [[d[key] for key in ROW_KEYS] for d in dicts]
            assert [(row[0], row[1], row[ROW_KEYS.index("uid")]) for row in rows] == [
                (d["id"], d["ts"], d["uid"]) for d in dicts
            ]
    assert ("id", *COLUMNS) == ROW_KEYS


async def test_locked_database_raises_unavailable_then_recovers(tmp_path: Path) -> None:
    """While another connection holds an exclusive lock, writes raise StoreUnavailable; after,
    they succeed."""
    db = str(tmp_path / "p.db")
    async with SQLiteStore(db, busy_timeout_ms=100) as store:
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await store.write(make_hits("x", 1))
        locker.execute("ROLLBACK")
        assert (await store.write(make_hits("x", 1)))["view"] == 1


def _writer_process(db: str, prefix: str, batches: int, per_batch: int) -> None:
    async def work() -> None:
        async with SQLiteStore(db, synchronous="NORMAL") as store:
            for b in range(batches):
                hits = [Hit(ts=i, kind="view", eid=f"{prefix}-{b}-{i}") for i in range(per_batch)]
                await store.write(hits)

    asyncio.run(work())


def test_four_processes_share_one_file_without_loss_or_lock_errors(tmp_path: Path) -> None:
    """4 processes x 50 batches x 100 rows: every row stored, no process fails."""
    db = str(tmp_path / "shared.db")
    _writer_process(db, "init", 1, 1)  # create the schema first, as `serve` does
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(db, f"p{n}", 50, 100)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM hits").fetchone()[0] == 4 * 50 * 100 + 1
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def exit_codes_together(target: Callable[[str], None], db: str, n: int = 8) -> list[int | None]:
    """``target(db)`` in ``n`` processes started at once (forked: cheap starts, so a race at
    opening is actually hit); their exit codes."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=(db,)) for _ in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    return [proc.exitcode for proc in procs]


def _open_new_file(db: str) -> None:
    migrate(connect(db))


def test_workers_starting_together_migrate_once(tmp_path: Path) -> None:
    """8 processes opening a brand-new file at once, 20 times: all start; the schema is made
    once. (Switching a new file to WAL can fail at once with "locked"; connect retries.)"""
    for round_no in range(20):
        db = str(tmp_path / f"race{round_no}.db")
        assert exit_codes_together(_open_new_file, db) == [0] * 8, f"round {round_no}"
        assert schema_version(sqlite3.connect(db)) == len(MIGRATIONS)


def _open_existing_file(db: str) -> None:
    conn = connect(db)
    migrate(conn)
    conn.close()


def test_workers_reopening_a_closed_file_together_all_start(tmp_path: Path) -> None:
    """8 processes opening a made file no one has open, 20 times: all start. (The first to
    open a WAL file recovers its index under an exclusive lock; the others' very first read
    can fail at once with "locked", which connect retries; without the retry this test
    failed in each of 3 runs, by round 5.)"""
    db = str(tmp_path / "made.db")
    _open_existing_file(db)
    for round_no in range(20):
        assert exit_codes_together(_open_existing_file, db) == [0] * 8, f"round {round_no}"


async def test_rows_of_every_shape_are_stored_as_given_in_order(tmp_path: Path) -> None:
    """insert_rows binds only the values that are set, one statement per run of rows with the
    same columns set: every row reads back as written (a NULL left out is a NULL; 0, "" and
    False are not NULL), in the order given, through write, write_events and both shapes."""
    hits = [
        Hit(ts=1, kind="view", cid="c", uid="u", params='{"a":1}'),
        Hit(ts=2, kind="view"),
        Hit(ts=3, kind="view", cid="", uid="", dnt=1, seq=0),
        Hit(ts=4, kind="view", cid="c", uid="u", params='{"a":1}'),
        Hit(ts=5, kind="view", ua="x", is_bot=1, flags="value_truncated"),
    ]
    events = [
        Hit(ts=6, kind="event", event="a", eid="e1", seq=1),
        Hit(ts=7, kind="event", event="a", eid="e2", sid="s", seq=2, params="{}"),
    ]
    db = tmp_path / "shapes.db"
    async with SQLiteStore(str(db)) as store:
        await store.write(hits)
        assert await store.write_events(events) == [True, True]
    conn = sqlite3.connect(db)
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM hits ORDER BY id").fetchall()  # noqa: S608
    assert rows == [hit.row() for hit in [*hits, *events]]
