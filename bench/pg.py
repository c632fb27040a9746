"""PostgreSQL for the bench: a database of its own per run, the rows it stored, and the CPU of
the PostgreSQL processes that served it.

The cluster is the machine's (``PIXEL_BENCH_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``: trust auth, a maintenance database to connect
to). Every run of a PostgreSQL scenario creates ``pixel_bench_<pid>_<hex>`` and drops it after
counting its hits, as the SQLite scenarios start from a fresh file.

PostgreSQL's CPU is read from ``/proc/<pid>/schedstat`` (time on a CPU, in ns) of:

* **backends**: the client backends of that database with ``application_name =
  'pixel_server'`` (the store names its connections so), found in ``pg_stat_activity`` right
  before and right after the measured run. This is the database's work per hit: parsing the
  statement, unnesting the arrays, the inserts into the heap and its indexes, the commit (the
  WAL record; a backend flushes the WAL itself unless the WAL writer already has);
* **background**: the cluster's other processes alive at both ends (WAL writer,
  checkpointer, background writer, autovacuum, ...). They serve every database of the
  cluster, so other programs using it show up here: informative, in no target.

The bench's own connections (to create, count, look up) use ``application_name =
'pixel_bench'`` and are counted in neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pixel_server.hits import COLUMNS
from pixel_server.rollup import Spec
from pixel_server.store import opened
from pixel_server.store.postgres import PostgresStore

ADMIN_URL = os.environ.get("PIXEL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
APP_NAME = "pixel_server"  # what store/postgres.py names its connections
BENCH_APP = "pixel_bench"
COPY_ROWS = 100_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")

BACKENDS_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
    " AND backend_type = 'client backend'"
)
BACKGROUND_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend' AND pid IS NOT NULL"
)


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _run(make: Callable[[], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        return await make()

    return asyncio.run(wrapped())


async def _connect(url: str) -> Any:
    return await asyncpg.connect(url, timeout=10, server_settings={"application_name": BENCH_APP})


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await _connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _execute(url: str, sql: str) -> None:
    conn = await _connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def copy_hits(
    url: str, rows: Iterable[tuple[Any, ...]], span: tuple[int, int], spec: Spec | None = None
) -> None:
    """Create the schema at ``url`` (partitions for ``span``, ms) and bulk-load ``rows`` (in
    COLUMNS order) with ``COPY``, then ANALYZE: a big database in minutes, not hours."""
    store = PostgresStore(url, spec=spec)
    async with opened(store):
        await store.prepare_span(*span)
    conn = await _connect(url)
    try:
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == COPY_ROWS:
                await conn.copy_records_to_table("hits", records=batch, columns=COLUMNS)
                batch = []
        if batch:
            await conn.copy_records_to_table("hits", records=batch, columns=COLUMNS)
        await conn.execute("ANALYZE hits")
    finally:
        await conn.close()


def unavailable_reason(url: str = ADMIN_URL) -> str | None:
    """None if PostgreSQL answers at ``url``, else why not (one line)."""
    try:
        _run(lambda: _fetch(url, "SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def server_version(url: str = ADMIN_URL) -> str:
    rows = _run(lambda: _fetch(url, "SHOW server_version"))
    return str(rows[0][0])


def settings(url: str = ADMIN_URL) -> dict[str, str]:
    """The server settings that decide a commit's cost, for the report."""
    names = ("synchronous_commit", "fsync", "wal_level", "shared_buffers", "max_connections")
    rows = _run(
        lambda: _fetch(
            url, "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)", names
        )
    )
    return {row[0]: f"{row[1]}{' ' + row[2] if row[2] else ''}" for row in rows}


@dataclass
class Database:
    """One run's database: its name, its URL, and its drop."""

    name: str
    url: str

    @classmethod
    def create(cls, admin_url: str = ADMIN_URL) -> Database:
        name = f"pixel_bench_{os.getpid()}_{secrets.token_hex(3)}"
        _run(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"'))
        return cls(name, with_database(admin_url, name))

    def drop(self, admin_url: str = ADMIN_URL) -> None:
        _run(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def count_hits(self) -> int:
        rows = _run(lambda: _fetch(self.url, "SELECT count(*) FROM hits"))
        return int(rows[0][0])

    def backends(self) -> list[int]:
        """pids of the client backends pixel_server has open on this database now."""
        rows = _run(lambda: _fetch(self.url, BACKENDS_SQL, self.name, APP_NAME))
        return sorted(int(row[0]) for row in rows)


def background_pids(url: str = ADMIN_URL) -> list[int]:
    rows = _run(lambda: _fetch(url, BACKGROUND_SQL))
    return sorted(int(row[0]) for row in rows)


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` has run so far, None if it is gone.

    From ``/proc/<pid>/schedstat`` (nanoseconds on a CPU, user and system together: a
    backend is one thread), else user + system of ``/proc/<pid>/stat`` (clock ticks, 10 ms:
    too coarse for a backend that runs a few hundred ms in a run).
    """
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pin(pids: list[int], cpus: str) -> None:
    """Restrict ``pids`` (backends serving only this bench) to the cores ``cpus`` ("0,1")."""
    cores = {int(c) for c in cpus.split(",")}
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that just ended
            os.sched_setaffinity(pid, cores)


@dataclass
class PgMeter:
    """PostgreSQL's CPU over one wrk run: :meth:`start` right before it, :meth:`stop` after."""

    db: Database
    pin_cpus: str | None = None
    backends: list[int] = field(default_factory=list)
    background: list[int] = field(default_factory=list)
    _before: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self.backends = self.db.backends()
        self.background = background_pids()
        if self.pin_cpus is not None:
            pin(self.backends, self.pin_cpus)
        self._before = {}
        for pid in (*self.backends, *self.background):
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._before[pid] = cpu

    def stop(self) -> dict[str, Any]:
        after = {pid: cpu_seconds(pid) for pid in self._before}
        backends_now = self.db.backends()
        # a backend that started during the run counts in full: all its CPU is the run's
        new = [pid for pid in backends_now if pid not in self._before]
        gone = [pid for pid in self.backends if after.get(pid) is None]

        def used(pids: list[int]) -> float:
            total = 0.0
            for pid in pids:
                end = after.get(pid)
                if end is not None:
                    total += end - self._before[pid]
            return total

        backend_s = used(self.backends) + sum(cpu_seconds(pid) or 0.0 for pid in new)
        return {
            "pg_backend_s": backend_s,
            "pg_background_s": used(self.background),
            "pg_backends": sorted({*self.backends, *new}),
            # a backend that ended during the run took its CPU time with it: the figure is low
            "pg_backends_gone": gone,
        }
