"""How long retention and erasure take on a large SQLite hit log (issue 11).

Usage: .venv/bin/python bench/privacy_ops.py [--hits 2000000]

Builds the export-2m database (bigdb.py: 12 campaigns and site views over 90 days from
2026-01-01), rebuilds its rollups (a purge needs them complete), then times through the
store, as the server and the CLI run them:

1. a dry-run purge (counting only);
2. the erasure of one recipient (``DELETE /api/subjects/<uid>``'s work: a scan of every hit
   for the uid as a column, parameter and query value, the rollup recount, the WAL truncation);
3. the purge of a 45-day retention of hits and a 15-day one of the raw fields, counted "as of"
   the end of the 90 days: about half the hits deleted, a sixth cleared; then the space given
   back (incremental vacuum) and the WAL truncated.

Printed: one JSON line per step (seconds, hits per second, the file's bytes before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import bigdb

from pixel_server.erasure import Subject, erase
from pixel_server.retention import DAY_MS, Plan, cutoff, purge
from pixel_server.store.sqlite import SQLiteStore


def plan_at(now_ms: int, dry_run: bool) -> Plan:
    hits = cutoff(now_ms, 45, "UTC")
    raw = cutoff(now_ms, 15, "UTC")
    assert hits is not None
    assert raw is not None
    return Plan(hits[0], raw[0], ("ua", "referer", "params"), raw[1], dry_run=dry_run)


async def measure(path: Path, total: int) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    store = SQLiteStore(str(path))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=bigdb.minimum_hits())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixel-privacy-") as work:
        path = Path(work) / "big.db"
        seconds = bigdb.build(path, max(args.hits, bigdb.minimum_hits()))
        print(json.dumps({"step": "build", "seconds": round(seconds, 1)}), flush=True)
        for step in asyncio.run(measure(path, args.hits)):
            print(json.dumps(step), flush=True)


if __name__ == "__main__":
    main()
