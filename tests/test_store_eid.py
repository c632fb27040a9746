"""Deduplication by eid is per kind: nothing unsigned can suppress a signed open or click."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.query import HitQuery
from pixel_server.store.memory import MemoryStore
from pixel_server.store.schema import MIGRATIONS, schema_version
from pixel_server.store.sqlite import SQLiteStore, connect

from conftest import running, stored_rows

pytestmark = pytest.mark.both_stores

KIND_EID = [("view", "x"), ("open", "x"), ("click", "x"), ("event", "x")]


async def test_one_eid_is_stored_once_per_kind_in_sqlite(tmp_path: Path) -> None:
    """The same eid is stored once for each kind, and a repeat within a kind is a duplicate."""
    async with SQLiteStore(str(tmp_path / "p.db")) as store:
        first = await store.write([Hit(ts=1, kind=kind, eid=eid) for kind, eid in KIND_EID])
        again = await store.write([Hit(ts=2, kind=kind, eid=eid) for kind, eid in KIND_EID])
        assert dict(first) == {"view": 1, "open": 1, "click": 1, "event": 1}
        assert sum(again.values()) == 0
        assert await store.count(HitQuery(equals={"eid": "x"})) == 4


async def test_memory_store_deduplicates_per_kind_like_sqlite() -> None:
    """The in-memory store keeps an eid once per kind, as the SQLite index does."""
    store = MemoryStore()
    first = await store.write([Hit(ts=1, kind=kind, eid=eid) for kind, eid in KIND_EID])
    again = await store.write([Hit(ts=2, kind=kind, eid=eid) for kind, eid in KIND_EID])
    assert dict(first) == {"view": 1, "open": 1, "click": 1, "event": 1}
    assert sum(again.values()) == 0
    assert await store.count(HitQuery(equals={"eid": "x"})) == 4


async def test_unsigned_view_does_not_suppress_a_signed_open(
    make_settings: Callable[..., Settings],
) -> None:
    """/p.gif?eid=X first, then /p/<token>.gif with eid X: both stored; the token again: one."""
    settings = make_settings()
    async with running(settings) as h:
        token = h.rt.pixel_tokens.dumps({"cid": "spring", "eid": "X"})
        assert (await h.client.get("/p.gif?eid=X&cid=spring")).status_code == 200
        assert (await h.client.get(f"/p/{token}.gif")).status_code == 200
        assert (await h.client.get(f"/p/{token}.gif")).status_code == 200
        rows = await h.hits(eid="X")
        assert sorted(row["kind"] for row in rows) == ["open", "view"]
        assert h.metric("pixel_hits_duplicate_total", kind="open") == 1
    stored = stored_rows(settings, "SELECT kind FROM hits WHERE eid = 'X'")
    assert sorted(kind for (kind,) in stored) == ["open", "view"]


async def test_unsigned_view_does_not_suppress_a_signed_click(
    make_settings: Callable[..., Settings],
) -> None:
    """A view claiming a link's eid first leaves the click on that link to be stored."""
    async with running(make_settings()) as h:
        token = h.rt.link_tokens.dumps({"u": "https://example.com/", "eid": "Y"})
        await h.client.get("/p.gif?eid=Y")
        assert (await h.client.get(f"/r/{token}")).status_code == 302
        assert sorted(row["kind"] for row in await h.hits(eid="Y")) == ["click", "view"]


async def test_upgraded_database_keeps_its_hits_and_dedups_per_kind(tmp_path: Path) -> None:
    """A v2 database (eid unique across kinds) upgrades in place: rows kept, an open with a
    view's eid now stored."""
    db = str(tmp_path / "old.db")
    conn = connect(db)
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO hits (ts, kind, eid, method) VALUES (1, 'view', 'X', 'GET')")
    conn.close()
    async with SQLiteStore(db) as store:
        assert (await store.write([Hit(ts=2, kind="open", eid="X")]))["open"] == 1
        assert (await store.write([Hit(ts=3, kind="view", eid="X")]))["view"] == 0
        assert await store.count(HitQuery()) == 2
    assert schema_version(sqlite3.connect(db)) == len(MIGRATIONS)
