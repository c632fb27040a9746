"""SQLite store: WAL mode, one writer connection on its own thread, reads through aiosqlite.

Writes use the standard library driver on a dedicated single thread instead of aiosqlite, so a
whole batch (``BEGIN IMMEDIATE``, ``executemany``, ``COMMIT``) is one hop off the event loop
rather than three. ``BEGIN IMMEDIATE`` takes the write lock up front, so ``busy_timeout``
applies and several processes can share the file without surfacing "database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import compress, groupby
from operator import is_not
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .. import adminlog
from ..adminlog import AdminEntry
from ..apikeys import ApiKey
from ..bursts import Relabel, Seen
from ..files import ensure_private_file
from ..hits import COLUMNS, Hit
from ..loss import LossRow, duplicate_counts, merge
from ..query import HitQuery
from ..retention import Plan, Report
from ..revocations import Revocation
from ..rollup import KIND, CellAnswer, CellQuery, Spec, recounts
from ..totals import Campaign, from_rows
from . import sql as sql_text
from . import sqlite_privacy as privacy
from . import sqlite_purge
from . import sqlite_rollups as rollups
from .base import ROW_KEYS, CopyPosition, PositionMoved, Row, StoreUnavailable
from .privacy_sql import purge_sql, redactions, subject_where
from .rollup_sql import cell_reads
from .schema import begin_immediate, migrate, schema_version
from .sql import (
    KEY_COLUMNS,
    api_key,
    relabel_args,
    revocation,
    revocation_sql,
    revocation_values,
)

BUSY_TIMEOUT_MS = 10_000
# S608: these statements are built from our own column names and placeholders, never from input
# every column bound (bench/bigdb.py's bulk load); the store itself writes through insert_rows
INSERT_SQL = (
    f"INSERT INTO hits ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
    " ON CONFLICT DO NOTHING"
)
PROGRESS_SQL = (
    "INSERT INTO spill_replay (journal, offset) VALUES (?, ?)"
    " ON CONFLICT (journal) DO UPDATE SET offset = excluded.offset"
)
# a copy's position: inserted with its first chunk, then moved on from where each chunk
# continues (the last two parameters), so that a second copy from one source fails
POSITION_INSERT_SQL = (
    "INSERT INTO copy_progress (source, shown, last_ts, last_id, copied) VALUES (?, ?, ?, ?, ?)"
)
POSITION_UPDATE_SQL = (
    "UPDATE copy_progress SET shown = ?, last_ts = ?, last_id = ?, copied = copied + ?"
    " WHERE source = ? AND last_ts = ? AND last_id = ?"
)
KEY_INSERT_SQL = "INSERT INTO api_keys (id, name, scopes, hash, created_ms) VALUES (?, ?, ?, ?, ?)"
KEYS_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"  # noqa: S608
KEY_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"  # noqa: S608
DUPLICATES_SQL = (
    "INSERT INTO event_duplicates (day, cid, n) VALUES (?, ?, ?)"
    " ON CONFLICT (day, cid) DO UPDATE SET n = n + excluded.n"
)
_NONES = (None,) * len(COLUMNS)
EID = COLUMNS.index("eid")
REVOCATION_UPSERT_SQL, REVOCATIONS_SQL, REVOCATION_DELETE_SQL = revocation_sql()
REJECTS_ADD, REJECTS_READ = sql_text.rejects_sql()
PURGE = purge_sql()
# compare and set: `IS` matches a NULL class too (a hit stored before migration 8)
RELABEL_SQL = (
    "UPDATE hits SET traffic = ?, traffic_reasons = ?, traffic_rules = ?, is_bot = ?"
    " WHERE id = ? AND traffic IS ?"
)


def insert_rows(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert ``rows`` (values in COLUMNS order) in order, binding only the values that are
    not NULL; the number of rows added (a duplicate eid adds none: ON CONFLICT DO NOTHING).

    The driver adapts every None it binds through its adapter protocol (a tuple key, a dict
    lookup, two failed attribute lookups), and most of a row's columns are NULL: on the
    events profile that was 43k of the driver's 105k instructions a row. So each run of
    rows with the same columns set is one executemany of a statement that names only those
    (its text cached; the columns left out are NULL by default, and the ones with another
    default are never None).
    """
    added = 0
    for shape, run in groupby(rows, _shape):
        values = [tuple(compress(row, shape)) for row in run]
        added += conn.executemany(_insert_sql(shape), values).rowcount
    return added


def insert_outcomes(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
    """Insert ``rows`` in order; per row, whether it was stored (False: a duplicate eid).

    The common batch has no duplicate: one executemany stores it, and its rowcount (rows
    added) says so. Otherwise it is undone and written a statement a row: each rowcount (0
    when the (kind, eid) index refused it) is that row's outcome, first in the batch wins.
    """
    if all(row[EID] is None for row in rows):  # only an eid can be a duplicate
        insert_rows(conn, rows)
        return [True] * len(rows)
    conn.execute("SAVEPOINT batch")
    if insert_rows(conn, rows) == len(rows):
        conn.execute("RELEASE batch")
        return [True] * len(rows)
    conn.execute("ROLLBACK TO batch")
    conn.execute("RELEASE batch")
    return [insert_rows(conn, (row,)) == 1 for row in rows]


def store_counted(
    conn: sqlite3.Connection, spec: Spec, rows: Sequence[tuple[Any, ...]]
) -> list[bool]:
    """Insert ``rows`` and add the new ones to the rollups, in the caller's transaction;
    per row, whether it was stored."""
    repeats = rollups.stored_repeats(conn, rows)
    outcomes = insert_outcomes(conn, rows)
    fresh = [(row, repeat) for row, repeat, new in zip(rows, repeats, outcomes, strict=True) if new]
    rollups.add(conn, spec, [row for row, _ in fresh], [repeat for _, repeat in fresh])
    return outcomes


def _shape(row: tuple[Any, ...]) -> tuple[bool, ...]:
    return tuple(map(is_not, row, _NONES))


@cache
def _insert_sql(shape: tuple[bool, ...]) -> str:
    names = list(compress(COLUMNS, shape))
    marks = ", ".join("?" * len(names))
    return f"INSERT INTO hits ({', '.join(names)}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


KEY_REVOKE_SQL = "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL"
T = TypeVar("T")


def connect(
    path: str, synchronous: str = "FULL", busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A write connection in autocommit mode (we issue BEGIN/COMMIT ourselves).

    Its busy_timeout is 0: writers take the lock through :func:`begin_immediate`, which polls
    at millisecond intervals for up to ``busy_timeout_ms`` instead of SQLite's 100 ms naps.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 0")
    _prepare_file(conn, deadline=time.monotonic() + max(busy_timeout_ms, 5_000) / 1000)
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA secure_delete = ON")  # deleted bytes are zeroed (sqlite_privacy.py)
    return conn


def _prepare_file(conn: sqlite3.Connection, deadline: float) -> None:
    """Give a new file incremental auto-vacuum (a purge can return space, retention.py; it
    must be set before the first table) and switch to WAL, retrying both: when several
    processes open a new file at once, SQLite can answer "database is locked" at once,
    without its busy handler, to the page count read as well as to the WAL switch (measured:
    about 1 start in 150 with 8 processes), and a worker must not fail to start for that."""
    while True:
        try:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _advance(conn: sqlite3.Connection, position: CopyPosition, added: int) -> None:
    """Record ``position`` (in the caller's transaction), if the copy stands where the chunk
    continues from; else PositionMoved."""
    ts, row_id = position.last
    if position.after is None:
        try:
            conn.execute(POSITION_INSERT_SQL, (position.source, position.shown, ts, row_id, added))
        except sqlite3.IntegrityError:
            raise PositionMoved("the copy has a position already: another copy began") from None
        return
    args = (position.shown, ts, row_id, added, position.source, *position.after)
    if conn.execute(POSITION_UPDATE_SQL, args).rowcount != 1:
        raise PositionMoved(f"the copy no longer stands at {position.after}")


class SQLiteStore:
    """A hit store in one SQLite file. Safe to share between processes on one host."""

    def __init__(
        self,
        path: str,
        synchronous: str = "FULL",
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        spec: Spec | None = None,
    ) -> None:
        self.path = path
        self.spec = spec or Spec()  # which event parameters the rollups keep
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        ensure_private_file(Path(self.path))  # 0600, so SQLite's -wal and -shm are 0600 too
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixel-sqlite")
        try:
            self._conn = await self._run(
                connect, self.path, self._synchronous, self._busy_timeout_ms
            )
            await self._run(migrate, self._conn)
            rollups.register(self._conn)
            zone = self.spec.zone  # it may write: under the lock, as every write is
            await self._run(self._transaction, lambda conn: rollups.check_zone(conn, zone))
            self._reader = await aiosqlite.connect(self.path)
            await self._reader.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        except (sqlite3.OperationalError, StoreUnavailable) as exc:  # locked, read-only, I/O
            await self.aclose()
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None, "store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        by_kind: dict[str, list[tuple[Any, ...]]] = {}
        for hit in hits:
            by_kind.setdefault(hit.kind, []).append(hit.row())
        result: Counter[str] = await self._run(self._write_rows, by_kind, progress)
        return result

    async def write_events(self, hits: Sequence[Hit]) -> list[bool]:
        rows = [hit.row() for hit in hits]

        def work(conn: sqlite3.Connection) -> list[bool]:
            outcomes = store_counted(conn, self.spec, rows)
            counts = duplicate_counts(hits, outcomes)
            if counts:
                values = [(day, cid, n) for (day, cid), n in counts.items()]
                conn.executemany(DUPLICATES_SQL, values)
            return outcomes

        result: list[bool] = await self._run(self._transaction, work)
        return result

    async def add_api_key(self, key: ApiKey) -> None:
        values = (key.id, key.name, ",".join(key.scopes), key.hash, key.created_ms)
        await self._run(self._transaction, lambda conn: conn.execute(KEY_INSERT_SQL, values))

    async def api_keys(self) -> list[ApiKey]:
        rows = await self._run(lambda: self._connection.execute(KEYS_SQL).fetchall())
        return [api_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, now_ms: int) -> ApiKey | None:
        def work(conn: sqlite3.Connection) -> ApiKey | None:
            conn.execute(KEY_REVOKE_SQL, (now_ms, key_id))
            row = conn.execute(KEY_SQL, (key_id,)).fetchone()
            return None if row is None else api_key(row)

        result: ApiKey | None = await self._run(self._transaction, work)
        return result

    async def add_revocation(self, rule: Revocation) -> None:
        values = revocation_values(rule)
        await self._run(self._transaction, lambda conn: conn.execute(REVOCATION_UPSERT_SQL, values))

    async def revocations(self) -> list[Revocation]:
        assert self._reader is not None, "store is not open"
        try:
            rows = await self._reader.execute_fetchall(REVOCATIONS_SQL)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite: {exc}") from exc
        return [revocation(row) for row in rows]

    async def remove_revocation(self, rule_id: str) -> Revocation | None:
        def work(conn: sqlite3.Connection) -> Revocation | None:
            row = conn.execute(REVOCATION_DELETE_SQL, (rule_id,)).fetchone()
            return None if row is None else revocation(row)

        result: Revocation | None = await self._run(self._transaction, work)
        return result

    async def loss_report(self, span: tuple[int, int], cid: str | None = None) -> list[LossRow]:
        assert self._reader is not None, "store is not open"
        sessions = await self._reader.execute_fetchall(*sql_text.loss_sessions(span, cid))
        duplicates = await self._reader.execute_fetchall(*sql_text.loss_duplicates(span, cid))
        return merge(sessions, duplicates)

    async def campaign_groups(self, cid: str, span: tuple[int, int]) -> Campaign:
        assert self._reader is not None, "store is not open"
        if not sql_text.storable(cid):  # no stored cid holds it (and sqlite3 cannot send it)
            return Campaign([], [])
        groups = await self._reader.execute_fetchall(*sql_text.campaign_groups(cid, span))
        reasons = await self._reader.execute_fetchall(*sql_text.campaign_reasons(cid, span))
        return from_rows(groups, reasons)

    async def spill_offset(self, journal: str) -> int:
        sql = "SELECT offset FROM spill_replay WHERE journal = ?"
        row = await self._run(lambda: self._connection.execute(sql, (journal,)).fetchone())
        return int(row[0]) if row else 0

    async def forget_spill(self, journal: str) -> None:
        sql = "DELETE FROM spill_replay WHERE journal = ?"
        await self._run(self._transaction, lambda conn: conn.execute(sql, (journal,)))

    @property
    def _connection(self) -> sqlite3.Connection:
        assert self._conn is not None, "store is not open"
        return self._conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one ``BEGIN IMMEDIATE`` transaction on the write connection, committed
        if it returns; SQLite's OperationalError (locked, read-only, I/O) is StoreUnavailable."""
        conn = self._connection
        try:
            begin_immediate(conn, self._busy_timeout_ms / 1000)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreUnavailable(str(exc)) from exc
            raise
        return result

    def _write_rows(
        self, by_kind: dict[str, list[tuple[Any, ...]]], progress: tuple[str, int] | None
    ) -> Counter[str]:
        """One transaction; one executemany per kind so duplicates are counted per kind."""

        def work(conn: sqlite3.Connection) -> Counter[str]:
            ordered = [row for rows in by_kind.values() for row in rows]
            outcomes = store_counted(conn, self.spec, ordered)
            added: Counter[str] = Counter()
            for row, new in zip(ordered, outcomes, strict=True):
                added[row[KIND]] += new
            if progress is not None:
                conn.execute(PROGRESS_SQL, progress)
            return added

        return self._transaction(work)

    async def prepare_span(self, first_ms: int, last_ms: int) -> None:
        return None  # one table holds any time

    async def copy_in(
        self,
        rows: Sequence[Row],
        position: CopyPosition,
        previous: Awaitable[object] | None = None,
    ) -> Counter[str]:
        records = [row[1:] for row in rows]  # (id, *COLUMNS) -> COLUMNS
        if previous is not None:
            await previous  # one writer: nothing to overlap, and nothing written if it failed

        def work(conn: sqlite3.Connection) -> Counter[str]:
            # in arrival order (not grouped by kind as write() does), so the new ids keep the
            # source's order; new rowids are above every old one (max + 1)
            outcomes = store_counted(conn, self.spec, records)
            added: Counter[str] = Counter()
            for row, new in zip(records, outcomes, strict=True):
                added[row[KIND]] += new
            _advance(conn, position, sum(outcomes))
            return added

        result: Counter[str] = await self._run(self._transaction, work)
        return result

    async def copy_position(self, source: str) -> CopyPosition | None:
        sql = "SELECT shown, last_ts, last_id, copied FROM copy_progress WHERE source = ?"
        row = await self._run(lambda: self._connection.execute(sql, (source,)).fetchone())
        if row is None:
            return None
        shown, ts, row_id, copied = row
        return CopyPosition(source, shown, (int(ts), int(row_id)), int(copied))

    async def store_id(self) -> str:
        sql = "SELECT id FROM store_identity"
        (value,) = await self._run(lambda: self._connection.execute(sql).fetchone())
        return str(value)

    async def query(self, query: HitQuery) -> list[dict[str, Any]]:
        # plain tuples zipped with the names: 6 us a row against 10 through sqlite3.Row
        return [dict(zip(ROW_KEYS, row, strict=True)) for row in await self.query_rows(query)]

    async def query_rows(self, query: HitQuery) -> list[Sequence[Any]]:
        assert self._reader is not None, "store is not open"
        sql, args = sql_text.page(query)
        # one hop to aiosqlite's thread and back (execute, fetchall and close were three)
        rows = await self._reader.execute_fetchall(sql, args)
        return list(rows)  # the sqlite3 module's tuples, columns in ROW_KEYS order

    async def count(self, query: HitQuery) -> int:
        assert self._reader is not None, "store is not open"
        sql, args = sql_text.count(query)
        async with self._reader.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def count_by_kind(self, query: HitQuery) -> Counter[str]:
        assert self._reader is not None, "store is not open"
        sql, args = sql_text.count_by_kind(query)
        async with self._reader.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return Counter({str(kind): int(n) for kind, n in rows})

    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        assert self._reader is not None, "store is not open"
        rows = await self._reader.execute_fetchall(*sql_text.clicks_since(since_ms, limit))
        return [Seen._make(row) for row in rows]

    async def relabel(self, changes: Sequence[Relabel]) -> int:
        args = [(*head, row_id, expected) for *head, row_id, _ts, expected in relabel_args(changes)]
        if not args:
            return 0
        ids = [(change.id,) for change in changes]

        def work(conn: sqlite3.Connection) -> int:
            touched = [
                conn.execute("SELECT ts, cid, kind FROM hits WHERE id = ?", row_id).fetchone()
                for row_id in ids
            ]
            changed: int = conn.executemany(RELABEL_SQL, args).rowcount
            if changed:  # not the cells before a purge's horizon: they stay (retention.py)
                hits = [t for t in touched if t]
                rollups.recompute(conn, self.spec, recounts(self.spec, hits, rollups.horizon(conn)))
            return changed

        result: int = await self._run(self._transaction, work)
        return result

    async def add_rejects(self, day: int, counts: Mapping[tuple[str, str], int]) -> None:
        values = [(day, kind, reason, n) for (kind, reason), n in counts.items()]
        await self._run(self._transaction, lambda conn: conn.executemany(REJECTS_ADD, values))

    async def rejects(self, days: tuple[int, int]) -> list[tuple[int, str, str, int]]:
        assert self._reader is not None, "store is not open"
        rows = await self._reader.execute_fetchall(REJECTS_READ, days)
        return [(int(d), str(k), str(r), int(n)) for d, k, r, n in rows]

    async def day_salt(self, day: int, offered: bytes, keep_from: int) -> bytes:
        salt, destroyed = await self._run(
            self._transaction, lambda conn: privacy.day_salt(conn, day, offered, keep_from)
        )
        if destroyed:
            await self._run(privacy.truncate_wal, self._connection)
        result: bytes = salt
        return result

    async def purge(self, plan: Plan) -> Report:
        report: Report = await self._run(
            sqlite_purge.purge, self._transaction, self._connection, self.path, plan
        )
        return report

    async def log_admin(self, ts: int, action: str, actor: str, detail: dict[str, Any]) -> None:
        args = (ts, action, actor, adminlog.encode(detail))
        await self._run(self._transaction, lambda conn: conn.execute(PURGE.log_add, args))

    async def admin_log(self, span: tuple[int, int], limit: int) -> list[AdminEntry]:
        assert self._reader is not None, "store is not open"
        rows = await self._reader.execute_fetchall(PURGE.log_read, (*span, limit))
        return [adminlog.entry(row) for row in rows]

    async def subject_hits(self, uid: str) -> list[dict[str, Any]]:
        assert self._reader is not None, "store is not open"
        where, args = subject_where(uid, sql_text.qmark, sqlite=True)
        sql = f"SELECT {sql_text.SELECT_COLUMNS} FROM hits WHERE {where} ORDER BY ts, id"  # noqa: S608
        rows = await self._reader.execute_fetchall(sql, args)
        return [dict(zip(ROW_KEYS, row, strict=True)) for row in rows]

    async def erase_subject(self, uid: str) -> tuple[int, int]:
        where, args = subject_where(uid, sql_text.qmark, sqlite=True)

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            found = conn.execute(f"SELECT ts, cid, kind FROM hits WHERE {where}", args).fetchall()  # noqa: S608
            conn.execute(f"DELETE FROM hits WHERE {where}", args)  # noqa: S608
            mentioned: set[tuple[Any, ...]] = set()
            for select, update, values in redactions(uid, sqlite=True):
                mentioned.update(conn.execute(select, values[:1]).fetchall())
                conn.execute(update, values)
            since = rollups.horizon(conn)
            rollups.recompute(conn, self.spec, recounts(self.spec, [*found, *mentioned], since))
            return len(found), len(mentioned)

        counts: tuple[int, int] = await self._run(self._transaction, work)
        if any(counts):  # secure_delete zeroed the old bytes; now out of the WAL too
            await self._run(privacy.truncate_wal, self._connection)
        return counts

    async def rebuild_rollups(self) -> int:
        result: int = await self._run(
            self._transaction, lambda conn: rollups.rebuild(conn, self.spec)
        )
        return result

    async def rollups_complete(self) -> bool:
        assert self._reader is not None, "store is not open"
        rows = await self._reader.execute_fetchall("SELECT complete FROM rollup_state")
        return any(row[0] for row in rows)

    async def rollup_cells(self, query: CellQuery) -> CellAnswer:
        assert self._reader is not None, "store is not open"
        reads = cell_reads(query)
        if reads is None:
            return CellAnswer([], [], [])
        answers = [list(await self._reader.execute_fetchall(sql, args)) for sql, args in reads]
        return CellAnswer(answers[0], answers[1], answers[2] if len(answers) > 2 else [])

    async def schema_version(self) -> int:
        version: int = await self._run(schema_version, self._connection)
        return version

    async def aclose(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True)
