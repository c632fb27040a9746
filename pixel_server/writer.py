"""Group-commit writer: one task owns the store's write side, fed by a bounded queue.

A request submits its hit and awaits the returned future; the writer takes everything queued
(up to ``batch_max``), writes it in one transaction, then resolves the futures. Under light
load a batch is one hit; under heavy load hits pile up during each commit and the next batch is
larger, with no timer involved. The response is sent after the future resolves, so a 200 means
the hit is committed.

Bounds and what happens past them:

* queue full (``queue_max`` hits held, in-flight batch included): ``submit`` returns None,
  the hit is counted in ``pixel_hits_dropped{reason="queue_full"}`` and the caller answers
  at once;
* store unavailable (locked, read-only, ...): the batch, and every batch after it, is appended
  to the spill journal and fsynced before the requests are answered (see spill.py); the
  journal is replayed into the store, in chunks, as soon as the store takes writes again;
* journal unusable too (disabled, full, disk error): the batch is kept in memory and retried
  with backoff; waiting requests are released after ``ack_timeout`` seconds (their hits stay
  queued and are written later, unless the process dies first);
* rows the store refuses (not an outage): written one by one, the refused ones dropped and
  counted ``reason="rejected"``;
* shutdown: :meth:`aclose` writes everything queued, retrying for up to ``drain_timeout``
  seconds; whatever is still unwritten then is logged and counted ``reason="shutdown"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence

from .hits import Hit
from .metrics import Metrics
from .spill import Spill
from .store.base import Store, StoreUnavailable

log = logging.getLogger("pixel_server.writer")

Entry = tuple[Hit, "asyncio.Future[bool]", int]
MAX_BACKOFF = 1.0


class Backoff:
    """Retry pacing for an unavailable store: 50 ms doubling to 1 s."""

    def __init__(self) -> None:
        self.delay = 0.05
        self.next_try = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def defer(self) -> None:
        self.next_try = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, MAX_BACKOFF)

    def reset(self) -> None:
        self.delay, self.next_try = 0.05, 0.0

    async def sleep(self) -> None:
        self.defer()
        await asyncio.sleep(self.next_try - time.monotonic())

    async def idle(self, wake: asyncio.Event) -> None:
        """Wait for new hits or the next retry, whichever comes first."""
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(self.next_try - time.monotonic(), 0))


class Writer:
    """Owns writes to ``store``. Use as ``async with Writer(...)``."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        queue_max: int = 50_000,
        batch_max: int = 2_000,
        ack_timeout: float = 2.0,
        drain_timeout: float = 10.0,
        spill: Spill | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.ack_timeout = ack_timeout
        self.drain_timeout = drain_timeout
        self.spill = spill
        self.healthy = True
        self.last_error: str | None = None
        self.written = 0  # hits committed by this writer (new rows and duplicates alike)
        self.journaled = 0  # hits this writer appended to the spill journal
        self._pending: deque[Entry] = deque()
        self._inflight: list[Entry] = []
        self._write_started: float | None = None  # perf_counter() of the commit in progress
        self._wake = asyncio.Event()
        self._generation = 0  # advanced by the watchdog; entries carry the one they arrived in
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._received = {
            kind: metrics.received.labels(kind) for kind in ("view", "open", "click", "event")
        }
        metrics.queue_depth.set_function(lambda: self.depth)
        metrics.spill_bytes.set_function(lambda: 0 if spill is None else spill.bytes)

    @property
    def depth(self) -> int:
        return len(self._pending) + len(self._inflight)

    @property
    def stalled_for(self) -> float:
        """Seconds the current commit has been running (0 when none is)."""
        started = self._write_started
        return 0.0 if started is None else time.perf_counter() - started

    @property
    def saturated(self) -> bool:
        return self.depth >= 0.8 * self.queue_max

    async def __aenter__(self) -> Writer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pixel-writer")
        self._watchdog = asyncio.create_task(self._release_stale(), name="pixel-writer-watchdog")

    def submit(self, hit: Hit) -> asyncio.Future[bool] | None:
        """Queue ``hit``. The future resolves True once committed, False if released unwritten."""
        if self._closing or self.depth >= self.queue_max:
            self.metrics.dropped.labels(
                hit.kind, "closing" if self._closing else "queue_full"
            ).inc()
            return None
        self._received[hit.kind].inc()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((hit, future, self._generation))
        self._wake.set()
        return future

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            replaying = self.spill is not None and self.spill.pending and not self._closing
            if not self._pending:
                if self._closing:
                    return
                if not replaying:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
            if self._pending:
                count = min(len(self._pending), self.batch_max)
                self._inflight = [self._pending.popleft() for _ in range(count)]
                stored = await self._store_or_spill(self._inflight)
                if not stored:  # neither store nor journal took it: keep it, in order
                    self._pending.extendleft(reversed(self._inflight))
                    self._inflight = []
                    await backoff.sleep()
                    continue
                self._inflight = []
            if replaying and backoff.due():
                if await self._replay_chunk():
                    backoff.reset()
                else:
                    backoff.defer()
            elif replaying and not self._pending:
                await backoff.idle(self._wake)

    async def _store_or_spill(self, batch: list[Entry]) -> bool:
        """Write ``batch`` to the store, or durably to the journal; False if neither worked."""
        spilling = self.spill is not None and self.spill.active
        if not spilling and await self._try_store(batch):
            return True
        if await self._spill(batch):
            return True
        # the journal failed too (full, disk error); the store may be back meanwhile
        return spilling and await self._try_store(batch)

    async def _try_store(self, batch: list[Entry]) -> bool:
        try:
            await self._write(batch)
        except StoreUnavailable as exc:
            self._fail(str(exc))
            return False
        except Exception as exc:  # rows refused, not an outage: isolate them
            self._fail(repr(exc))
            await self._write_one_by_one(batch)
        self.healthy = self.spill is None or not self.spill.pending
        return True

    async def _spill(self, batch: list[Entry]) -> bool:
        if self.spill is None:
            return False
        try:
            await asyncio.to_thread(self.spill.append, [hit for hit, _, _ in batch])
        except OSError as exc:
            self._fail(f"spill journal: {exc}")
            return False
        self.metrics.spilled.inc(len(batch))
        self.journaled += len(batch)
        for _, future, _ in batch:
            if not future.done():
                future.set_result(True)
        return True

    async def _replay_chunk(self) -> bool:
        """Move one chunk of the oldest journal into the store. False if the store refused."""
        spill = self.spill
        assert spill is not None
        journal = spill.next_to_replay()
        if journal is None:
            return True
        try:
            offset = spill.offset(journal)
            if offset is None:
                offset = await self.store.spill_offset(journal.name)
            hits, end = await asyncio.to_thread(journal.read, offset, self.batch_max)
            if hits:
                added = await self.store.write(hits, progress=(journal.name, end))
                self._count(hits, added)
                self.metrics.replayed.inc(len(hits))
            if spill.advanced(journal, end):
                await self.store.forget_spill(journal.name)
                log.info("spill journal %s fully replayed into the store", journal.name)
        except Exception as exc:
            self._fail(f"replay of {journal.name}: {exc}")
            return False
        self.healthy = not spill.pending
        return True

    async def _write(self, batch: Sequence[Entry]) -> None:
        self._write_started = started = time.perf_counter()
        try:
            added = await self.store.write([hit for hit, _, _ in batch])
        finally:
            self._write_started = None
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self._count([hit for hit, _, _ in batch], added)
        for _, future, _ in batch:
            if not future.done():
                future.set_result(True)

    def _count(self, hits: Sequence[Hit], added: Counter[str]) -> None:
        """Stored and duplicate counters for hits that were just committed to the store."""
        self.written += len(hits)
        offered = Counter(hit.kind for hit in hits)
        for kind, n in offered.items():
            self.metrics.stored.labels(kind).inc(added[kind])
            if added[kind] < n:
                self.metrics.duplicates.labels(kind).inc(n - added[kind])

    async def _write_one_by_one(self, batch: Sequence[Entry]) -> None:
        for entry in batch:
            while True:
                try:
                    await self._write([entry])
                    break
                except StoreUnavailable as exc:
                    self._fail(str(exc))
                    await asyncio.sleep(MAX_BACKOFF)
                except Exception:
                    log.exception("store refused a hit; dropped")
                    self.metrics.dropped.labels(entry[0].kind, "rejected").inc()
                    if not entry[1].done():
                        entry[1].set_result(False)
                    break

    def _fail(self, reason: str) -> None:
        if self.healthy:
            log.error("store write failed, will retry: %s", reason)
        self.healthy, self.last_error = False, reason
        self.metrics.store_errors.inc()

    async def _release_stale(self) -> None:
        """Answer requests whose hit has waited ``ack_timeout`` (the hit stays queued).

        Ticks every quarter timeout; an entry is released once 5 generations have begun since
        its own, i.e. after between 1 and 1.25 times ``ack_timeout``.
        """
        tick = max(self.ack_timeout / 4, 0.005)
        while True:
            await asyncio.sleep(tick)
            self._generation += 1
            oldest_allowed = self._generation - 5
            for _, future, generation in self._inflight:
                if generation <= oldest_allowed and not future.done():
                    future.set_result(False)
            for _, future, generation in self._pending:
                if generation > oldest_allowed:
                    break
                if not future.done():
                    future.set_result(False)

    async def aclose(self) -> None:
        """Write everything queued (bounded by ``drain_timeout``), then stop. Idempotent."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._closing = True
        # what this flush wrote, as opposed to the worker's lifetime totals
        stored_before, journaled_before, lost = self.written, self.journaled, 0
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.drain_timeout)
        except TimeoutError:
            task.cancel()
            lost = self.depth
            log.error("shutdown: %d queued hits could not be stored before the deadline", lost)
            for hit, future, _ in [*self._inflight, *self._pending]:
                self.metrics.dropped.labels(hit.kind, "shutdown").inc()
                if not future.done():
                    future.set_result(False)
            self._pending.clear()
            self._inflight = []
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        stored, journaled = self.written - stored_before, self.journaled - journaled_before
        log.info(
            "final flush done: %d hits written (%d to the store, %d to the spill journal), "
            "%d left unwritten; %d stored by this worker in all",
            stored + journaled,
            stored,
            journaled,
            lost,
            self.written,
        )
