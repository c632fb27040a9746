"""Versioned schema migrations for SQLite, tracked in ``PRAGMA user_version``.

Migrations run inside ``BEGIN IMMEDIATE``: when several workers start at once, one applies them
and the others, waiting on the lock, then find the schema current and do nothing.
"""

from __future__ import annotations

import sqlite3

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
)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply missing migrations; return the resulting version."""
    conn.execute("BEGIN IMMEDIATE")
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
