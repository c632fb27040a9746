"""Group commit for ``POST /e``: the batches of the requests that arrive while one commit runs
are written together in the next, in one transaction, and each request gets its own events'
outcomes back.

Unlike the hit writer (writer.py) nothing is queued beyond the request: when the store cannot
take a transaction, every request in it gets the StoreUnavailable and answers 503, and its
sender retries (the eids make that safe). A transaction the store refuses for another reason
is tried again one request at a time, so one bad batch cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from .hits import Hit
from .store.base import Store, StoreUnavailable

Group = tuple[Sequence[Hit], "asyncio.Future[list[bool]]"]


class EventSink:
    """Writes event batches through ``store.write_events``; use as ``async with``."""

    def __init__(self, store: Store, max_events: int = 2_000) -> None:
        self.store = store
        self.max_events = max_events  # a transaction takes whole requests up to this many
        self._queue: deque[Group] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> EventSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def write(self, hits: Sequence[Hit]) -> list[bool]:
        """Store ``hits`` in one transaction (shared with other requests'); per hit, True if
        new, False if a duplicate. Raises StoreUnavailable if they were not stored."""
        if self._closed:
            raise StoreUnavailable("shutting down")
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((hits, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="pixel-events")
        # a request cancelled here (its client gone) cancels only its future: the commit
        # goes on in the drain task, and writes its events all the same
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                groups = [self._queue.popleft()]
                total = len(groups[0][0])
                while self._queue and total + len(self._queue[0][0]) <= self.max_events:
                    total += len(self._queue[0][0])
                    groups.append(self._queue.popleft())
                await self._commit(groups)
        finally:
            self._task = None

    async def _commit(self, groups: list[Group]) -> None:
        try:
            outcomes = await self.store.write_events([hit for hits, _ in groups for hit in hits])
        except StoreUnavailable as exc:
            for _, future in groups:
                _fail(future, exc)
            return
        except Exception as exc:  # the rows were refused: find whose
            if len(groups) == 1:
                _fail(groups[0][1], exc)
                return
            for group in groups:
                await self._commit([group])
            return
        start = 0
        for hits, future in groups:
            if not future.done():
                future.set_result(outcomes[start : start + len(hits)])
            start += len(hits)

    async def aclose(self) -> None:
        """Finish the commits under way and refuse new ones. Idempotent."""
        self._closed = True
        task = self._task
        if task is not None:
            await task


def _fail(future: asyncio.Future[list[bool]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
