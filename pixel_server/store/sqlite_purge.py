"""The SQLite store's purge (retention.py): hits deleted and raw fields cleared one UTC hour
of hits a transaction (writers wait milliseconds, not the whole purge), then the space
returned: ``PRAGMA incremental_vacuum`` on a database made with incremental auto-vacuum
(every database this release creates), else — asked by ``pixel-server purge`` — a ``VACUUM``
that also switches an older database to it; then the WAL is checkpointed and truncated.
What is deleted is zeroed in the file anyway (``secure_delete``, sqlite_privacy.py).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..retention import Plan, Report, State, check_complete, next_state, raw_start, window_end
from .privacy_sql import PurgeSQL, purge_sql
from .sqlite_privacy import truncate_wal

SQL = purge_sql()
T = TypeVar("T")
Transaction = Callable[[Callable[[sqlite3.Connection], T]], T]
INCREMENTAL = 2  # PRAGMA auto_vacuum
VACUUM_PAGES = 2048  # 8 MiB of 4 KiB pages given back a transaction
RECLAIM_WAIT_MS = 10_000  # for the write lock, per step


def file_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def windows(conn: sqlite3.Connection, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """[start, end) spans of at most one UTC hour covering the hits in [lo, hi)."""
    while lo < hi:
        first = conn.execute(SQL.first_ts, (lo, hi)).fetchone()[0]
        if first is None:
            return
        end = window_end(first, hi)
        yield first, end
        lo = end


def purge(transaction: Transaction[Any], conn: sqlite3.Connection, path: str, plan: Plan) -> Report:
    """Run ``plan`` (see the module docstring); ``transaction`` runs a function in one."""
    report = Report(plan.dry_run, hits_before=plan.hits_before, raw_before=plan.raw_before)
    report.fields = list(plan.fields)
    report.bytes_before = file_bytes(path)
    complete = any(row[0] for row in conn.execute("SELECT complete FROM rollup_state"))
    check_complete(plan, complete)
    found: State = tuple(conn.execute(SQL.state).fetchone())
    if plan.hits_before is not None:
        if plan.dry_run:
            report.hits_deleted = conn.execute(SQL.count_before, (plan.hits_before,)).fetchone()[0]
        else:
            for span in list(windows(conn, 0, plan.hits_before)):
                report.hits_deleted += transaction(_run(SQL.delete_window, span))
    if plan.raw_before is not None:
        clear, count = PurgeSQL.clear(plan.fields)
        start = raw_start(plan, found)
        for lo, hi in list(windows(conn, start, plan.raw_before)):
            if plan.dry_run:
                report.hits_cleared += conn.execute(count, (lo, hi)).fetchone()[0]
            else:
                report.hits_cleared += transaction(_run(clear, (lo, hi)))
    if plan.dry_run:
        report.bytes_after = report.bytes_before
        return report
    state = next_state(plan, found)
    transaction(lambda c: c.execute(SQL.set_state, state))
    reclaim(conn, plan.vacuum)
    report.bytes_after = file_bytes(path)
    return report


def _run(sql: str, args: tuple[int, int]) -> Callable[[sqlite3.Connection], int]:
    """``sql`` with ``args`` as a transaction's work: the rows it changed."""

    def work(conn: sqlite3.Connection) -> int:
        return int(conn.execute(sql, args).rowcount)

    return work


def reclaim(conn: sqlite3.Connection, vacuum: bool) -> None:
    """Give the free pages back to the system (see the module docstring)."""
    # the write connection polls for the lock itself (busy_timeout 0); here SQLite's own
    # handler waits instead, as this is not a hit's write
    conn.execute(f"PRAGMA busy_timeout = {RECLAIM_WAIT_MS}")
    try:
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
            # VACUUM_PAGES a transaction, so writers wait for one step, not the whole; through
            # executescript, which steps the pragma to its end (execute() frees one page)
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            for _ in range(free // VACUUM_PAGES + 1):  # pages freed meanwhile: next purge
                conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
        elif vacuum:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")
    truncate_wal(conn)
