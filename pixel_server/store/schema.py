"""Versioned schema migrations for SQLite, tracked in ``PRAGMA user_version``.

Migrations run inside ``BEGIN IMMEDIATE``: when several workers start at once, one applies them
and the others, waiting on the lock, then find the schema current and do nothing.
"""

from __future__ import annotations

import sqlite3
import time

# Waits between attempts to take the write lock: short, because another process holds it only
# for one commit (milliseconds). SQLite's own busy handler sleeps 1, 2, 5, 10, ... up to 100 ms
# between tries, which put ~100 ms p99s on two workers sharing a file.
LOCK_POLL_FIRST = 0.0002
LOCK_POLL_MAX = 0.002

# (column, ts) per selective equality filter of query.py; SQLite appends the rowid, so each
# yields `ORDER BY ts DESC, id DESC` for one value. Partial (NOT NULL): a hit pays only for the
# columns it has. `cid` has had (cid, ts) since v1. Every index costs each write: with all 12
# filters indexed the pixel spent ~11% more CPU per request (docs/benchmarks.md), so `kind`
# (4 values), utm_source/medium/campaign/content (few values, set on most email hits) and
# traffic (nine classes, most hits human; migration 8) have none: their pages walk hits_ts
# newest first and skip other rows, still without sorting.
# Spelled out, not derived from query.py: a migration must never change once released.
SPARSE_COLUMNS = ("event", "eid", "uid", "sid", "utm_term", "utm_id")
FILTER_INDEXES = "\n".join(
    f"CREATE INDEX hits_{column}_ts ON hits ({column}, ts) WHERE {column} IS NOT NULL;"
    for column in SPARSE_COLUMNS
)

MIGRATIONS: tuple[str, ...] = (
    # 1: the hit log
    """
    CREATE TABLE hits (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        event TEXT, eid TEXT, cid TEXT, uid TEXT, sid TEXT, url TEXT, ref TEXT,
        utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, utm_term TEXT, utm_content TEXT,
        utm_id TEXT,
        params TEXT,
        referer TEXT,
        ip TEXT,
        ua TEXT, browser TEXT, browser_version TEXT, os TEXT, os_version TEXT, device TEXT,
        is_bot INTEGER NOT NULL DEFAULT 0,
        dnt INTEGER NOT NULL DEFAULT 0,
        gpc INTEGER NOT NULL DEFAULT 0,
        method TEXT NOT NULL,
        flags TEXT
    );
    CREATE INDEX hits_ts ON hits (ts);
    CREATE INDEX hits_cid_ts ON hits (cid, ts);
    CREATE UNIQUE INDEX hits_eid ON hits (eid) WHERE eid IS NOT NULL;
    """,
    # 2: how far each spill journal has been replayed (committed with the replayed rows)
    """
    CREATE TABLE spill_replay (journal TEXT PRIMARY KEY, offset INTEGER NOT NULL);
    """,
    # 3: dedup per kind (an unsigned view can no longer claim the eid of a signed open or
    # click), and an index per filter so pages and exports read newest first without sorting
    f"""
    DROP INDEX hits_eid;
    CREATE UNIQUE INDEX hits_kind_eid ON hits (kind, eid) WHERE eid IS NOT NULL;
    {FILTER_INDEXES}
    """,
    # 4: the store's own id (a copy's source is known by it under any path), and how far
    # each copy into this store has come (committed with the copied rows: storecopy.py)
    """
    CREATE TABLE store_identity (id TEXT NOT NULL);
    INSERT INTO store_identity (id) VALUES (lower(hex(randomblob(16))));
    CREATE TABLE copy_progress (
        source TEXT PRIMARY KEY,
        shown TEXT NOT NULL,
        last_ts INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        copied INTEGER NOT NULL
    );
    """,
    # 5: an event's number within its session (POST /e): the loss report reads gaps in it
    """
    ALTER TABLE hits ADD COLUMN seq INTEGER;
    """,
    # 6: API keys (apikeys.py): the hash of each secret, never the secret
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    """,
    # 7: events answered "duplicate" (a retry, stored once), per UTC day and campaign, for
    # the loss report (loss.py): counted in the transaction that found them
    """
    CREATE TABLE event_duplicates (
        day INTEGER NOT NULL,
        cid TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (day, cid)
    );
    """,
    # 8: the traffic class of each hit, its reasons and the rules' version (traffic.py)
    """
    ALTER TABLE hits ADD COLUMN traffic TEXT;
    ALTER TABLE hits ADD COLUMN traffic_reasons TEXT;
    ALTER TABLE hits ADD COLUMN traffic_rules TEXT;
    """,
    # 9: a wrapped email's send: when it was sent (epoch ms) and its message id (payload.py)
    """
    ALTER TABLE hits ADD COLUMN sent_ts INTEGER;
    ALTER TABLE hits ADD COLUMN msg TEXT;
    """,
    # 10: the clicks by time, for the burst pass (burstpass.py reads the last minute's clicks
    # every few seconds); partial, so no other hit pays for it
    """
    CREATE INDEX hits_click_ts ON hits (ts) WHERE kind = 'click';
    """,
    # 11: revoked links, campaigns and targets (revocations.py), checked at each click
    """
    CREATE TABLE revocations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        link TEXT, cid TEXT, target TEXT,
        reason TEXT NOT NULL,
        offer_continue INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    """,
    # 12: the rollups (rollup.py): counted hits per cell (per UTC hour, per day of the
    # report zone), a HyperLogLog sketch of their uids, sums of numeric event parameters;
    # `complete` says whether they cover every stored hit (not when hits were stored before
    # this migration, or the report zone of the daily cells changed: `pixel-server rollups
    # rebuild` makes them so)
    """
    CREATE TABLE rollups (
        cid TEXT NOT NULL, dim TEXT NOT NULL, slot INTEGER NOT NULL, kind TEXT NOT NULL,
        event TEXT NOT NULL, traffic TEXT NOT NULL, value TEXT NOT NULL,
        n INTEGER NOT NULL,
        uniques BLOB,
        PRIMARY KEY (dim, cid, slot, kind, event, traffic, value)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_sums (
        cid TEXT NOT NULL, dim TEXT NOT NULL, slot INTEGER NOT NULL, kind TEXT NOT NULL,
        event TEXT NOT NULL, traffic TEXT NOT NULL, value TEXT NOT NULL, param TEXT NOT NULL,
        total REAL NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (dim, cid, slot, kind, event, traffic, value, param)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_state (complete INTEGER NOT NULL, zone TEXT);
    INSERT INTO rollup_state (complete) SELECT NOT EXISTS (SELECT 1 FROM hits);
    """,
    # 13: requests refused before they became a hit (a forged or expired token), per UTC day,
    # kind and reason, flushed by the server every few seconds: the audit reads them
    """
    CREATE TABLE rejects (
        day INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (day, kind, reason)
    ) WITHOUT ROWID;
    """,
    # 14: privacy (privacy.py, salts.py, retention.py, adminlog.py): each hit's daily
    # visitor hash; the daily salts, by the first UTC minute of their day in the report zone,
    # deleted once it is over; how far the purge has come (hits deleted before `hits_before`,
    # `raw_fields` cleared before `raw_before`; rollup cells before the day starting at
    # `horizon` stay as they are); the admin log
    """
    ALTER TABLE hits ADD COLUMN visitor TEXT;
    CREATE TABLE salts (day INTEGER PRIMARY KEY, salt BLOB NOT NULL);
    CREATE TABLE retention_state (
        hits_before INTEGER, raw_before INTEGER, raw_fields TEXT, horizon INTEGER
    );
    INSERT INTO retention_state (hits_before) VALUES (NULL);
    CREATE TABLE admin_log (
        id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, action TEXT NOT NULL,
        actor TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX admin_log_ts ON admin_log (ts);
    """,
)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def begin_immediate(conn: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, polling for the write lock for up to ``timeout`` seconds.

    The connection's own busy_timeout is 0 (see sqlite.connect); raises the last
    ``OperationalError`` ("database is locked") when the time is up.
    """
    deadline = time.monotonic() + timeout
    delay = LOCK_POLL_FIRST
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, LOCK_POLL_MAX)


def migrate(conn: sqlite3.Connection, lock_timeout: float = 10.0) -> int:
    """Apply missing migrations; return the resulting version."""
    begin_immediate(conn, lock_timeout)
    try:
        version = schema_version(conn)
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema v{version} is newer than this pixel_server "
                f"(v{len(MIGRATIONS)}); upgrade pixel_server"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
