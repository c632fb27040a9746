"""The PostgreSQL store's privacy work: the daily salts.

A deleted row stays in its table file as a dead tuple until VACUUM, and in the write-ahead
log until its segments are recycled. The salts table is tiny, so once a salt is destroyed it
is rewritten whole (``VACUUM FULL``: a new file; the old one is unlinked), which leaves the
salt only in WAL segments, until PostgreSQL recycles them (``max_wal_size``) and in any WAL
archive or base backup the operator keeps (docs/privacy.md).
"""

from __future__ import annotations

from typing import Any

from ..rollup import Spec, recounts
from . import pg_rollups
from .pg_purge import PARTITIONS_SQL, spans
from .privacy_sql import redactions, salt_sql
from .sql import numbered

SALTS = salt_sql(numbered)


async def day_salt(conn: Any, day: int, offered: bytes, keep_from: int) -> bytes:
    """The salt of ``day`` (``offered`` if it had none); the salts before ``keep_from``
    destroyed."""
    async with conn.transaction():
        await conn.execute(SALTS.offer, day, offered)
        destroyed = await conn.execute(SALTS.destroy, keep_from)
        salt: bytes = await conn.fetchval(SALTS.read, day)
    if destroyed != "DELETE 0":
        await conn.execute("VACUUM FULL salts")
    return bytes(salt)


async def erase_subject(
    conn: Any, uid: str, where: str, args: list[str], spec: Spec, timeout: float
) -> tuple[int, int]:
    """Delete a data subject's hits (``where``, erasure.py), replace the uid where other hits
    mention it, and recompute the rollup cells of both, in one transaction; then vacuum what
    held them. After it the old rows' bytes may stay in the pages' free space until
    overwritten, and in WAL segments until recycled (docs/privacy.md). (deleted, redacted)"""
    async with conn.transaction():
        found = await conn.fetch(f"SELECT ts, cid, kind FROM hits WHERE {where}", *args)  # noqa: S608
        await conn.execute(f"DELETE FROM hits WHERE {where}", *args)  # noqa: S608
        mentioned: set[tuple[Any, ...]] = set()
        for select, update, values in redactions(uid, sqlite=False):
            mentioned.update(tuple(row) for row in await conn.fetch(select, values[0]))
            await conn.execute(update, *values)
        touched = [(int(ts), cid, kind) for ts, cid, kind in [*found, *mentioned]]
        since = await pg_rollups.horizon(conn)
        await pg_rollups.recompute(conn, spec, recounts(spec, touched, since), timeout)
    if touched:
        names = [row[0] for row in await conn.fetch(PARTITIONS_SQL)]
        stamps = [ts for ts, _, _ in touched]
        held = {name for name, s, e in spans(names) if any(s <= ts < e for ts in stamps)}
        for name in [*sorted(held | {"hits_default"}), "rollups", "rollup_sums"]:
            await conn.execute(f'VACUUM (ANALYZE) "{name}"')
    return len(found), len(mentioned)
