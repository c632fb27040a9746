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
from ..rollup import (
    CID,
    DIMENSIONS,
    HOUR_MS,
    KIND,
    METHOD,
    TS,
    UID,
    Accumulator,
    Cell,
    Key,
    ProxyMemory,
    Spec,
    candidate,
)
from ..totals import PROXY, PROXY_REPEAT_MS

UPSERT_SQL = (
    "INSERT INTO rollups (hour, cid, kind, event, traffic, dim, value, n, uniques)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n,"
    " uniques = sketch_union(uniques, excluded.uniques)"
)
SUMS_UPSERT_SQL = (
    "INSERT INTO rollup_sums (hour, cid, kind, event, traffic, dim, value, param, total, n)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
    " total = total + excluded.total, n = n + excluded.n"
)
# a mail_proxy fetch stored before: through the partial index on (uid, ts)
REPEAT_SQL = (
    "SELECT 1 FROM hits WHERE uid = ? AND ts > ? AND ts <= ? AND kind = ?"  # noqa: S608
    f" AND coalesce(cid, '') = ? AND traffic = '{PROXY}' AND method <> 'HEAD' LIMIT 1"
)
_SELECT = ", ".join(COLUMNS)
HOUR_HITS_SQL = (
    f"SELECT {_SELECT} FROM hits WHERE ts >= ? AND ts < ?"  # noqa: S608
    " AND coalesce(cid, '') = ? AND kind = ? ORDER BY id"
)
CHUNK_SQL = f"SELECT id, {_SELECT} FROM hits WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
REBUILD_CHUNK = 50_000


def register(conn: sqlite3.Connection) -> None:
    """Make ``sketch_union`` known to ``conn`` (the upserts use it)."""
    conn.create_function("sketch_union", 2, sketch.merged, deterministic=True)


def stored_repeats(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Per row (COLUMNS order), whether it repeats a mail_proxy fetch already stored; run
    before the rows are inserted. Only candidates (rollup.candidate) cost a lookup."""
    found = []
    for row in rows:
        if not candidate(row):
            found.append(False)
            continue
        ts = int(row[TS])
        args = (row[UID], ts - PROXY_REPEAT_MS, ts, row[KIND], row[CID] or "")
        found.append(conn.execute(REPEAT_SQL, args).fetchone() is not None)
    return found


def add(
    conn: sqlite3.Connection,
    spec: Spec,
    rows: Iterable[Sequence[Any]],
    repeats: Iterable[bool],
) -> None:
    """Add the cells of ``rows`` (stored now, in the order stored; ``repeats`` from
    :func:`stored_repeats`) in the caller's transaction."""
    memory = ProxyMemory()
    acc = Accumulator(spec)
    for row, stored in zip(rows, repeats, strict=True):
        if row[METHOD] == "HEAD":
            continue
        if memory.repeat(row) or stored:
            continue
        acc.add(row)
    write_cells(conn, acc.cells)


def write_cells(conn: sqlite3.Connection, cells: dict[Key, Cell]) -> None:
    if not cells:
        return
    conn.executemany(
        UPSERT_SQL,
        [
            (*key, cell.n, sketch.of(cell.uids) if cell.uids else None)
            for key, cell in cells.items()
        ],
    )
    sums = [
        (*key, param, total, count)
        for key, cell in cells.items()
        for param, (total, count) in cell.sums.items()
    ]
    if sums:
        conn.executemany(SUMS_UPSERT_SQL, sums)


def recompute(conn: sqlite3.Connection, spec: Spec, hours: Iterable[tuple[int, str, str]]) -> None:
    """Recompute the cells of each (hour, cid, kind) from its stored hits (in the caller's
    transaction): after hits changed class, which a sketch cannot take back. Costs a read of
    that hour's hits of that campaign and kind (a click's: through the clicks' index)."""
    dims = ("", *DIMENSIONS, *spec.param_dimensions())
    for hour, cid, kind in sorted(set(hours)):
        start, end = hour * HOUR_MS, (hour + 1) * HOUR_MS
        for table in ("rollups", "rollup_sums"):
            conn.executemany(
                f"DELETE FROM {table} WHERE cid = ? AND dim = ? AND hour = ? AND kind = ?",  # noqa: S608
                [(cid, dim, hour, kind) for dim in dims],
            )
        # from one repeat window before the hour: an earlier fetch decides a repeat in it
        args = (start - PROXY_REPEAT_MS, end, cid, kind)
        rows = conn.execute(HOUR_HITS_SQL, args).fetchall()
        memory = ProxyMemory()
        acc = Accumulator(spec)
        for row in rows:
            if row[METHOD] == "HEAD" or memory.repeat(row) or row[TS] < start:
                continue
            acc.add(row)
        write_cells(conn, acc.cells)


def rebuild(conn: sqlite3.Connection, spec: Spec) -> int:
    """Every cell anew from every stored hit, in stored order (the caller's transaction);
    the rollups are then complete. The number of hits read."""
    conn.execute("DELETE FROM rollups")
    conn.execute("DELETE FROM rollup_sums")
    memory = ProxyMemory()
    last, read = 0, 0
    while True:
        rows = conn.execute(CHUNK_SQL, (last, REBUILD_CHUNK)).fetchall()
        if not rows:
            break
        acc = Accumulator(spec)
        for row in rows:
            if row[1 + METHOD] == "HEAD" or memory.repeat(row, 1):
                continue
            acc.add(row, 1)
        write_cells(conn, acc.cells)
        last, read = rows[-1][0], read + len(rows)
    conn.execute("UPDATE rollup_state SET complete = 1")
    return read
