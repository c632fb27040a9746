"""How long retention and erasure take on a large hit log, SQLite and PostgreSQL (issue 11).

Usage: .venv/bin/python bench/privacy_ops.py [--hits 2000000] [--store sqlite,postgresql]

Builds the export-2m hits (bigdb.py: 12 campaigns and site views over 90 days from
2026-01-01) in each store (SQLite: a file, as bigdb builds it; PostgreSQL: a database of its
own at PIXEL_BENCH_POSTGRES, loaded with COPY, dropped after), rebuilds its rollups (a purge
needs them complete), then times through the store, as the server and the CLI run them:

1. a dry-run purge (counting only);
2. the erasure of one recipient (``DELETE /api/subjects/<uid>``'s work: a scan of every hit
   for the uid as a column, parameter and query value, the rollup recount, the WAL truncation);
3. the purge of a 45-day retention of hits and a 15-day one of the raw fields, counted "as of"
   the end of the 90 days: about half the hits deleted, a sixth cleared; then the space given
   back (incremental vacuum) and the WAL truncated.

Printed: one JSON line per step and store (seconds, hits per second, the store's bytes before
and after: the SQLite file; PostgreSQL's hits partitions with their indexes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import bigdb
import pg

from pixel_server.erasure import Subject, erase
from pixel_server.retention import DAY_MS, Plan, cutoff, purge
from pixel_server.store import Store
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore

STORES = ("sqlite", "postgresql")


def plan_at(now_ms: int, dry_run: bool) -> Plan:
    hits = cutoff(now_ms, 45, "UTC")
    raw = cutoff(now_ms, 15, "UTC")
    assert hits is not None
    assert raw is not None
    return Plan(hits[0], raw[0], ("ua", "referer", "params"), raw[1], dry_run=dry_run)


async def measure(store: Store, total: int) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    await store.open()
    try:
        t0 = time.perf_counter()
        await store.rebuild_rollups()
        steps.append({"step": "rollups rebuild", "seconds": round(time.perf_counter() - t0, 2)})
        now = bigdb.START_MS + bigdb.SPAN_MS + DAY_MS
        t0 = time.perf_counter()
        dry = await purge(store, plan_at(now, True), "bench")
        steps.append(
            {
                "step": "purge --dry-run",
                "seconds": round(time.perf_counter() - t0, 2),
                "would_delete": dry.hits_deleted,
                "would_clear": dry.hits_cleared,
            }
        )
        t0 = time.perf_counter()
        erased = await erase(store, Subject("u4242"), "bench-secret-0123456789", None, "bench")
        steps.append(
            {
                "step": "erase one uid",
                "seconds": round(time.perf_counter() - t0, 2),
                "hits_deleted": erased.hits_deleted,
                "hits_scanned": total,
            }
        )
        t0 = time.perf_counter()
        done = await purge(store, plan_at(now, False), "bench")
        seconds = time.perf_counter() - t0
        steps.append(
            {
                "step": "purge",
                "seconds": round(seconds, 2),
                "hits_deleted": done.hits_deleted,
                "hits_cleared": done.hits_cleared,
                "hits_per_s": round((done.hits_deleted + done.hits_cleared) / seconds),
                "bytes_before": done.bytes_before,
                "bytes_after": done.bytes_after,
            }
        )
    finally:
        await store.aclose()
    return steps


def on_sqlite(total: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pixel-privacy-") as work:
        path = Path(work) / "big.db"
        seconds = bigdb.build(path, total)
        show("sqlite", [{"step": "build", "seconds": round(seconds, 1)}])
        show("sqlite", asyncio.run(measure(SQLiteStore(str(path)), total)))


def on_postgresql(total: int) -> None:
    reason = pg.unavailable_reason()
    if reason is not None:
        show("postgresql", [{"skipped": reason}])
        return
    database = pg.Database.create()
    try:
        span = (bigdb.START_MS, bigdb.START_MS + bigdb.SPAN_MS)
        t0 = time.perf_counter()
        asyncio.run(pg.copy_hits(database.url, bigdb.rows(total), span))
        show("postgresql", [{"step": "load (COPY)", "seconds": round(time.perf_counter() - t0, 1)}])
        show("postgresql", asyncio.run(measure(PostgresStore(database.url), total)))
    finally:
        database.drop()


def show(store: str, steps: list[dict[str, object]]) -> None:
    for step in steps:
        print(json.dumps({"store": store, **step}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=bigdb.minimum_hits())
    parser.add_argument("--store", default=",".join(STORES), help="sqlite, postgresql or both")
    args = parser.parse_args()
    total = max(args.hits, bigdb.minimum_hits())
    chosen = args.store.split(",")
    if "sqlite" in chosen:
        on_sqlite(total)
    if "postgresql" in chosen:
        on_postgresql(total)


if __name__ == "__main__":
    main()
