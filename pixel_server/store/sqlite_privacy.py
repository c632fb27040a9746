"""The SQLite store's privacy work: the daily salts, and leaving no deleted bytes behind.

Every write connection runs with ``PRAGMA secure_delete = ON`` (sqlite.connect): what a
statement deletes is overwritten with zeros in its page, and a page that becomes free is
zeroed. The old page versions still sit in the write-ahead log until a checkpoint copies the
new ones into the database file; :func:`truncate_wal` does that and empties the log, so the
bytes are gone from both files.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from .privacy_sql import salt_sql

log = logging.getLogger("pixel_server")
SALTS = salt_sql()
CHECKPOINT_TRIES = 50
CHECKPOINT_PAUSE_S = 0.02


def day_salt(
    conn: sqlite3.Connection, day: int, offered: bytes, keep_from: int
) -> tuple[bytes, int]:
    """In the caller's transaction: the salt of ``day`` (``offered`` if it had none) and how
    many salts of days before ``keep_from`` were destroyed."""
    conn.execute(SALTS.offer, (day, offered))
    destroyed = conn.execute(SALTS.destroy, (keep_from,)).rowcount
    row = conn.execute(SALTS.read, (day,)).fetchone()
    return bytes(row[0]), destroyed


def truncate_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoint the whole log into the database file and truncate it to zero bytes; True
    if done. A reader still on an older snapshot blocks it: retried for about a second."""
    for _ in range(CHECKPOINT_TRIES):
        busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(CHECKPOINT_PAUSE_S)
    log.warning("the write-ahead log could not be truncated: a reader kept it busy")
    return False
