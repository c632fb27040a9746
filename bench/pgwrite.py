"""What one writer batch costs, at the writer's batch sizes: the PostgreSQL store's statement
(``unnest`` of one array per column), the alternative the issue names (binary ``COPY`` into a
staging table, then the same claim-and-insert statement reading from it), and SQLite.

Usage: .venv/bin/python bench/pgwrite.py [--sizes 1,8,32,128,512,2048] [--repeats 3]

Each variant writes the same hits (bench/bigdb.py's mix: 70% with an eid, stamped now) through
the real store's ``write()``, one batch after the other as the writer does, into a fresh
database per repeat (PostgreSQL: PIXEL_BENCH_POSTGRES's cluster, as bench/pg.py; SQLite: a new
file, synchronous=FULL as served). Per variant and size: rows a second of one writer, the
client's CPU a row (this process: building the arguments, asyncpg's encoding) and, on
PostgreSQL, the backend's CPU a row (/proc/<pid>/schedstat). Variants take turns within each
repeat; the median of the repeats is printed. Nothing here is used by the service: the
staging variant is a measured alternative, kept to be measured again.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

import bigdb
import pg

from pixel_server.hits import COLUMNS, Hit
from pixel_server.store import postgres
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore

STAGE_DDL = (  # built from our own column names
    "CREATE TEMP TABLE IF NOT EXISTS hit_stage ON COMMIT DELETE ROWS AS"  # noqa: S608
    f" SELECT {', '.join(COLUMNS)}, 0::bigint AS n FROM hits WITH NO DATA"
)
_UNNEST = postgres.INSERT_SQL.split("WITH ORDINALITY AS b(")[0].rsplit("SELECT * FROM", 1)[1]


def staged_sql() -> str:
    """The store's INSERT_SQL reading the batch from hit_stage; its last four parameters
    (batch id, now, journal, offset) renumbered $1..$4."""
    head, rest = postgres.INSERT_SQL.split(_UNNEST, 1)
    rest = rest.split(")", 1)[1]  # drop "WITH ORDINALITY AS b(...)" up to its ')'
    sql = head.replace("SELECT * FROM", "SELECT * FROM hit_stage b", 1) + rest
    for k in range(4):
        sql = sql.replace(f"${postgres._J + k}::", f"${k + 1}::")
    return sql


STAGED_SQL = staged_sql()


class StagedPostgresStore(PostgresStore):
    """The alternative: COPY the batch into a temporary table, then claim and insert from it,
    in one transaction (three round trips a batch instead of one)."""

    async def _execute(self, conn: Any, args: Any) -> list[Any]:
        n = len(COLUMNS)
        columns, rest = args.values[:n], args.values[n:]
        records = [(*row, i) for i, row in enumerate(zip(*columns, strict=True), start=1)]
        timeout = self._timeout + postgres.BACKSTOP
        async with conn.transaction():
            await conn.execute(STAGE_DDL, timeout=timeout)
            await conn.copy_records_to_table(
                "hit_stage", records=records, columns=(*COLUMNS, "n"), timeout=timeout
            )
            rows: list[Any] = await conn.fetch(STAGED_SQL, *rest, timeout=timeout)
        return [(kind, added) for kind, added, _ in rows if kind is not None]  # no rollups


def make_hits(total: int) -> list[Hit]:
    now = time.time_ns() // 1_000_000
    hits = []
    for i, row in enumerate(itertools.islice(bigdb.rows(bigdb.minimum_hits()), total)):
        hit = Hit(*row)
        hit.ts = now + i // 100
        hits.append(hit)
    return hits


async def write_all(store: Any, hits: list[Hit], size: int) -> tuple[float, float, int]:
    """Wall and client CPU seconds to write ``hits`` in batches of ``size``; rows stored."""
    added: Counter[str] = Counter()
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(hits), size):
        added += await store.write(hits[start : start + size])
    return time.perf_counter() - wall, time.process_time() - cpu, added.total()


async def run_pg(cls: type[PostgresStore], hits: list[Hit], size: int) -> dict[str, float]:
    db = await asyncio.to_thread(pg.Database.create)
    try:
        store = cls(db.url, pool_max=4, statement_timeout=5.0)
        await store.open()
        try:
            await store.write(hits[:size])  # connect the write pool, warm the statement
            pids = await asyncio.to_thread(db.backends)
            before = {pid: pg.cpu_seconds(pid) or 0.0 for pid in pids}
            wall, cpu, stored = await write_all(store, hits[size:], size)
            backend = sum((pg.cpu_seconds(pid) or 0.0) - before[pid] for pid in pids)
        finally:
            await store.aclose()
    finally:
        await asyncio.to_thread(db.drop)
    return result(len(hits) - size, stored, wall, cpu, backend)


async def run_sqlite(hits: list[Hit], size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pgwrite-") as work:
        store = SQLiteStore(str(Path(work) / "pixel.db"), "FULL", 5000)
        await store.open()
        try:
            await store.write(hits[:size])
            wall, cpu, stored = await write_all(store, hits[size:], size)
        finally:
            await store.aclose()
    return result(len(hits) - size, stored, wall, cpu, None)


def result(
    sent: int, stored: int, wall: float, cpu: float, backend: float | None
) -> dict[str, float]:
    # every hit of bigdb's mix has a distinct eid or none, so every one is stored
    if stored != sent:
        raise RuntimeError(f"stored {stored} of {sent} rows")
    out = {"rows_s": sent / wall, "client_us": cpu / sent * 1e6}
    if backend is not None:
        out["backend_us"] = backend / sent * 1e6
    return out


VARIANTS = {
    "pg unnest (served)": lambda hits, size: run_pg(PostgresStore, hits, size),
    "pg COPY + staging": lambda hits, size: run_pg(StagedPostgresStore, hits, size),
    "sqlite": run_sqlite,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32,128,512,2048")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=6000, help="rows a run, at least 40 batches")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    everything = make_hits(max(max(args.rows, 40 * size) + size for size in sizes))
    version, settings = await asyncio.to_thread(lambda: (pg.server_version(), pg.settings()))
    print(f"PostgreSQL {version}, {settings}")
    header = f"{'variant':22} {'batch':>6} {'rows/s':>9} {'client us/row':>14} {'pg us/row':>10}"
    print(header)
    for size in sizes:
        hits = everything[: max(args.rows, 40 * size) + size]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, variant in VARIANTS.items():
                runs[name].append(await variant(hits, size))
        for name, results in runs.items():
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            backend = f"{med['backend_us']:10.1f}" if "backend_us" in med else f"{'-':>10}"
            print(
                f"{name:22} {size:6} {med['rows_s']:9,.0f} {med['client_us']:14.1f} {backend}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
