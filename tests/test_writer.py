"""The group-commit writer: batching, acknowledgement, bounds, outages and the drain."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest

from pixel_server.hits import Hit
from pixel_server.metrics import Metrics
from pixel_server.store.memory import MemoryStore
from pixel_server.writer import Writer

from conftest import closing_line, until


def hit(i: int, kind: str = "view") -> Hit:
    return Hit(ts=i, kind=kind, eid=f"e{i}")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class GatedStore(MemoryStore):
    """A MemoryStore whose writes wait for ``gate``; ``entered`` is set once one is waiting,
    so a test knows (by an event, not a sleep) that the writer is inside a write."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        self.entered.set()
        return await super().write(hits, progress)

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()


async def test_future_resolves_only_after_commit() -> None:
    """A submitted hit's future is pending until the store has written it."""
    store = GatedStore()
    async with Writer(store, Metrics()) as writer:
        future = writer.submit(hit(1))
        assert future is not None
        await store.entered.wait()
        assert not future.done()
        assert store.rows == []
        store.release()
        assert await future is True
        assert len(store.rows) == 1


async def test_batches_grow_while_a_commit_is_in_flight() -> None:
    """Hits arriving during a slow commit are written together in the next transaction."""
    store = GatedStore()
    async with Writer(store, Metrics()) as writer:
        first = writer.submit(hit(0))
        await store.entered.wait()  # the writer is now blocked inside the first write
        rest = [writer.submit(hit(i)) for i in range(1, 501)]
        store.release()
        await asyncio.gather(*[f for f in (first, *rest) if f is not None])
    assert store.batches == [1, 500]


async def test_batch_size_is_capped() -> None:
    """No transaction holds more than batch_max hits."""
    store = MemoryStore()
    store.gate = asyncio.Event()
    async with Writer(store, Metrics(), batch_max=100) as writer:
        futures = [writer.submit(hit(i)) for i in range(350)]
        store.gate.set()
        await asyncio.gather(*[f for f in futures if f is not None])
    assert max(store.batches) == 100
    assert sum(store.batches) == 350


async def test_full_queue_drops_and_counts_exactly() -> None:
    """Past queue_max, submit refuses the hit and the drop counter says how many."""
    store = MemoryStore()
    store.gate = asyncio.Event()
    metrics = Metrics()
    async with Writer(store, metrics, queue_max=10) as writer:
        results = [writer.submit(hit(i)) for i in range(25)]
        accepted = [f for f in results if f is not None]
        assert len(accepted) == 10
        assert writer.saturated
        store.gate.set()
        await asyncio.gather(*accepted)
    assert sample(metrics, "pixel_hits_dropped_total", kind="view", reason="queue_full") == 15
    assert len(store.rows) == 10


async def test_outage_releases_waiters_after_ack_timeout_then_stores_everything() -> None:
    """While the store is down, requests are answered after ack_timeout; hits are kept and
    written once it is back."""
    store = MemoryStore()
    store.down = True
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    async with Writer(store, metrics, ack_timeout=0.2) as writer:
        submitted = loop.time()
        futures = [writer.submit(hit(i)) for i in range(50)]
        # the store stays down, so only the release can answer them: the 30 s deadline turns
        # a missing release into a failure and does not bound how fast a busy machine is
        done = await asyncio.wait_for(
            asyncio.gather(*[f for f in futures if f is not None]), timeout=30
        )
        assert done == [False] * 50  # answered, not yet committed
        # ... and not before the ack timeout (a lower bound: load only makes it later; 1 ms
        # for asyncio firing a timer up to its clock resolution early)
        assert loop.time() - submitted >= 0.2 - 0.001
        assert not writer.healthy
        assert sample(metrics, "pixel_store_errors_total") >= 1
        store.down = False
        await until(lambda: len(store.rows) == 50, "the hits were not written after the outage")
        assert writer.healthy
    assert sorted(row["eid"] for row in store.rows) == sorted(f"e{i}" for i in range(50))


async def test_close_drains_every_queued_hit() -> None:
    """aclose writes everything still queued before returning."""
    store = MemoryStore()
    writer = Writer(store, Metrics())
    writer.start()
    for i in range(1000):
        writer.submit(hit(i))
    await writer.aclose()
    assert len(store.rows) == 1000
    await writer.aclose()  # idempotent


async def test_drain_deadline_counts_and_logs_what_could_not_be_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the store stays down past drain_timeout, the unwritten hits are counted as lost,
    and the final flush line says how many were left."""
    store = MemoryStore()
    store.down = True
    metrics = Metrics()
    writer = Writer(store, metrics, drain_timeout=0.3)
    writer.start()
    for i in range(7):
        writer.submit(hit(i))
    assert await closing_line(writer, caplog) == (
        "final flush done: 0 hits written (0 to the store, 0 to the spill journal), "
        "7 left unwritten; 0 stored by this worker in all"
    )
    assert sample(metrics, "pixel_hits_dropped_total", kind="view", reason="shutdown") == 7


async def test_final_flush_log_counts_what_the_flush_wrote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'final flush done' gives the hits written by the flush itself, then the lifetime total."""
    writer = Writer(MemoryStore(), Metrics())
    writer.start()
    earlier = [writer.submit(hit(i)) for i in range(3)]
    await asyncio.gather(*[f for f in earlier if f is not None])
    for i in range(3, 7):  # queued, and not written before aclose: nothing has awaited since
        writer.submit(hit(i))
    assert await closing_line(writer, caplog) == (
        "final flush done: 4 hits written (4 to the store, 0 to the spill journal), "
        "0 left unwritten; 7 stored by this worker in all"
    )


async def test_submit_after_close_is_refused_and_counted() -> None:
    """Nothing is accepted once the writer is closing."""
    metrics = Metrics()
    writer = Writer(MemoryStore(), metrics)
    writer.start()
    await writer.aclose()
    assert writer.submit(hit(1)) is None
    assert sample(metrics, "pixel_hits_dropped_total", kind="view", reason="closing") == 1


class PickyStore(MemoryStore):
    """Refuses (not an outage) any batch containing eid 'poison'."""

    async def write(
        self, hits: Sequence[Hit], progress: tuple[str, int] | None = None
    ) -> Counter[str]:
        if any(h.eid == "poison" for h in hits):
            raise ValueError("row refused")
        return await super().write(hits, progress)


async def test_a_refused_row_is_isolated_and_the_rest_stored() -> None:
    """One bad row does not block its batch: the others are stored, it is dropped and counted."""
    store = PickyStore()
    store.gate = asyncio.Event()
    metrics = Metrics()
    async with Writer(store, metrics) as writer:
        futures = [writer.submit(hit(i)) for i in range(3)]
        futures.append(writer.submit(Hit(ts=0, kind="view", eid="poison")))
        store.gate.set()
        results = await asyncio.gather(*[f for f in futures if f is not None])
    assert results == [True, True, True, False]
    assert len(store.rows) == 3
    assert sample(metrics, "pixel_hits_dropped_total", kind="view", reason="rejected") == 1


@pytest.mark.parametrize("kind", ["view", "open", "click"])
async def test_stored_and_duplicates_are_counted_by_kind(kind: str) -> None:
    """pixel_hits_stored counts new rows; a repeated eid counts as a duplicate instead."""
    metrics = Metrics()
    async with Writer(MemoryStore(), metrics) as writer:
        for _ in range(3):
            future = writer.submit(hit(1, kind))
            assert future is not None
            await future
    assert sample(metrics, "pixel_hits_stored_total", kind=kind) == 1
    assert sample(metrics, "pixel_hits_duplicate_total", kind=kind) == 2
