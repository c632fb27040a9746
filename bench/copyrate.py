"""How fast ``pixel-server copy`` moves a hit log: SQLite -> PostgreSQL, back, SQLite -> SQLite.

Usage: .venv/bin/python bench/copyrate.py [--hits 1000000] [--runs 3] [--chunk-size 10000]

Builds a SQLite file of ``--hits`` hits shaped as the export-2m database's (bigdb.py: 12
campaigns and site views, 70% with an eid, 43 days), then runs the real console script as a
user would, each run into a fresh PostgreSQL database (PIXEL_TEST_POSTGRES's server,
default 127.0.0.1:5432) or a new SQLite file. Per run: wall seconds, hits/s, the CPU seconds
of the ``pixel-server copy`` process and of its PostgreSQL backends (read from /proc while
they run, so PostgreSQL must be on this machine). Each run first waits up to a minute for
both cores to be under 20% busy (bench/servers.py's wait_quiet) and reports the busiest core
it saw. The copy's own check (counts per kind in both stores) must pass, and the destination
must hold every hit.
Run it under the bench lock: ``flock /work/coord/bench.lock .venv/bin/python bench/copyrate.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import bigdb
from servers import wait_quiet

CLI = Path(sys.executable).with_name("pixel-server")
ADMIN_URL = os.environ.get("PIXEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET_WAIT = 60.0  # seconds to wait for both cores to be under 20% busy before each run


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def fetchval(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def proc_cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class BackendCPU:
    """The CPU seconds of the PostgreSQL backends serving ``database``, sampled every 50 ms
    while they live (a backend's counters vanish with it: at most one interval is lost)."""

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._watch()))

    async def _watch(self) -> None:
        if self.database is None:
            return
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            sql = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
            while not self.stop.is_set():
                for record in await conn.fetch(sql, self.database):
                    cpu = proc_cpu(record["pid"])
                    if cpu is not None:
                        self.last[record["pid"]] = cpu
                for pid in list(self.last):
                    cpu = proc_cpu(pid)
                    if cpu is not None:
                        self.last[pid] = cpu
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def __enter__(self) -> BackendCPU:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last.values())


def copy(source: str, dest: str, chunk: int, database: str | None) -> dict[str, float]:
    """One ``pixel-server copy`` run: wall and CPU seconds (the process, PostgreSQL's side),
    after waiting up to QUIET_WAIT s for the cores to be quiet (another agent's load)."""
    busy, _ = wait_quiet(QUIET_WAIT)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with BackendCPU(database) as backends:
        started = time.perf_counter()
        result = subprocess.run(
            [str(CLI), "copy", source, dest, "--chunk-size", str(chunk)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0 or "source and destination agree" not in result.stdout:
        raise SystemExit(f"copy failed ({result.returncode}): {result.stdout}{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    busiest = max(busy.values(), default=0.0)
    return {"wall_s": wall, "cpu_s": cpu, "pg_cpu_s": backends.seconds, "busy_pct": busiest}


async def insert_paths(source: Path, hits: int, chunk: int, runs: int) -> None:
    """PostgresStore.copy_in's two ways of writing a chunk, on the same rows into fresh
    databases, in turns: binary COPY, and the dedup statement (COPY_DEDUP_SQL, unnest) it
    falls back to; each with the position (POSITION_*_SQL). Client CPU (this process) and
    the backend's, per hit."""
    from pixel_server.hits import COLUMNS
    from pixel_server.query import HitQuery
    from pixel_server.store.postgres import (
        CLAIM_COLUMNS,
        COPY_DEDUP_SQL,
        POSITION_INSERT_SQL,
        PostgresStore,
        _column_arrays,
        claims_of,
    )
    from pixel_server.store.sqlite import SQLiteStore

    chunks: list[list[tuple[Any, ...]]] = []
    reader = SQLiteStore(str(source))
    await reader.open()
    query = HitQuery(oldest_first=True, limit=chunk)
    while len(chunks) * chunk < hits and (page := await reader.query(query)):
        chunks.append([tuple(row[c] for c in COLUMNS) for row in page])
        query = query.after(page[-1])
    await reader.aclose()
    first, last = chunks[0][0][0], chunks[-1][-1][0]
    n = sum(map(len, chunks))
    found: dict[str, list[tuple[float, float, float]]] = {"COPY": [], "unnest statement": []}
    for run in range(runs):
        for mode in found:
            name = f"pixel_copyrate_{os.getpid()}_paths_{run}"
            await admin(f'CREATE DATABASE "{name}"')
            url = with_database(ADMIN_URL, name)
            try:
                store = PostgresStore(url)
                await store.open()
                await store.prepare_span(first, last)
                await store.aclose()
                conn = await asyncpg.connect(url)
                pid = conn.get_server_pid()
                server0, client0 = proc_cpu(pid) or 0.0, time.process_time()
                started = time.perf_counter()
                for i, records in enumerate(chunks):
                    async with conn.transaction():
                        if mode == "COPY":
                            await conn.copy_records_to_table(
                                "hit_eids", records=claims_of(records), columns=CLAIM_COLUMNS
                            )
                            await conn.copy_records_to_table(
                                "hits", records=records, columns=COLUMNS
                            )
                        else:
                            await conn.fetch(COPY_DEDUP_SQL, *_column_arrays(records))
                        await conn.execute(POSITION_INSERT_SQL, str(i), "s", i, i, len(records))
                wall = time.perf_counter() - started
                server = (proc_cpu(pid) or 0.0) - server0
                found[mode].append((wall, time.process_time() - client0, server))
                await conn.close()
            finally:
                await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nPostgresStore.copy_in, {n:,} hits in chunks of {chunk:,} (medians of {runs}):")
    for mode, results in found.items():
        wall = statistics.median(r[0] for r in results)
        client = statistics.median(r[1] for r in results) / n * 1e6
        server = statistics.median(r[2] for r in results) / n * 1e6
        print(
            f"  {mode:<17} {n / wall:8,.0f} hits/s; CPU per hit: client {client:5.1f} us,"
            f" PostgreSQL {server:5.1f} us",
            flush=True,
        )


def show(label: str, hits: int, runs: list[dict[str, float]]) -> None:
    wall = statistics.median(r["wall_s"] for r in runs)
    best = min(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    pg = statistics.median(r["pg_cpu_s"] for r in runs)
    busy = max(r["busy_pct"] for r in runs)
    print(
        f"{label:<22} median {wall:6.1f} s = {hits / wall:8,.0f} hits/s"
        f" (best {hits / best:8,.0f}/s); CPU per hit: copy {cpu / hits * 1e6:5.1f} us,"
        f" PostgreSQL {pg / hits * 1e6:5.1f} us  [{len(runs)} runs; busiest core before a"
        f" run: {busy:.0f}%]",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument(
        "--paths-hits",
        type=int,
        default=200_000,
        help="hits for the comparison of copy_in's two insert paths (0: skip it)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="copyrate-"))
    try:
        source = work / "source.db"
        rows = itertools.islice(bigdb.rows(bigdb.TOTAL_HITS), args.hits)
        built = bigdb.build(source, args.hits, rows)
        print(f"built {source} with {args.hits:,} hits in {built:.1f} s", flush=True)
        to_pg: list[dict[str, float]] = []
        from_pg: list[dict[str, float]] = []
        to_sqlite: list[dict[str, float]] = []
        for run in range(args.runs):
            name = f"pixel_copyrate_{os.getpid()}_{run}"
            asyncio.run(admin(f'CREATE DATABASE "{name}"'))
            url = with_database(ADMIN_URL, name)
            try:
                to_pg.append(copy(str(source), url, args.chunk_size, name))
                held = asyncio.run(fetchval(url, "SELECT count(*) FROM hits"))
                assert held == args.hits, (held, args.hits)
                back = work / f"back-{run}.db"
                from_pg.append(copy(url, str(back), args.chunk_size, name))
            finally:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            other = work / f"other-{run}.db"
            to_sqlite.append(copy(str(source), str(other), args.chunk_size, None))
            for path in work.glob(f"*-{run}.db*"):
                path.unlink()
        print(f"\n{args.hits:,} hits, chunks of {args.chunk_size:,}:")
        show("SQLite -> PostgreSQL", args.hits, to_pg)
        show("PostgreSQL -> SQLite", args.hits, from_pg)
        show("SQLite -> SQLite", args.hits, to_sqlite)
        if args.paths_hits:
            asyncio.run(insert_paths(source, args.paths_hits, args.chunk_size, args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
