"""PostgreSQL store (asyncpg): many stateless instances writing to one database.

A batch is one statement, so one transaction and one round trip: the rows travel as one array
per column and are unnested server-side; the statement claims each ``(kind, eid)`` in
``hit_eids`` (``ON CONFLICT DO NOTHING``) and inserts only the rows whose claim succeeded, so
two instances given the same eid in the same millisecond store it once: the database's unique
constraint decides, never an in-process set. Replayed spill chunks record their journal
offset in the same statement.

Two pools: writes (the writer's batches, at most two connections) run with PostgreSQL's own
``lock_timeout`` and ``statement_timeout`` set to PIXEL_BUSY_TIMEOUT, so a locked table or a
stalled server answers with an error in that time: the statement surely rolled back, and the
store is :class:`StoreUnavailable` (the writer keeps the batch, then spills it, and retries;
the pool reconnects on the next acquire). Reads (pages, exports, counts) have their own pool
and a longer limit. A refused connect, a dropped connection, a database not accepting
connections, a read-only server: StoreUnavailable too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from .. import adminlog
from ..adminlog import AdminEntry
from ..apikeys import ApiKey
from ..bursts import Relabel, Seen
from ..hits import COLUMNS, Hit
from ..loss import LossRow, duplicate_counts, merge
from ..query import HitQuery
from ..retention import Plan, Report
from ..revocations import Revocation
from ..rollup import CellAnswer, CellQuery, Spec, recounts
from ..totals import Campaign, from_rows
from . import pg_privacy, pg_purge, pg_rollups
from . import sql as sql_text
from .base import ROW_KEYS, ROW_KIND, CopyPosition, PositionMoved, Row, StoreUnavailable
from .pgschema import ensure_partitions, migrate, months_spanned
from .privacy_sql import purge_sql, subject_where
from .rollup_sql import cell_reads
from .sql import (
    KEY_COLUMNS,
    api_key,
    relabel_args,
    revocation,
    revocation_sql,
    revocation_values,
)

log = logging.getLogger("pixel_server")

CLAIM_COLUMNS = ("kind", "eid", "ts")  # of hit_eids
_KIND, _EID, _TS = (COLUMNS.index(c) for c in CLAIM_COLUMNS)
INT_COLUMNS = frozenset(("ts", "is_bot", "dnt", "gpc", "seq", "sent_ts"))
SQL_TYPES = {"ts": "bigint", "seq": "integer", "sent_ts": "bigint"}  # the others: smallint
CONNECT_TIMEOUT = 5.0
MAINTAIN_EVERY_S = 6 * 3600  # partitions ahead, old batch records: this often

_TYPES = ", ".join(
    f"${n}::{SQL_TYPES.get(c, 'smallint') if c in INT_COLUMNS else 'text'}[]"
    for n, c in enumerate(COLUMNS, start=1)
)
_N = len(COLUMNS)
_LIST = ", ".join(COLUMNS)
_B_LIST = ", ".join(f"b.{c}" for c in COLUMNS)
# $1..$N: one array per column; WITH ORDINALITY numbers the rows so the first of several rows
# with one (kind, eid) in a batch wins, and ids follow arrival order.
_INSERT_HEAD = f"""
WITH batch AS (
    SELECT * FROM unnest({_TYPES}) WITH ORDINALITY AS b({_LIST}, n)
), firsts AS (
    SELECT DISTINCT ON (kind, eid) n, kind, eid, ts FROM batch
    WHERE eid IS NOT NULL ORDER BY kind, eid, n
), claimed AS (
    INSERT INTO hit_eids (kind, eid, ts) SELECT kind, eid, ts FROM firsts
    ON CONFLICT DO NOTHING RETURNING kind, eid
), inserted AS (
    INSERT INTO hits ({_LIST})
    SELECT {_B_LIST} FROM batch b
    WHERE b.eid IS NULL OR b.n IN (
        SELECT f.n FROM firsts f JOIN claimed c ON c.kind = f.kind AND c.eid = f.eid
    )
    ORDER BY b.n
    RETURNING kind
), added AS (
    SELECT kind, count(*) AS rows FROM inserted GROUP BY kind
)"""  # noqa: S608 - built from our own column names; every value is a parameter
# what a batch did: rows of (kind, rows added, NULL), then (NULL, NULL, n) per row of the batch
# (its ordinal) that claimed its eid now: the rows stored are these and those without an eid
_OUTCOMES = """SELECT kind, rows, NULL::bigint FROM added UNION ALL
SELECT NULL, NULL, f.n FROM firsts f JOIN claimed c ON c.kind = f.kind AND c.eid = f.eid"""
# The writer's batch is recorded in write_batches with what it added (an in-doubt commit is
# resolved by looking it up), and a replayed spill chunk's journal offset in spill_replay:
# all in one statement, one transaction.
_J = _N + 1  # $J batch id, $J+1 now (ms), $J+2 journal (NULL: not a replay), $J+3 its offset
INSERT_SQL = f"""{_INSERT_HEAD}, marker AS (
    INSERT INTO write_batches (id, ts, added)
    SELECT ${_J}::uuid, ${_J + 1}::bigint, coalesce(jsonb_object_agg(kind, rows), '{{}}')
    FROM added
), progress AS (
    INSERT INTO spill_replay (journal, "offset")
    SELECT ${_J + 2}::text, ${_J + 3}::bigint WHERE ${_J + 2}::text IS NOT NULL
    ON CONFLICT (journal) DO UPDATE SET "offset" = excluded."offset"
)
{_OUTCOMES}
"""  # noqa: S608 - as _INSERT_HEAD
# A POST /e batch (PostgresStore.write_events): the rows of the batch that claimed their eid
# now, by ordinal; a row without an eid is always new
EVENTS_SQL = f"""{_INSERT_HEAD}
{_OUTCOMES}
"""
# A chunk of `pixel-server copy` (PostgresStore.copy_in) is COPY'd into hit_eids and hits; a
# chunk with an eid that is claimed already goes through COPY_DEDUP_SQL, which keeps the first
# of each. Then its position: inserted for a copy's first chunk, else moved on from where the
# chunk continues ($6, $7), so that a second copy from the same source into this store fails
# instead of writing its chunks twice (the UPDATE waits for the other's commit, then finds the
# position moved).
COPY_DEDUP_SQL = f"{_INSERT_HEAD}\n{_OUTCOMES}"
POSITION_INSERT_SQL = (
    "INSERT INTO copy_progress (source, shown, last_ts, last_id, copied)"
    " VALUES ($1, $2, $3, $4, $5)"
)
POSITION_UPDATE_SQL = (
    "UPDATE copy_progress SET shown = $2, last_ts = $3, last_id = $4, copied = copied + $5"
    " WHERE source = $1 AND last_ts = $6 AND last_id = $7"
)
KEY_INSERT_SQL = (
    "INSERT INTO api_keys (id, name, scopes, hash, created_ms) VALUES ($1, $2, $3, $4, $5)"
)
KEYS_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"  # noqa: S608
DUPLICATES_SQL = (
    "INSERT INTO event_duplicates (day, cid, n) VALUES ($1, $2, $3)"
    " ON CONFLICT (day, cid) DO UPDATE SET n = event_duplicates.n + excluded.n"
)
KEY_REVOKE_SQL = "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL"
KEY_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"  # noqa: S608
REVOCATION_UPSERT_SQL, REVOCATIONS_SQL, REVOCATION_DELETE_SQL = revocation_sql(sql_text.numbered)
REJECTS_ADD, REJECTS_READ = sql_text.rejects_sql(sql_text.numbered)
PURGE = purge_sql(sql_text.numbered)
OUTCOME_SQL = "SELECT added FROM write_batches WHERE id = $1"
BACKEND_GONE_SQL = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1"
TERMINATE_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2"
)
BACKEND_START_SQL = "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
BATCH_RETENTION_MS = 7 * 86_400_000  # write_batches rows kept this long (only for in-doubt)

# the server answered with an error that means "not now" (the statement rolled back)
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, fast shutdown
    asyncpg.InsufficientResourcesError,  # class 53: disk full, too many connections
    asyncpg.QueryCanceledError,  # 57014: statement_timeout
    asyncpg.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.InvalidCatalogNameError,  # 3D000: the database does not exist (yet)
    asyncpg.ObjectNotInPrerequisiteStateError,  # 55000, e.g. ALLOW_CONNECTIONS false
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby, default_transaction_read_only
    # class 28: the login refused (no such role, a wrong or changed password): the rows are
    # not at fault, so they are kept (spilled) until it is put right, never dropped
    asyncpg.InvalidAuthorizationSpecificationError,
)
# no answer: the connection broke, or the client-side backstop timeout fired; a write may
# have committed (resolved by PostgresStore._resolve)
# (asyncpg raises class 08, e.g. ConnectionDoesNotExistError, itself when a connection drops)
NO_ANSWER: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)
UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, *NO_ANSWER)
READ_TIMEOUT = 60.0  # seconds a read statement may take (a count over millions of rows)
BACKSTOP = 2.0  # client-side seconds beyond the server's own statement_timeout


# compare and set, one statement for every change: each (id, ts) finds its row through the
# partitions' (ts, id) index; IS NOT DISTINCT FROM matches a NULL class too
RELABEL_SQL = """
UPDATE hits AS h SET traffic = c.cls, traffic_reasons = c.reasons, traffic_rules = c.rules,
    is_bot = c.bot
FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bigint[], $6::bigint[],
            $7::text[]) AS c(cls, reasons, rules, bot, id, ts, expected)
WHERE h.id = c.id AND h.ts = c.ts AND h.traffic IS NOT DISTINCT FROM c.expected
"""


TOUCHED_SQL = (
    "SELECT h.ts, h.cid, h.kind FROM hits h"
    " JOIN unnest($1::bigint[], $2::bigint[]) AS c(id, ts) ON h.id = c.id AND h.ts = c.ts"
)


@dataclass(frozen=True)
class _Batch:
    """A writer's batch as write() sends it: its rows, and the statement's arguments."""

    records: list[tuple[Any, ...]]
    values: tuple[Any, ...]


class PostgresStore:
    """A hit store in one PostgreSQL database, shared by any number of instances.

    A write that got no answer (the connection broke after the statement was sent, or the
    client-side backstop fired) may have committed. It is resolved before it is reported: the
    backend that ran it is terminated and awaited, so its transaction is over, and
    ``write_batches`` says whether it committed. Only when PostgreSQL cannot be reached to ask
    is a batch in doubt (``in_doubt`` counts them); it is then spilled like any failed batch,
    and its replay can store its eid-less hits a second time (hits with an eid stay
    deduplicated).
    """

    def __init__(
        self,
        dsn: str,
        pool_max: int = 4,
        statement_timeout: float = 1.0,
        spec: Spec | None = None,
    ) -> None:
        self.spec = spec or Spec()  # which event parameters the rollups keep
        self._dsn = dsn
        self._pool_max = pool_max
        self._timeout = statement_timeout
        self._writes: asyncpg.Pool | None = None
        self._reads: asyncpg.Pool | None = None
        self._maintained = 0.0
        self._backend_start: dict[int, Any] = {}  # pid -> backend_start, to terminate safely
        self.in_doubt = 0

    async def open(self) -> None:
        """Connect and migrate. Raises StoreUnavailable if PostgreSQL cannot be reached."""
        limit = str(max(1, int(self._timeout * 1000)))  # milliseconds
        try:
            # min_size 0: connections are made on demand, so an outage does not also set
            # asyncpg's pool retrying in the background (and logging each failure)
            self._writes = await self._pool(
                0, 2, {"statement_timeout": limit, "lock_timeout": limit}, self._remember
            )
            # jit off: PostgreSQL JIT-compiles a report's aggregate over the rollups (its
            # estimated cost is high), which took about a second a statement at 10M hits
            # (docs/benchmarks.md) for a query that runs in milliseconds
            reads = {"statement_timeout": str(int(READ_TIMEOUT * 1000)), "jit": "off"}
            self._reads = await self._pool(0, max(1, self._pool_max - 2), reads)
            async with self._reads.acquire(timeout=CONNECT_TIMEOUT) as conn:
                await migrate(conn, _now_ms())
                await pg_rollups.check_zone(conn, self.spec.zone)
        except UNAVAILABLE as exc:
            await self.aclose()
            raise StoreUnavailable(_describe(exc)) from exc
        self._maintained = time.monotonic()

    async def _pool(
        self, low: int, high: int, settings: dict[str, str], init: Any = None
    ) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self._dsn,
            min_size=low,
            max_size=high,
            timeout=CONNECT_TIMEOUT,
            init=init,
            server_settings={"application_name": "pixel_server", **settings},
        )

    async def _remember(self, conn: asyncpg.Connection) -> None:
        self._backend_start[conn.get_server_pid()] = await conn.fetchval(BACKEND_START_SQL)

    def _open_pool(self, pool: asyncpg.Pool | None) -> asyncpg.Pool:
        assert pool is not None, "store is not open"
        return pool

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        if not hits:
            return Counter()
        records = [hit.row() for hit in in_kind_order(hits)]
        batch = uuid.uuid4()
        journal, offset = progress if progress is not None else (None, None)
        args = _Batch(records, (*_column_arrays(records), batch, _now_ms(), journal, offset))
        pool = self._open_pool(self._writes)
        try:
            await self._maybe_maintain()
            conn = await pool.acquire(timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # nothing was sent: whatever went wrong, retry later
            raise StoreUnavailable(_describe(exc)) from exc
        pid = conn.get_server_pid()
        try:
            rows = await self._execute(conn, args)
        except UNAVAILABLE_ERRORS as exc:  # answered: rolled back
            await self._release(pool, conn)
            raise StoreUnavailable(_describe(exc)) from exc
        except asyncpg.PostgresError as exc:
            if not isinstance(exc, asyncpg.PostgresConnectionError):
                await self._release(pool, conn)
                raise  # answered: the rows themselves were refused
            # class 08 is what asyncpg raises itself for a connection lost mid-statement
            return await self._after_no_answer(pool, conn, batch, pid, exc)
        except Exception as exc:  # no answer, or the driver lost track: it may have committed
            return await self._after_no_answer(pool, conn, batch, pid, exc)
        await self._release(pool, conn)
        return Counter({kind: int(count) for kind, count in rows})

    async def write_events(self, hits: Sequence[Hit]) -> list[bool]:
        """One statement, so one transaction. Without the batch record of :meth:`write`: an
        answer lost here is StoreUnavailable (the sender retries, and the eids that did commit
        come back as duplicates)."""
        if not hits:
            return []
        records = [hit.row() for hit in hits]
        columns = _column_arrays(records)
        pool = self._open_pool(self._writes)
        timeout = self._timeout + BACKSTOP
        try:
            await self._maybe_maintain()
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                repeats = await pg_rollups.stored_repeats(conn, records, timeout)
                answer = await conn.fetch(EVENTS_SQL, *columns, timeout=timeout)
                claimed = await self._count(conn, records, repeats, answer, timeout)
                outcomes = [hit.eid is None or n in claimed for n, hit in enumerate(hits, 1)]
                counts = duplicate_counts(hits, outcomes)
                if counts:
                    values = [(day, cid, n) for (day, cid), n in counts.items()]
                    await conn.executemany(DUPLICATES_SQL, values, timeout=timeout)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        return outcomes

    async def loss_report(self, span: tuple[int, int], cid: str | None = None) -> list[LossRow]:
        async def read(conn: Any) -> list[LossRow]:
            sql, args = sql_text.loss_sessions(span, cid, sql_text.numbered)
            sessions = await conn.fetch(sql, *args)
            sql, args = sql_text.loss_duplicates(span, cid, sql_text.numbered)
            return merge(sessions, await conn.fetch(sql, *args))

        result: list[LossRow] = await self._admin(read)
        return result

    async def campaign_groups(self, cid: str, span: tuple[int, int]) -> Campaign:
        async def read(conn: Any) -> Campaign:
            if not sql_text.storable(cid):  # PostgreSQL refuses NUL in a parameter
                return Campaign([], [])
            sql, args = sql_text.campaign_groups(cid, span, sql_text.numbered)
            groups = await conn.fetch(sql, *args)
            sql, args = sql_text.campaign_reasons(cid, span, sql_text.numbered)
            return from_rows(groups, await conn.fetch(sql, *args))

        result: Campaign = await self._admin(read)
        return result

    async def add_api_key(self, key: ApiKey) -> None:
        values = (key.id, key.name, ",".join(key.scopes), key.hash, key.created_ms)
        await self._admin(lambda conn: conn.execute(KEY_INSERT_SQL, *values))

    async def api_keys(self) -> list[ApiKey]:
        rows = await self._admin(lambda conn: conn.fetch(KEYS_SQL))
        return [api_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, now_ms: int) -> ApiKey | None:
        async def revoke(conn: Any) -> Any:
            async with conn.transaction():
                await conn.execute(KEY_REVOKE_SQL, now_ms, key_id)
                return await conn.fetchrow(KEY_SQL, key_id)

        row = await self._admin(revoke)
        return None if row is None else api_key(row)

    async def add_revocation(self, rule: Revocation) -> None:
        values = revocation_values(rule)
        await self._admin(lambda conn: conn.execute(REVOCATION_UPSERT_SQL, *values))

    async def revocations(self) -> list[Revocation]:
        rows = await self._admin(lambda conn: conn.fetch(REVOCATIONS_SQL))
        return [revocation(row) for row in rows]

    async def remove_revocation(self, rule_id: str) -> Revocation | None:
        row = await self._admin(lambda conn: conn.fetchrow(REVOCATION_DELETE_SQL, rule_id))
        return None if row is None else revocation(row)

    async def _admin(self, statement: Callable[[Any], Awaitable[Any]]) -> Any:
        """One small statement on a read connection; an outage is StoreUnavailable."""
        try:
            async with self._open_pool(self._reads).acquire(timeout=CONNECT_TIMEOUT) as conn:
                return await statement(conn)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def copy_in(
        self,
        rows: Sequence[Row],
        position: CopyPosition,
        previous: Awaitable[object] | None = None,
    ) -> Counter[str]:
        """One transaction: the claims of the chunk's eids ``COPY``'d into hit_eids, the rows
        into hits (binary ``COPY``: 40% less of the server's CPU than the unnest statement,
        and an eighth of ours: bench/copyrate.py), the position. An eid already claimed, or twice in
        the chunk, undoes the COPYs (a savepoint); the chunk then goes through COPY_DEDUP_SQL,
        which keeps the first of each. The position is written once ``previous`` is done: the
        rows of this chunk are sent and processed on the second write connection while the
        chunk before commits.

        An answer lost here is not resolved: the chunk committed if and only if
        :meth:`copy_position` shows its last row."""
        records = [row[1:] for row in rows]  # (id, *COLUMNS) -> COLUMNS
        timeout = self._timeout + BACKSTOP
        pool = self._open_pool(self._writes)
        try:
            conn = await pool.acquire(timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # nothing was sent: whatever went wrong, retry later
            raise StoreUnavailable(_describe(exc)) from exc
        try:
            async with conn.transaction():
                repeats = await pg_rollups.stored_repeats(conn, records, timeout)
                try:
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            "hit_eids",
                            records=claims_of(records),
                            columns=CLAIM_COLUMNS,
                            timeout=timeout,
                        )
                        await conn.copy_records_to_table(
                            "hits", records=records, columns=COLUMNS, timeout=timeout
                        )
                    added = Counter(row[ROW_KIND] for row in rows)
                    answer: Sequence[Any] = [(None, None, n) for n in range(1, len(records) + 1)]
                except asyncpg.UniqueViolationError:
                    args = _column_arrays(records)
                    answer = await conn.fetch(COPY_DEDUP_SQL, *args, timeout=timeout)
                    added = Counter({k: int(n) for k, n, _ in answer if k is not None})
                if previous is not None:
                    await previous  # its failure rolls this chunk back
                # the rollups once the chunk before has committed: the two share cells, and
                # this one's upserts would wait on that one's row locks meanwhile
                await self._count(conn, records, repeats, answer, timeout)
                await _advance(conn, position, added.total(), timeout)
            return added
        except NO_ANSWER as exc:
            self._discard(conn)  # never reuse a connection in an unknown state
            raise StoreUnavailable(_describe(exc)) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        finally:
            await self._release(pool, conn)

    async def copy_position(self, source: str) -> CopyPosition | None:
        sql = "SELECT shown, last_ts, last_id, copied FROM copy_progress WHERE source = $1"
        row = await self._read(lambda conn: conn.fetchrow(sql, source))
        if row is None:
            return None
        shown, ts, row_id, copied = row
        return CopyPosition(source, shown, (int(ts), int(row_id)), int(copied))

    async def store_id(self) -> str:
        return str(await self._read(lambda conn: conn.fetchval("SELECT id FROM store_identity")))

    async def prepare_span(self, first_ms: int, last_ms: int) -> None:
        """The monthly partitions of every month from ``first_ms`` to ``last_ms``, so that
        copied history does not all land in the default partition."""
        months = months_spanned(first_ms, last_ms)
        await self._read(lambda conn: ensure_partitions(conn, first_ms, months))

    async def _after_no_answer(
        self, pool: asyncpg.Pool, conn: Any, batch: uuid.UUID, pid: int, exc: Exception
    ) -> Counter[str]:
        """The statement was sent and its answer lost: close the connection, then find out
        whether the batch committed (its counts) or not (StoreUnavailable, retried)."""
        self._discard(conn)
        await self._release(pool, conn)  # a closed connection: the pool replaces it
        outcome = await self._resolve(batch, pid)
        if outcome is None:
            raise StoreUnavailable(_describe(exc)) from exc
        return outcome

    async def _execute(self, conn: Any, args: _Batch) -> list[Any]:
        """Write one batch, its rollups in the same transaction; rows of (kind, added) (a
        seam for the tests of a lost answer)."""
        timeout = self._timeout + BACKSTOP
        async with conn.transaction():
            repeats = await pg_rollups.stored_repeats(conn, args.records, timeout)
            answer = await conn.fetch(INSERT_SQL, *args.values, timeout=timeout)
            await self._count(conn, args.records, repeats, answer, timeout)
        return [(kind, n) for kind, n, _ in answer if kind is not None]

    async def _count(
        self,
        conn: Any,
        records: Sequence[Sequence[Any]],
        repeats: Sequence[bool],
        answer: Sequence[Any],
        timeout: float,
    ) -> set[int]:
        """Add the rows of ``records`` that ``answer`` (_OUTCOMES) says were stored to the
        rollups; the ordinals (from 1) of the rows that claimed their eid."""
        claimed = {int(n) for kind, _, n in answer if kind is None}
        fresh = [
            (row, repeat)
            for n, (row, repeat) in enumerate(zip(records, repeats, strict=True), start=1)
            if row[_EID] is None or n in claimed
        ]
        rows = [row for row, _ in fresh]
        await pg_rollups.add(conn, self.spec, rows, [r for _, r in fresh], timeout)
        return claimed

    async def _release(self, pool: asyncpg.Pool, conn: Any) -> None:
        """Give ``conn`` back; one that cannot be reset is closed (the pool makes another)."""
        try:
            await pool.release(conn, timeout=CONNECT_TIMEOUT)
        except Exception:  # any failure here only costs this connection
            self._discard(conn)
            with contextlib.suppress(Exception):
                await pool.release(conn, timeout=CONNECT_TIMEOUT)

    def _discard(self, conn: Any) -> None:
        """Close ``conn`` for good: its state is unknown (never reuse it)."""
        with contextlib.suppress(Exception):
            conn.terminate()

    async def _resolve(self, batch: uuid.UUID, pid: int) -> Counter[str] | None:
        """What the write of ``batch`` on backend ``pid`` did: its counts if it committed, None
        if it did not (or cannot be known now: counted in ``in_doubt``)."""
        started = self._backend_start.pop(pid, None)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + self._timeout + BACKSTOP):
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
                try:
                    if started is not None:
                        await conn.execute(TERMINATE_SQL, pid, started)
                    while not await conn.fetchval(BACKEND_GONE_SQL, pid):
                        await asyncio.sleep(0.005)
                    added = await conn.fetchval(OUTCOME_SQL, batch)
                finally:
                    await conn.close()
        except Exception:  # whatever stops the lookup leaves the batch in doubt
            self.in_doubt += 1
            log.warning("a write to PostgreSQL is in doubt (it may have committed): spilled")
            return None
        if added is None:
            return None  # it rolled back: the caller retries or spills, no duplicate
        return Counter({kind: int(n) for kind, n in json.loads(added).items()})

    async def _maybe_maintain(self) -> None:
        """Now and then: create the coming months' partitions, forget old batch records."""
        if time.monotonic() - self._maintained < MAINTAIN_EVERY_S:
            return
        self._maintained = time.monotonic()
        async with self._open_pool(self._reads).acquire(timeout=CONNECT_TIMEOUT) as conn:
            await ensure_partitions(conn, _now_ms())
            await conn.execute(
                "DELETE FROM write_batches WHERE ts < $1", _now_ms() - BATCH_RETENTION_MS
            )

    async def spill_offset(self, journal: str) -> int:
        sql = 'SELECT "offset" FROM spill_replay WHERE journal = $1'
        value = await self._read(lambda conn: conn.fetchval(sql, journal))
        return int(value or 0)

    async def forget_spill(self, journal: str) -> None:
        sql = "DELETE FROM spill_replay WHERE journal = $1"
        await self._read(lambda conn: conn.execute(sql, journal))

    async def query(self, query: HitQuery) -> list[dict[str, Any]]:
        return [dict(zip(ROW_KEYS, row, strict=True)) for row in await self.query_rows(query)]

    async def query_rows(self, query: HitQuery) -> list[Sequence[Any]]:
        """asyncpg Records: sequences in ROW_KEYS order (the SELECT's column order)."""
        sql, args = sql_text.page(query, sql_text.numbered)
        rows: list[Sequence[Any]] = await self._read(lambda conn: conn.fetch(sql, *args))
        return rows

    async def count(self, query: HitQuery) -> int:
        sql, args = sql_text.count(query, sql_text.numbered)
        return int(await self._read(lambda conn: conn.fetchval(sql, *args)))

    async def count_by_kind(self, query: HitQuery) -> Counter[str]:
        sql, args = sql_text.count_by_kind(query, sql_text.numbered)
        rows = await self._read(lambda conn: conn.fetch(sql, *args))
        return Counter({str(kind): int(n) for kind, n in rows})

    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        sql, args = sql_text.clicks_since(since_ms, limit, sql_text.numbered)
        rows = await self._read(lambda conn: conn.fetch(sql, *args))
        return [Seen._make(row) for row in rows]

    async def relabel(self, changes: Sequence[Relabel]) -> int:
        args = relabel_args(changes)
        if not args:
            return 0
        columns = [list(column) for column in zip(*args, strict=True)]
        ids, stamps = columns[4], columns[5]

        async def change(conn: Any) -> int:
            async with conn.transaction():
                touched = await conn.fetch(TOUCHED_SQL, ids, stamps)
                changed = int((await conn.execute(RELABEL_SQL, *columns)).split()[-1])
                if changed:  # not the cells before a purge's horizon (retention.py)
                    hits = [(int(ts), cid, kind) for ts, cid, kind in touched]
                    since = await pg_rollups.horizon(conn)
                    await pg_rollups.recompute(
                        conn, self.spec, recounts(self.spec, hits, since), READ_TIMEOUT
                    )
                return changed

        result: int = await self._admin(change)
        return result

    async def add_rejects(self, day: int, counts: Mapping[tuple[str, str], int]) -> None:
        values = [(day, kind, reason, n) for (kind, reason), n in counts.items()]
        await self._admin(lambda conn: conn.executemany(REJECTS_ADD, values))

    async def rejects(self, days: tuple[int, int]) -> list[tuple[int, str, str, int]]:
        rows = await self._read(lambda conn: conn.fetch(REJECTS_READ, *days))
        return [(int(d), str(k), str(r), int(n)) for d, k, r, n in rows]

    async def purge(self, plan: Plan) -> Report:
        async def run(conn: Any) -> Report:
            await conn.execute("SET statement_timeout = 0")  # a month's count, a VACUUM
            try:
                return await pg_purge.purge(conn, plan)
            finally:
                await conn.execute("RESET statement_timeout")

        result: Report = await self._admin(run)
        return result

    async def log_admin(self, ts: int, action: str, actor: str, detail: dict[str, Any]) -> None:
        encoded = adminlog.encode(detail)
        await self._admin(lambda conn: conn.execute(PURGE.log_add, ts, action, actor, encoded))

    async def admin_log(self, span: tuple[int, int], limit: int) -> list[AdminEntry]:
        rows = await self._read(lambda conn: conn.fetch(PURGE.log_read, *span, limit))
        return [adminlog.entry(row) for row in rows]

    async def subject_hits(self, uid: str) -> list[dict[str, Any]]:
        where, args = subject_where(uid, sql_text.numbered, sqlite=False)
        sql = f"SELECT {sql_text.SELECT_COLUMNS} FROM hits WHERE {where} ORDER BY ts, id"  # noqa: S608
        rows = await self._read(lambda conn: conn.fetch(sql, *args))
        return [dict(zip(ROW_KEYS, row, strict=True)) for row in rows]

    async def erase_subject(self, uid: str) -> tuple[int, int]:
        where, args = subject_where(uid, sql_text.numbered, sqlite=False)

        async def run(conn: Any) -> tuple[int, int]:
            return await pg_privacy.erase_subject(conn, uid, where, args, self.spec, READ_TIMEOUT)

        counts: tuple[int, int] = await self._admin(run)
        return counts

    async def day_salt(self, day: int, offered: bytes, keep_from: int) -> bytes:
        result: bytes = await self._admin(
            lambda conn: pg_privacy.day_salt(conn, day, offered, keep_from)
        )
        return result

    async def rebuild_rollups(self) -> int:
        async def rebuild(conn: Any) -> int:
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 0")
                return await pg_rollups.rebuild(conn, self.spec)

        result: int = await self._admin(rebuild)
        return result

    async def rollups_complete(self) -> bool:
        sql = "SELECT bool_and(complete) FROM rollup_state"
        return bool(await self._read(lambda conn: conn.fetchval(sql)))

    async def rollup_cells(self, query: CellQuery) -> CellAnswer:
        reads = cell_reads(query, sql_text.numbered)
        if reads is None:
            return CellAnswer([], [], [])

        async def read(conn: Any) -> list[list[Any]]:
            return [await conn.fetch(sql, *args) for sql, args in reads]

        answers = await self._read(read)
        return CellAnswer(answers[0], answers[1], answers[2] if len(answers) > 2 else [])

    async def schema_version(self) -> int:
        sql = "SELECT coalesce(max(version), 0) FROM pixel_schema"
        return int(await self._read(lambda conn: conn.fetchval(sql)))

    async def _read(self, run: Any) -> Any:
        try:
            async with self._open_pool(self._reads).acquire(timeout=CONNECT_TIMEOUT) as conn:
                return await run(conn)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def aclose(self) -> None:
        for name in ("_writes", "_reads"):
            pool = getattr(self, name)
            if pool is None:
                continue
            setattr(self, name, None)
            try:
                await asyncio.wait_for(pool.close(), timeout=CONNECT_TIMEOUT)
            except UNAVAILABLE:  # TimeoutError among them
                pool.terminate()


async def _advance(conn: Any, position: CopyPosition, added: int, timeout: float) -> None:
    """Record ``position`` (in the caller's transaction), if the copy stands where the chunk
    continues from; else PositionMoved."""
    head = (position.source, position.shown, *position.last, added)
    if position.after is None:
        try:
            await conn.execute(POSITION_INSERT_SQL, *head, timeout=timeout)
        except asyncpg.UniqueViolationError:
            raise PositionMoved("the copy has a position already: another copy began") from None
        return
    status = await conn.execute(POSITION_UPDATE_SQL, *head, *position.after, timeout=timeout)
    if status != "UPDATE 1":
        raise PositionMoved(f"the copy no longer stands at {position.after}")


def claims_of(records: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The hit_eids rows (CLAIM_COLUMNS) of the rows in column order that have an eid."""
    return [(r[_KIND], r[_EID], r[_TS]) for r in records if r[_EID] is not None]


def _column_arrays(records: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows in column order as one list per column, the parameters of INSERT_SQL and
    COPY_DEDUP_SQL."""
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    for record in records:
        for values, value in zip(columns, record, strict=True):
            values.append(value)
    return columns


def in_kind_order(hits: Sequence[Hit]) -> Sequence[Hit]:
    """``hits`` grouped by kind, kinds in order of first appearance, arrival order within a
    kind: the order the SQLite store inserts a batch in (one executemany per kind), so that
    the same batches give the same ids on both stores."""
    kinds = dict.fromkeys(hit.kind for hit in hits)
    if len(kinds) == 1:
        return hits
    return [hit for kind in kinds for hit in hits if hit.kind == kind]


def _describe(exc: BaseException) -> str:
    """A one-line reason for /readyz and logs (asyncpg never puts the password in it)."""
    detail = str(exc).strip() or "no detail"
    return f"PostgreSQL unavailable: {type(exc).__name__}: {detail}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
