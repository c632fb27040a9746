"""Versioned schema migrations for PostgreSQL, and the monthly partitions of ``hits``.

Migrations are tracked in ``pixel_schema`` and run under a transaction-scoped advisory lock:
when several instances start together, one applies them and the others, waiting on the lock,
then find the schema current and do nothing. ``pixel-server migrate`` runs the same code.

``hits`` is partitioned by month of ``ts`` (declarative range partitioning on epoch
milliseconds). A unique index on a partitioned table must contain the partition key, so
deduplication by ``(kind, eid)`` lives in its own table, ``hit_eids``, claimed in the same
statement as the insert (store/postgres.py). Partitions are created ahead of time (this month
and the next ``MONTHS_AHEAD``) at every start and once a day by the store; a default partition
catches anything outside them, so an insert never fails for want of a partition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# pg_advisory_xact_lock key: "pixel_sv" as 8 bytes, so it cannot collide with another app's
# small integers
LOCK_KEY = int.from_bytes(b"pixel_sv", "big") - (1 << 63)
MONTHS_AHEAD = 3
PARTITION_PREFIX = "hits_"

# (column, ts, id) per selective equality filter, as SQLite's migration 3 (schema.py): each
# yields `ORDER BY ts DESC, id DESC` for one value; partial, so a hit pays only for the
# columns it has. Spelled out: a released migration never changes.
SPARSE_COLUMNS = ("cid", "event", "eid", "uid", "sid", "utm_term", "utm_id")
FILTER_INDEXES = "\n".join(
    f"CREATE INDEX hits_{column}_ts ON hits ({column}, ts, id) WHERE {column} IS NOT NULL;"
    for column in SPARSE_COLUMNS
)

MIGRATIONS: tuple[str, ...] = (
    # 1: the hit log (the columns of SQLite's, in the same order), dedup, spill replay
    f"""
    CREATE SEQUENCE hits_id_seq AS bigint;
    CREATE TABLE hits (
        id bigint NOT NULL DEFAULT nextval('hits_id_seq'),
        ts bigint NOT NULL,
        kind text NOT NULL,
        event text, eid text, cid text, uid text, sid text, url text, ref text,
        utm_source text, utm_medium text, utm_campaign text, utm_term text, utm_content text,
        utm_id text,
        params text,
        referer text,
        ip text,
        ua text, browser text, browser_version text, os text, os_version text, device text,
        is_bot smallint NOT NULL DEFAULT 0,
        dnt smallint NOT NULL DEFAULT 0,
        gpc smallint NOT NULL DEFAULT 0,
        method text NOT NULL,
        flags text
    ) PARTITION BY RANGE (ts);
    ALTER SEQUENCE hits_id_seq OWNED BY hits.id;
    CREATE TABLE hits_default PARTITION OF hits DEFAULT;
    CREATE INDEX hits_ts ON hits (ts, id);
    {FILTER_INDEXES}
    CREATE TABLE hit_eids (
        kind text NOT NULL,
        eid text NOT NULL,
        ts bigint NOT NULL,
        PRIMARY KEY (kind, eid)
    );
    CREATE INDEX hit_eids_ts ON hit_eids (ts);
    CREATE TABLE spill_replay (journal text PRIMARY KEY, "offset" bigint NOT NULL);
    CREATE TABLE write_batches (id uuid PRIMARY KEY, ts bigint NOT NULL, added jsonb NOT NULL);
    CREATE INDEX write_batches_ts ON write_batches (ts);
    """,
    # 2: the store's own id (a copy's source is known by it under any URL), and how far each
    # copy into this store has come (committed with the copied rows: storecopy.py)
    """
    CREATE TABLE store_identity (id text NOT NULL);
    INSERT INTO store_identity (id) VALUES (replace(gen_random_uuid()::text, '-', ''));
    CREATE TABLE copy_progress (
        source text PRIMARY KEY,
        shown text NOT NULL,
        last_ts bigint NOT NULL,
        last_id bigint NOT NULL,
        copied bigint NOT NULL
    );
    """,
    # 3: an event's number within its session (POST /e): the loss report reads gaps in it
    """
    ALTER TABLE hits ADD COLUMN seq integer;
    """,
    # 4: API keys (apikeys.py): the hash of each secret, never the secret
    """
    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        scopes text NOT NULL,
        hash text NOT NULL,
        created_ms bigint NOT NULL,
        revoked_ms bigint
    );
    """,
    # 5: events answered "duplicate" (a retry, stored once), per UTC day and campaign, for
    # the loss report (loss.py): counted in the transaction that found them
    """
    CREATE TABLE event_duplicates (
        day integer NOT NULL,
        cid text NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (day, cid)
    );
    """,
    # 6: the traffic class of each hit, its reasons and the rules' version (traffic.py)
    """
    ALTER TABLE hits ADD COLUMN traffic text;
    ALTER TABLE hits ADD COLUMN traffic_reasons text;
    ALTER TABLE hits ADD COLUMN traffic_rules text;
    """,
    # 7: a wrapped email's send: when it was sent (epoch ms) and its message id (payload.py)
    """
    ALTER TABLE hits ADD COLUMN sent_ts bigint;
    ALTER TABLE hits ADD COLUMN msg text;
    """,
    # 8: the clicks by time, for the burst pass (burstpass.py reads the last minute's clicks
    # every few seconds); partial, so no other hit pays for it
    """
    CREATE INDEX hits_click_ts ON hits (ts, id) WHERE kind = 'click';
    """,
    # 9: revoked links, campaigns and targets (revocations.py), checked at each click
    """
    CREATE TABLE revocations (
        id text PRIMARY KEY,
        kind text NOT NULL,
        link text, cid text, target text,
        reason text NOT NULL,
        offer_continue boolean NOT NULL,
        created_ms bigint NOT NULL
    );
    """,
    # 10: the rollups (rollup.py), as SQLite's migration 12: counted hits per cell, a
    # HyperLogLog sketch of their uids, sums of numeric event parameters, the report zone
    """
    CREATE TABLE rollups (
        cid text NOT NULL, dim text NOT NULL, slot integer NOT NULL, kind text NOT NULL,
        event text NOT NULL, traffic text NOT NULL, value text NOT NULL,
        n bigint NOT NULL,
        uniques bytea,
        PRIMARY KEY (dim, cid, slot, kind, event, traffic, value)
    );
    CREATE TABLE rollup_sums (
        cid text NOT NULL, dim text NOT NULL, slot integer NOT NULL, kind text NOT NULL,
        event text NOT NULL, traffic text NOT NULL, value text NOT NULL, param text NOT NULL,
        total double precision NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (dim, cid, slot, kind, event, traffic, value, param)
    );
    CREATE TABLE rollup_state (complete boolean NOT NULL, zone text);
    INSERT INTO rollup_state (complete) SELECT NOT EXISTS (SELECT 1 FROM hits);
    """,
    # 11: requests refused before they became a hit, as SQLite's migration 13
    """
    CREATE TABLE rejects (
        day integer NOT NULL, kind text NOT NULL, reason text NOT NULL, n bigint NOT NULL,
        PRIMARY KEY (day, kind, reason)
    );
    """,
    # 12: privacy, as SQLite's migration 14: the daily visitor hash, the daily salts, the
    # purge's progress, the admin log
    """
    ALTER TABLE hits ADD COLUMN visitor text;
    CREATE TABLE salts (day integer PRIMARY KEY, salt bytea NOT NULL);
    CREATE TABLE retention_state (
        hits_before bigint, raw_before bigint, raw_fields text, horizon bigint
    );
    INSERT INTO retention_state (hits_before) VALUES (NULL);
    CREATE TABLE admin_log (
        id bigserial PRIMARY KEY, ts bigint NOT NULL, action text NOT NULL,
        actor text NOT NULL, detail text NOT NULL
    );
    CREATE INDEX admin_log_ts ON admin_log (ts);
    """,
)

CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS pixel_schema (version integer NOT NULL, applied_ms bigint)"
)


def month_start_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000


def months_from(now_ms: int, count: int) -> list[tuple[int, int]]:
    """``count`` (year, month) pairs starting with the month of ``now_ms``."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    index = now.year * 12 + now.month - 1
    return [divmod(i, 12) for i in range(index, index + count)]


def partition_sql(year: int, month: int) -> str:
    """``CREATE TABLE ... PARTITION OF hits`` for one month (idempotent)."""
    month += 1  # divmod gave 0-based months
    start = month_start_ms(year, month)
    end = month_start_ms(year + month // 12, month % 12 + 1)
    name = f"{PARTITION_PREFIX}{year:04d}_{month:02d}"
    return (
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF hits FOR VALUES FROM ({start}) TO ({end})"
    )


async def migrate(conn: Any, now_ms: int) -> int:
    """Apply missing migrations and create the coming partitions; return the version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(CREATE_VERSION_TABLE)
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM pixel_schema")
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema v{version} is newer than this pixel_server "
                f"(v{len(MIGRATIONS)}); upgrade pixel_server"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO pixel_schema VALUES ($1, $2)", number, now_ms)
        await ensure_partitions(conn, now_ms)
    return len(MIGRATIONS)


def months_spanned(first_ms: int, last_ms: int) -> int:
    """How many calendar months (UTC) the span from ``first_ms`` to ``last_ms`` touches."""
    first = datetime.fromtimestamp(first_ms / 1000, UTC)
    last = datetime.fromtimestamp(last_ms / 1000, UTC)
    return max(1, (last.year - first.year) * 12 + last.month - first.month + 1)


async def ensure_partitions(conn: Any, now_ms: int, months: int = MONTHS_AHEAD + 1) -> None:
    """The partitions of ``months`` months from that of ``now_ms`` (by default this month's
    and the next MONTHS_AHEAD); the caller holds the lock or runs in a transaction that
    takes it."""
    if not conn.is_in_transaction():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await ensure_partitions(conn, now_ms, months)
        return
    for year, month in months_from(now_ms, months):
        await conn.execute(partition_sql(year, month))
