"""The PostgreSQL store's rollups (rollup.py), as the SQLite store's (sqlite_rollups.py):
added in the write transaction, recomputed when stored hits change class, rebuilt whole.

Many instances may add to one cell at once. Each batch upserts its cells' counts in key
order (so two batches lock shared cells in the same order: no deadlock), the upsert
returning each cell's sketch as it stood; the merged sketches are then written back, under
the row locks the upsert took. Sums are added by the upsert itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .. import sketch
from ..hits import COLUMNS
from ..retention import MINUTE_MS, frozen
from ..rollup import (
    CID,
    HOURLY,
    KIND,
    METHOD,
    TS,
    UID,
    Accumulator,
    Cell,
    Key,
    ProxyMemory,
    Recount,
    Spec,
    after,
    candidate,
    counted,
    key_of,
    recounted,
)
from ..sketch import Sketches
from ..totals import PROXY, PROXY_REPEAT_MS
from .rollup_sql import HORIZON_SQL

_KEY = "slot, cid, kind, event, traffic, dim, value"
_KEY_TYPES = "$1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]"
_MATCH = " AND ".join(f"r.{c} = c.{c}" for c in _KEY.split(", "))
UPSERT_SQL = f"""
INSERT INTO rollups ({_KEY}, n)
SELECT * FROM unnest({_KEY_TYPES}, $8::bigint[])
ON CONFLICT (cid, dim, slot, kind, event, traffic, value) DO UPDATE SET n = rollups.n + excluded.n
RETURNING {_KEY}, uniques
"""  # noqa: S608 - our own column names
SKETCH_SQL = f"""
UPDATE rollups AS r SET uniques = c.uniques
FROM unnest({_KEY_TYPES}, $8::bytea[]) AS c({_KEY}, uniques)
WHERE {_MATCH}
"""  # noqa: S608 - as above
SUMS_SQL = f"""
INSERT INTO rollup_sums ({_KEY}, param, total, n)
SELECT * FROM unnest({_KEY_TYPES}, $8::text[], $9::double precision[], $10::bigint[])
ON CONFLICT (cid, dim, slot, kind, event, traffic, value, param) DO UPDATE SET
    total = rollup_sums.total + excluded.total, n = rollup_sums.n + excluded.n
"""  # noqa: S608 - as above
REPEATS_SQL = f"""
SELECT c.n FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::integer[])
    AS c(uid, ts, kind, cid, n)
WHERE EXISTS (
    SELECT 1 FROM hits h WHERE h.uid = c.uid AND h.ts > c.ts - {PROXY_REPEAT_MS}
    AND h.ts <= c.ts AND h.kind = c.kind AND coalesce(h.cid, '') = c.cid
    AND h.traffic = '{PROXY}' AND h.method <> 'HEAD'
)
"""  # noqa: S608 - our own constants
_SELECT = ", ".join(COLUMNS)
SPAN_HITS_SQL = (
    f"SELECT {_SELECT} FROM hits WHERE ts >= $1 AND ts < $2"  # noqa: S608
    " AND coalesce(cid, '') = $3 AND kind = $4 ORDER BY id"
)
DELETE_SQL = (
    "DELETE FROM {table} WHERE dim = ANY($1::text[]) AND cid = $2"
    " AND slot = ANY($3::integer[]) AND kind = $4"
)
ALL_HITS_SQL = f"SELECT {_SELECT} FROM hits WHERE ts >= $1 ORDER BY id"  # noqa: S608
# the cells a rebuild recounts: those at or after the purge's horizon (all, without one)
THAW_SQL = "DELETE FROM {table} WHERE (dim = '' AND slot >= $1) OR (dim <> '' AND slot >= $2)"
REBUILD_CHUNK = 20_000
STATEMENT_CELLS = 2_000


async def stored_repeats(conn: Any, rows: Sequence[Sequence[Any]], timeout: float) -> list[bool]:
    """Per row (COLUMNS order), whether it repeats a mail_proxy fetch already stored; run
    before the rows are inserted, in their transaction. One statement for the candidates."""
    picked = [(n, row) for n, row in enumerate(rows) if candidate(row)]
    found = [False] * len(rows)
    if not picked:
        return found
    columns = [
        [row[UID] for _, row in picked],
        [int(row[TS]) for _, row in picked],
        [row[KIND] for _, row in picked],
        [row[CID] or "" for _, row in picked],
        [n for n, _ in picked],
    ]
    for (n,) in await conn.fetch(REPEATS_SQL, *columns, timeout=timeout):
        found[n] = True
    return found


async def add(
    conn: Any,
    spec: Spec,
    rows: Iterable[Sequence[Any]],
    repeats: Iterable[bool],
    timeout: float,
) -> None:
    """Add the cells of ``rows`` (stored now, in stored order) in the caller's transaction."""
    await write_cells(conn, counted(spec, rows, repeats).cells(), timeout)


def _key_arrays(keys: Sequence[Key]) -> list[list[Any]]:
    return [list(column) for column in zip(*keys, strict=True)] if keys else [[]] * 7


async def write_cells(conn: Any, cells: dict[Key, Cell], timeout: float) -> None:
    """Add ``cells`` in key order, at most STATEMENT_CELLS a statement: each statement of a
    write runs under PIXEL_BUSY_TIMEOUT, and a copied chunk can touch thousands of cells."""
    ordered = sorted(cells)
    for start in range(0, len(ordered), STATEMENT_CELLS):
        await _write_cells(conn, cells, ordered[start : start + STATEMENT_CELLS], timeout)


async def _write_cells(conn: Any, cells: dict[Key, Cell], keys: list[Key], timeout: float) -> None:
    arrays = _key_arrays(keys)
    before = await conn.fetch(UPSERT_SQL, *arrays, [cells[k].n for k in keys], timeout=timeout)
    merged = []
    sketch_of = Sketches()
    for record in before:
        key = key_of(record[:7])
        cell = cells[key]
        if cell.uids:
            old = None if record[7] is None else bytes(record[7])
            merged.append((key, sketch.merged(old, sketch_of(cell.uids))))
    if merged:
        merged.sort()
        arrays = _key_arrays([key for key, _ in merged])
        await conn.execute(SKETCH_SQL, *arrays, [data for _, data in merged], timeout=timeout)
    sums = [
        (key, param, total, count)
        for key in keys
        for param, (total, count) in sorted(cells[key].sums.items())
    ]
    if sums:
        arrays = _key_arrays([key for key, *_ in sums])
        await conn.execute(
            SUMS_SQL,
            *arrays,
            [param for _, param, _, _ in sums],
            [total for _, _, total, _ in sums],
            [int(count) for *_, count in sums],
            timeout=timeout,
        )


async def recompute(conn: Any, spec: Spec, recounts: Iterable[Recount], timeout: float) -> None:
    """Recompute the cells of each Recount from the stored hits (the caller's transaction),
    as sqlite_rollups.recompute."""
    daily = [d for d in spec.dimensions() if d != HOURLY]
    for recount in recounts:
        cid, kind = recount.cid, recount.kind
        for table in ("rollups", "rollup_sums"):
            for dims, slots in (([HOURLY], recount.hours), (daily, recount.days)):
                await conn.execute(
                    DELETE_SQL.format(table=table), dims, cid, list(slots), kind, timeout=timeout
                )
        since, until = recount.span[0] - PROXY_REPEAT_MS, recount.span[1]
        rows = await conn.fetch(SPAN_HITS_SQL, since, until, cid, kind, timeout=timeout)
        await write_cells(conn, recounted(spec, recount, rows), timeout)


async def rebuild(conn: Any, spec: Spec) -> int:
    """Every cell anew from every stored hit, in stored (id) order, in the caller's
    transaction; the rollups are then complete. The number of hits read. Under a purge's
    horizon (retention.py) the cells before it are kept and the hits before it not read."""
    hour, day = frozen(await horizon(conn))
    for table in ("rollups", "rollup_sums"):
        await conn.execute(THAW_SQL.format(table=table), hour, day)
    memory = ProxyMemory()
    acc = Accumulator(spec)
    read = 0
    async for row in conn.cursor(ALL_HITS_SQL, hour * MINUTE_MS, prefetch=REBUILD_CHUNK):
        read += 1
        if row[METHOD] == "HEAD" or memory.repeat(row):
            continue
        acc.add(row)
        if read % REBUILD_CHUNK == 0:
            await write_cells(conn, after(acc.cells(), hour, day), 600.0)
            acc = Accumulator(spec)
    await write_cells(conn, after(acc.cells(), hour, day), 600.0)
    await conn.execute("UPDATE rollup_state SET complete = true, zone = $1", spec.zone)
    # the planner's statistics of tables just rewritten whole: without them it reads a
    # report's few thousand cells by scanning millions (autovacuum comes later)
    await conn.execute("ANALYZE rollups")
    await conn.execute("ANALYZE rollup_sums")
    return read


async def horizon(conn: Any) -> int:
    """The purge's horizon (retention.py), 0 if none: no cell before it is recounted."""
    return int(await conn.fetchval(HORIZON_SQL))


async def check_zone(conn: Any, zone: str) -> None:
    """As sqlite_rollups.check_zone."""
    await conn.execute(
        "UPDATE rollup_state SET zone = $1, complete = complete AND zone IS NULL"
        " WHERE zone IS DISTINCT FROM $1",
        zone,
    )
