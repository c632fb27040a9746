"""The SQLite store's rollups (rollup.py): added in the write transaction, recomputed from
the hits when stored hits change class, rebuilt whole by ``pixel-server rollups rebuild``.

A cell's sketch is merged by ``sketch_union``, a function registered on the write
connection (sketch.merged), inside the upsert: one ``executemany`` adds a batch's cells.
"""

from __future__ import annotations

import sqlite3
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
    TRAFFIC,
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
    recounted,
)
from ..sketch import Sketches
from ..totals import PROXY, PROXY_REPEAT_MS
from .rollup_sql import HORIZON_SQL

UPSERT_SQL = (
    "INSERT INTO rollups (slot, cid, kind, event, traffic, dim, value, n, uniques)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n,"
    " uniques = sketch_union(uniques, excluded.uniques)"
)
SUMS_UPSERT_SQL = (
    "INSERT INTO rollup_sums (slot, cid, kind, event, traffic, dim, value, param, total, n)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
    " total = total + excluded.total, n = n + excluded.n"
)
# a mail_proxy fetch stored before: through the partial index on (uid, ts)
REPEAT_SQL = (
    "SELECT 1 FROM hits WHERE uid = ? AND ts > ? AND ts <= ? AND kind = ?"  # noqa: S608
    f" AND coalesce(cid, '') = ? AND traffic = '{PROXY}' AND method <> 'HEAD' LIMIT 1"
)
_SELECT = ", ".join(COLUMNS)
# a campaign's hits of one kind in a span, through the (cid, ts) index; and those of no
# campaign
SPAN_HITS_SQL = (
    f"SELECT {_SELECT} FROM hits WHERE cid = ? AND ts >= ? AND ts < ?"  # noqa: S608
    " AND kind = ? ORDER BY id"
)
SPAN_HITS_NO_CID_SQL = (
    f"SELECT {_SELECT} FROM hits WHERE ts >= ? AND ts < ?"  # noqa: S608
    " AND (cid IS NULL OR cid = '') AND kind = ? ORDER BY id"
)
DELETE_HOURLY_SQL = "DELETE FROM {table} WHERE cid = ? AND dim = '' AND slot = ? AND kind = ?"
DELETE_DAILY_SQL = "DELETE FROM {table} WHERE cid = ? AND dim = ? AND slot = ? AND kind = ?"
CHUNK_SQL = f"SELECT id, {_SELECT} FROM hits WHERE id > ? AND ts >= ? ORDER BY id LIMIT ?"  # noqa: S608
# the cells a rebuild recounts: those at or after the purge's horizon (all, without one)
THAW_SQL = "DELETE FROM {table} WHERE (dim = '' AND slot >= ?) OR (dim <> '' AND slot >= ?)"
REBUILD_CHUNK = 50_000


def register(conn: sqlite3.Connection) -> None:
    """Make ``sketch_union`` known to ``conn`` (the upserts use it)."""
    conn.create_function("sketch_union", 2, sketch.merged, deterministic=True)


def stored_repeats(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Per row (COLUMNS order), whether it repeats a mail_proxy fetch already stored; run
    before the rows are inserted. Only candidates (rollup.candidate) cost a lookup."""
    found = [False] * len(rows)
    for n, row in enumerate(rows):
        if row[TRAFFIC] == PROXY and candidate(row):
            ts = int(row[TS])
            args = (row[UID], ts - PROXY_REPEAT_MS, ts, row[KIND], row[CID] or "")
            found[n] = conn.execute(REPEAT_SQL, args).fetchone() is not None
    return found


def add(
    conn: sqlite3.Connection,
    spec: Spec,
    rows: Iterable[Sequence[Any]],
    repeats: Iterable[bool],
) -> None:
    """Add the cells of ``rows`` (stored now, in the order stored; ``repeats`` from
    :func:`stored_repeats`) in the caller's transaction."""
    write_cells(conn, counted(spec, rows, repeats).cells())


def write_cells(conn: sqlite3.Connection, cells: dict[Key, Cell]) -> None:
    if not cells:
        return
    sketch_of = Sketches()
    conn.executemany(
        UPSERT_SQL, [(*key, cell.n, sketch_of(cell.uids)) for key, cell in cells.items()]
    )
    sums = [
        (*key, param, total, count)
        for key, cell in cells.items()
        for param, (total, count) in cell.sums.items()
    ]
    if sums:
        conn.executemany(SUMS_UPSERT_SQL, sums)


def recompute(conn: sqlite3.Connection, spec: Spec, recounts: Iterable[Recount]) -> None:
    """Recompute the cells of each Recount from the stored hits (in the caller's
    transaction): after hits changed class, which a sketch cannot take back. Costs a read
    of a day of that campaign's hits of that kind."""
    daily = [d for d in spec.dimensions() if d != HOURLY]
    for recount in recounts:
        cid, kind = recount.cid, recount.kind
        for table in ("rollups", "rollup_sums"):
            hourly = DELETE_HOURLY_SQL.format(table=table)
            conn.executemany(hourly, [(cid, slot, kind) for slot in recount.hours])
            days = DELETE_DAILY_SQL.format(table=table)
            conn.executemany(days, [(cid, d, slot, kind) for d in daily for slot in recount.days])
        since, until = recount.span[0] - PROXY_REPEAT_MS, recount.span[1]
        if cid:
            rows = conn.execute(SPAN_HITS_SQL, (cid, since, until, kind)).fetchall()
        else:
            rows = conn.execute(SPAN_HITS_NO_CID_SQL, (since, until, kind)).fetchall()
        write_cells(conn, recounted(spec, recount, rows))


def rebuild(conn: sqlite3.Connection, spec: Spec) -> int:
    """Every cell anew from every stored hit, in stored order (the caller's transaction);
    the rollups are then complete. The number of hits read. Under a purge's horizon
    (retention.py) the cells before it are kept and the hits before it not read."""
    hour, day = frozen(horizon(conn))
    for table in ("rollups", "rollup_sums"):
        conn.execute(THAW_SQL.format(table=table), (hour, day))
    memory = ProxyMemory()
    last, read = 0, 0
    while True:
        rows = conn.execute(CHUNK_SQL, (last, hour * MINUTE_MS, REBUILD_CHUNK)).fetchall()
        if not rows:
            break
        acc = Accumulator(spec)
        for row in rows:
            if row[1 + METHOD] == "HEAD" or memory.repeat(row, 1):
                continue
            acc.add(row, 1)
        write_cells(conn, after(acc.cells(), hour, day))
        last, read = rows[-1][0], read + len(rows)
    conn.execute("UPDATE rollup_state SET complete = 1, zone = ?", (spec.zone,))
    return read


def horizon(conn: sqlite3.Connection) -> int:
    """The purge's horizon (retention.py), 0 if none: no cell before it is recounted."""
    return int(conn.execute(HORIZON_SQL).fetchone()[0])


def check_zone(conn: sqlite3.Connection, zone: str) -> None:
    """Note the report zone of the daily cells; if they were made in another one, the
    rollups are incomplete until rebuilt (reports read the hits meanwhile)."""
    row = conn.execute("SELECT zone FROM rollup_state").fetchone()
    if row is not None and row[0] != zone:
        stale = row[0] is not None
        conn.execute(
            "UPDATE rollup_state SET zone = ?, complete = complete AND ?", (zone, not stale)
        )
