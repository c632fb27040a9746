"""How fast ``pixel-server copy`` moves a hit log: SQLite -> PostgreSQL, back, SQLite -> SQLite.

Usage: .venv/bin/python bench/copyrate.py [--hits 1000000] [--runs 3] [--chunk-size 10000]

Builds a SQLite file of ``--hits`` hits shaped as the export-2m database's (bigdb.py: 12
campaigns and site views, 70% with an eid, 43 days), then runs the real console script as a
user would, each run into a fresh PostgreSQL database (PIXEL_TEST_POSTGRES's server,
default 127.0.0.1:5432) or a new SQLite file. Per run: wall seconds, hits/s, the CPU seconds
of the ``pixel-server copy`` process and of its PostgreSQL backends (read from /proc while
they run, so PostgreSQL must be on this machine). The copy's own check (counts per kind in
both stores) must pass, and the destination must hold every hit.
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

CLI = Path(sys.executable).with_name("pixel-server")
ADMIN_URL = os.environ.get("PIXEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
    """One ``pixel-server copy`` run: wall and CPU seconds (the process, PostgreSQL's side)."""
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
    return {"wall_s": wall, "cpu_s": cpu, "pg_cpu_s": backends.seconds}


def show(label: str, hits: int, runs: list[dict[str, float]]) -> None:
    wall = statistics.median(r["wall_s"] for r in runs)
    best = min(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    pg = statistics.median(r["pg_cpu_s"] for r in runs)
    print(
        f"{label:<22} median {wall:6.1f} s = {hits / wall:8,.0f} hits/s"
        f" (best {hits / best:8,.0f}/s); CPU per hit: copy {cpu / hits * 1e6:5.1f} us,"
        f" PostgreSQL {pg / hits * 1e6:5.1f} us  [{len(runs)} runs]",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=10_000)
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
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
