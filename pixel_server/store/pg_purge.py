"""The PostgreSQL store's purge (retention.py).

Whole months of hits older than the cut-off go by dropping their partition (``DROP TABLE``:
its files are unlinked at once, nothing to vacuum); the rest is deleted one UTC hour a
transaction, with the eid claims of those hits (``hit_eids``), and the raw fields cleared the
same way. Then the partitions touched are vacuumed, so their dead rows' space is reused (a
plain VACUUM keeps the files' size; the rows' old bytes stay in the pages' free space and in
the WAL until overwritten and recycled — docs/privacy.md).
"""

from __future__ import annotations

import re
from typing import Any

from ..retention import Plan, Report, State, check_complete, next_state, raw_start, window_end
from .pgschema import month_start_ms
from .privacy_sql import PurgeSQL, purge_sql
from .sql import numbered

SQL = purge_sql(numbered)
PARTITION = re.compile(r"hits_(\d{4})_(\d{2})")
PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'hits'::regclass ORDER BY c.relname"
)
SIZE_SQL = (
    "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i"
    " WHERE i.inhparent = 'hits'::regclass"
)
EIDS_SQL = "DELETE FROM hit_eids WHERE ts < $1"


def spans(names: list[str]) -> list[tuple[str, int, int]]:
    """(name, start ms, end ms) of the monthly partitions among ``names``."""
    found = []
    for name in names:
        match = PARTITION.fullmatch(name)
        if match:
            year, month = int(match[1]), int(match[2])
            end = month_start_ms(year + month // 12, month % 12 + 1)
            found.append((name, month_start_ms(year, month), end))
    return found


async def windows(conn: Any, lo: int, hi: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most one UTC hour covering the hits in [lo, hi)."""
    found = []
    while lo < hi:
        first = await conn.fetchval(SQL.first_ts, lo, hi)
        if first is None:
            break
        end = window_end(int(first), hi)
        found.append((int(first), end))
        lo = end
    return found


async def purge(conn: Any, plan: Plan) -> Report:
    """Run ``plan`` on the connection ``conn`` (see the module docstring)."""
    report = Report(plan.dry_run, hits_before=plan.hits_before, raw_before=plan.raw_before)
    report.fields = list(plan.fields)
    report.bytes_before = int(await conn.fetchval(SIZE_SQL))
    complete = await conn.fetchval("SELECT bool_or(complete) FROM rollup_state")
    check_complete(plan, bool(complete))
    found: State = tuple(await conn.fetchrow(SQL.state))
    touched: set[str] = set()
    partitions = spans([row[0] for row in await conn.fetch(PARTITIONS_SQL)])
    if plan.hits_before is not None:
        report.hits_deleted, touched = await _delete(conn, plan, partitions, report)
    if plan.raw_before is not None:
        clear, count = PurgeSQL.clear(plan.fields, numbered)
        start = raw_start(plan, found)
        for lo, hi in await windows(conn, start, plan.raw_before):
            if plan.dry_run:
                report.hits_cleared += int(await conn.fetchval(count, lo, hi))
                continue
            async with conn.transaction():
                report.hits_cleared += int((await conn.execute(clear, lo, hi)).split()[-1])
            touched.update(name for name, s, e in partitions if s < hi and lo < e)
    if plan.dry_run:
        report.bytes_after = report.bytes_before
        return report
    state = next_state(plan, found)
    await conn.execute(SQL.set_state, *state)
    for name in sorted(touched | {"hits_default"}):
        await conn.execute(f'VACUUM (ANALYZE) "{name}"')
    await conn.execute("VACUUM (ANALYZE) hit_eids")
    report.bytes_after = int(await conn.fetchval(SIZE_SQL))
    return report


async def _delete(
    conn: Any, plan: Plan, partitions: list[tuple[str, int, int]], report: Report
) -> tuple[int, set[str]]:
    """Drop the months wholly before the cut-off, delete the older hits of the others."""
    assert plan.hits_before is not None
    deleted, touched = 0, set[str]()
    for name, _start, end in partitions:
        if end <= plan.hits_before:
            deleted += int(await conn.fetchval(f'SELECT count(*) FROM "{name}"'))  # noqa: S608
            if not plan.dry_run:
                await conn.execute(f'DROP TABLE "{name}"')
            report.partitions_dropped.append(name)
    if plan.dry_run:
        kept = [e for _, _, e in partitions if e <= plan.hits_before]
        since = max(kept, default=0)
        rest = "SELECT count(*) FROM hits WHERE ts >= $1 AND ts < $2"
        return deleted + int(await conn.fetchval(rest, since, plan.hits_before)), touched
    for lo, hi in await windows(conn, 0, plan.hits_before):
        async with conn.transaction():
            deleted += int((await conn.execute(SQL.delete_window, lo, hi)).split()[-1])
        touched.update(name for name, s, e in partitions if s < hi and lo < e)
    await conn.execute(EIDS_SQL, plan.hits_before)
    return deleted, touched
