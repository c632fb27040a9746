"""Retention (retention.py) on both stores, with a chosen clock: old hits deleted and raw
fields cleared while the parsed dimensions and the rollups stay — through a rebuild too —
the space given back (SQLite) or the months dropped (PostgreSQL), a dry run that changes
nothing, the admin log, the CLI and the server's own schedule."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pgtest
import pytest

from pixel_server import retention
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.query import HitQuery
from pixel_server.retention import DAY_MS, RollupsIncomplete, plan, purge
from pixel_server.rollup import CellQuery
from pixel_server.store import Store, open_store, opened
from pixel_server.store.pgschema import partition_sql

from conftest import run_cli, run_cli_env, running, until
from privacytest import traces

pytestmark = pytest.mark.both_stores

NOW = 1_796_601_600_000  # 2026-12-07T00:00:00Z
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
DIMS = ("", "*", "browser", "referrer", "utm_source", "device")
ALL = (0, 2**31 - 1)


def hit(days_ago: float, n: int) -> Hit:
    return Hit(
        ts=int(NOW - days_ago * DAY_MS) + n,
        kind="view",
        cid="spring",
        uid=f"reader-{days_ago}-{n}",
        utm_source="newsletter",
        referer=f"https://news.example/{days_ago}",
        params=f'{{"note":"kept-{days_ago}-{n}"}}',
        ua=UA,
        browser="Firefox",
        os="Linux",
        device="desktop",
        traffic="human",
    )


AGES = (400.0, 100.0, 40.0, 5.0)


async def fill(store: Store, each: int = 3) -> None:
    await store.write([hit(age, n) for age in AGES for n in range(each)])


async def cells(store: Store) -> dict[str, Any]:
    found = {}
    for dim in DIMS:
        answer = await store.rollup_cells(CellQuery(dim, ALL, machines=True, by=("cid",)))
        found[dim] = sorted(map(tuple, answer.counts))
    return found


def settings_for(make_settings: Callable[..., Settings], **kw: Any) -> Settings:
    return make_settings(retain_days=90, retain_raw_days=30, **kw)


async def test_old_hits_go_raw_fields_clear_and_the_rollups_stay(
    make_settings: Callable[..., Settings],
) -> None:
    settings = settings_for(make_settings)
    async with opened(open_store(settings)) as store:
        await fill(store)
        before = await cells(store)
        report = await purge(store, plan(settings, NOW), "test")
        assert (report.hits_deleted, report.hits_cleared) == (6, 3)  # 400 and 100 days; 40
        rows = await store.query(HitQuery(limit=100))
        assert sorted({round((NOW - r["ts"]) / DAY_MS) for r in rows}) == [5, 40]
        for row in rows:
            old = NOW - row["ts"] > 30 * DAY_MS
            assert (row["ua"] is None, row["referer"] is None, row["params"] is None) == (old,) * 3
            assert (row["browser"], row["device"], row["utm_source"]) == (
                "Firefox",
                "desktop",
                "newsletter",
            )
        assert await cells(store) == before  # the reports do not change
        await store.rebuild_rollups()
        assert await cells(store) == before  # nor after a rebuild from what is left
        again = await purge(store, plan(settings, NOW), "test")
        assert (again.hits_deleted, again.hits_cleared) == (0, 0)
        [entry, _] = await store.admin_log((0, 2**62), 10)
        assert (entry.action, entry.actor, entry.detail["hits_deleted"]) == ("purge", "test", 6)
    for gone in ("reader-400.0-0", "kept-40.0-1", "news.example/100.0"):
        assert traces(settings, gone) == [], gone
    assert traces(settings, "kept-5.0-1")  # the control: what is kept is found


async def test_a_dry_run_changes_nothing(make_settings: Callable[..., Settings]) -> None:
    settings = settings_for(make_settings)
    async with opened(open_store(settings)) as store:
        await fill(store)
        report = await purge(store, plan(settings, NOW, dry_run=True), "test")
        assert (report.dry_run, report.hits_deleted, report.hits_cleared) == (True, 6, 3)
        assert await store.count(HitQuery(limit=100)) == 12
        assert await store.admin_log((0, 2**62), 10) == []
        rows = await store.query(HitQuery(limit=100))
        assert all(row["ua"] == UA for row in rows)


async def test_no_purge_while_the_rollups_are_incomplete(
    make_settings: Callable[..., Settings],
) -> None:
    settings = settings_for(make_settings)
    async with opened(open_store(settings)) as store:
        await fill(store)
    if settings.sqlite_path is not None:
        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("UPDATE rollup_state SET complete = 0")
    else:
        url = settings.database_url
        pgtest.run(lambda: pgtest.execute(url, "UPDATE rollup_state SET complete = false"))
    async with opened(open_store(settings)) as store:
        with pytest.raises(RollupsIncomplete):
            await purge(store, plan(settings, NOW), "test")
        assert await store.count(HitQuery(limit=100)) == 12


async def test_the_space_is_given_back_and_old_months_dropped(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """SQLite: a database made before incremental vacuum is vacuumed (and switched to it)
    by the CLI's purge; PostgreSQL: a month wholly past the cut-off is dropped."""
    settings = settings_for(make_settings)
    if settings.sqlite_path is not None:
        with sqlite3.connect(settings.sqlite_path) as conn:  # an older database's layout
            conn.execute("PRAGMA auto_vacuum = NONE")
            conn.execute("CREATE TABLE t (x)")
            conn.execute("DROP TABLE t")
    else:
        url, month = settings.database_url, partition_sql(2025, 10)  # November 2025
        async with opened(open_store(settings)):
            pass
        pgtest.run(lambda: pgtest.execute(url, month))
    async with opened(open_store(settings)) as store:
        big = [hit(390, n) for n in range(2000)]
        for h in big:
            h.params = '{"pad":"' + "x" * 2000 + '"}'
        await store.write(big)
        await fill(store)
    cli = run_cli("purge", env=run_cli_env(settings, PIXEL_RETAIN_DAYS="90"), cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "deleted 2006 hits" in cli.stdout
    sizes = [int(n) for n in cli.stdout.split("store size ")[1].split(" bytes")[0].split(" -> ")]
    if settings.sqlite_path is not None:
        assert sizes[1] < sizes[0] / 2, sizes
        with sqlite3.connect(settings.sqlite_path) as conn:
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental now
    else:
        assert "partitions dropped: hits_2025_11" in cli.stdout
        tables = pgtest.run(lambda: pgtest.fetch(url, "SELECT to_regclass('hits_2025_11') IS NULL"))
        assert tables == [(True,)]
    dry = run_cli(
        "purge",
        "--dry-run",
        env=run_cli_env(settings, PIXEL_RETAIN_DAYS="90"),
        cwd=tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    assert "would delete 0 hits" in dry.stdout


async def test_the_servers_purge_returns_the_space_of_a_new_database(tmp_path: Path) -> None:
    """SQLite: a database this release made uses incremental vacuum, so an ordinary purge (the
    server's, no VACUUM) gives the freed pages back to the system."""
    settings = Settings(db=str(tmp_path / "new.db"), retain_days=90, retain_raw_days=30)
    async with opened(open_store(settings)) as store:
        big = [hit(390, n) for n in range(2000)]
        for h in big:
            h.params = '{"pad":"' + "x" * 2000 + '"}'
        await store.write(big)
        await fill(store)
        report = await purge(store, plan(settings, NOW), "server")
    assert report.bytes_before is not None
    assert report.bytes_after is not None
    assert report.bytes_after < report.bytes_before / 4
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


async def test_the_cli_needs_a_retention(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    async with opened(open_store(settings)):
        pass
    cli = run_cli("purge", env=run_cli_env(settings), cwd=tmp_path)
    assert cli.returncode == 2
    assert "PIXEL_RETAIN_DAYS" in cli.stderr


async def test_the_server_purges_by_itself(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "FIRST_PURGE_S", 0.0)
    settings = make_settings(retain_days=30)
    async with opened(open_store(settings)) as store:
        await store.write([hit(age, 0) for age in (400, 1)])
    async with running(settings) as h:
        assert h.rt.store is not None
        store = h.rt.store

        async def logged() -> bool:  # written once the purge is done
            return bool(await store.admin_log((0, 2**62), 10))

        await until(logged, "the server did not purge")
        [entry] = await store.admin_log((0, 2**62), 10)
        assert await store.count(HitQuery(limit=100)) == 1
    assert (entry.action, entry.actor, entry.detail["hits_deleted"]) == ("purge", "server", 1)
