"""Daily salts: the secret behind the visitor hash and ``PIXEL_IP_MODE=hash``.

One random 16-byte salt per day of the report zone (PIXEL_REPORT_ZONE, so a daily unique is
a visitor of one report day), kept in the store so that every instance hashes alike, made a
day ahead and destroyed once its day is over: the store deletes it (and, on SQLite, the WAL
and freed pages holding it are overwritten; on PostgreSQL the table is rewritten), and each
server forgets it within ``REFRESH_S``. Without the salt nobody, the operator included, can
recompute a hash from an address and a user agent, so a stored hash links the visits of one
day and no more (Plausible's approach; docs/privacy.md says what it can and cannot count).

The hot path (:meth:`DaySalts.salt`) is a comparison with the day's end. If the store cannot
be reached when a day begins, a server makes a salt of its own for the day and offers it to
the store at the next refresh; the store keeps the first one it was given.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .background import every, running
from .buckets import boundaries

if TYPE_CHECKING:
    from .store.base import Store

log = logging.getLogger("pixel_server")
SALT_BYTES = 16
REFRESH_S = 60.0
MINUTE_MS = 60_000
HASH_PREFIX = "hash:"  # how PIXEL_IP_MODE=hash addresses read


def day_span(now_ms: int, zone: str) -> tuple[int, int]:
    """Start and end (epoch ms) of the report-zone day holding ``now_ms``."""
    start, end = boundaries(now_ms, now_ms + 1, "day", zone)[:2]
    return start, end


class DaySalts:
    """The salts of today and tomorrow (keyed by their day's first UTC minute)."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self._salts: dict[int, bytes] = {}
        self._start = self._end = 0
        self._current = b""

    def salt(self, now_ms: int) -> bytes:
        """The salt of the day holding ``now_ms``."""
        if self._start <= now_ms < self._end:
            return self._current
        start, end = day_span(now_ms, self.zone)
        day = start // MINUTE_MS
        salt = self._salts.get(day)
        if salt is None:  # the store has not given one (yet): ours, offered at the refresh
            salt = self._salts[day] = secrets.token_bytes(SALT_BYTES)
        self._start, self._end, self._current = start, end, salt
        return salt

    def days(self, now_ms: int) -> tuple[int, int]:
        """Today's and tomorrow's day keys."""
        start, end = day_span(now_ms, self.zone)
        return start // MINUTE_MS, end // MINUTE_MS

    async def refresh(self, store: Store, now_ms: int) -> None:
        """Agree with the store on today's and tomorrow's salts; destroy the older ones."""
        today, tomorrow = self.days(now_ms)
        for day in (today, tomorrow):
            offered = self._salts.get(day) or secrets.token_bytes(SALT_BYTES)
            self._salts[day] = await store.day_salt(day, offered, keep_from=today)
        for day in [d for d in self._salts if d < today]:
            del self._salts[day]
        self._start = self._end = 0  # the next salt() looks its day up again

    def known(self) -> dict[int, bytes]:
        return dict(self._salts)


def visitor_hash(salt: bytes, network: str | None, ua: str | None, site: str | None) -> str | None:
    """The day's hash of a visitor: its address network, user agent and campaign or site;
    None when neither an address nor an agent is known (nothing tells visitors apart)."""
    if network is None and not ua:
        return None
    data = "\x1f".join((network or "", ua or "", site or "")).encode()
    return hashlib.blake2b(data, key=salt, digest_size=8, person=b"visitor").hexdigest()


def ip_hash(salt: bytes, address: str) -> str:
    """``PIXEL_IP_MODE=hash``: the address, keyed-hashed with the day's salt."""
    digest = hashlib.blake2b(address.encode(), key=salt, digest_size=8, person=b"ip")
    return HASH_PREFIX + digest.hexdigest()


@asynccontextmanager
async def rotating(salts: DaySalts, store: Store) -> AsyncIterator[None]:
    """Refresh the salts now (a store that cannot answer: later) and every REFRESH_S."""

    async def refresh() -> None:
        try:
            await salts.refresh(store, time.time_ns() // 1_000_000)
        except Exception as exc:  # the store is down: our own salts serve until it is back
            log.warning("the daily salts could not be read from the store: %s", exc)

    await refresh()
    async with running(every(REFRESH_S, refresh), "salts"):
        yield
