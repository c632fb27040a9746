"""A small TTL cache of something read from the store: the last copy read, refreshed in the
background once it is older than its TTL.

The redirect reads the revocations (revocations.py) through one: a click never waits on the
store, never fails because of it (the store down: the last copy read still decides, retried
every TTL), and sees a revocation made on another instance within the TTL
(``PIXEL_REVOCATIONS_TTL``). The clock is a parameter, so tests move time without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("pixel_server.snapshot")


class Snapshot(Generic[T]):
    """``value`` as ``load`` last gave it (``empty`` before the first load)."""

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        empty: T,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.value = empty
        self.ttl = ttl
        self._clock = clock
        self._loaded = -float("inf")  # clock time of the last attempt
        self._task: asyncio.Task[bool] | None = None
        self.loads = 0  # successful loads
        self.failures = 0  # failed loads (the store down): the last value kept

    def current(self) -> T:
        """The value now; if it is older than the TTL, a refresh starts in the background
        (one at a time) and the next call sees its result."""
        if self._task is None and self._clock() - self._loaded >= self.ttl:
            self._task = asyncio.get_running_loop().create_task(self._refresh_task())
        return self.value

    async def refresh(self) -> bool:
        """Load now; True if it worked (else the last value stays)."""
        self._loaded = self._clock()
        try:
            self.value = await self._load()
        except Exception as exc:  # whatever the store raises: keep serving
            self.failures += 1
            log.warning("could not refresh from the store, the last copy stands: %s", exc)
            return False
        self.loads += 1
        return True

    async def settled(self) -> None:
        """Wait for a background refresh under way, if any."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _refresh_task(self) -> bool:
        try:
            return await self.refresh()
        finally:
            self._task = None
