"""snapshot.py: the TTL cache the redirect reads the revocations through, on a clock the test
moves (no sleeps)."""

from __future__ import annotations

import asyncio

from pixel_server.snapshot import Snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self) -> None:
        self.value = 1
        self.calls = 0
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        if self.fail:
            raise ConnectionError("store down")
        return self.value


async def test_the_first_read_starts_a_load_and_later_reads_wait_for_the_ttl() -> None:
    """Before any load the empty value answers and a background load starts; within the TTL
    no further load happens; past it, exactly one more."""
    clock, source = Clock(), Source()
    cache = Snapshot(source, 0, ttl=5.0, clock=clock)
    assert cache.current() == 0
    await cache.settled()
    assert cache.current() == 1
    source.value = 2
    clock.now += 4.9
    assert cache.current() == 1
    await cache.settled()
    assert source.calls == 1
    clock.now += 0.2
    assert cache.current() == 1  # the refresh runs in the background: this read never waits
    assert cache.current() == 1  # one refresh at a time
    await cache.settled()
    assert (cache.current(), source.calls) == (2, 2)


async def test_a_failed_load_keeps_the_last_value_and_is_retried_after_the_ttl() -> None:
    """The store down: the last value read keeps answering, nothing raises, and the load is
    tried again one TTL later (not on every read)."""
    clock, source = Clock(), Source()
    cache = Snapshot(source, 0, ttl=1.0, clock=clock)
    assert await cache.refresh()
    source.fail, source.value = True, 9
    clock.now += 1.0
    cache.current()
    await cache.settled()
    assert (cache.current(), cache.failures) == (1, 1)
    clock.now += 0.5
    cache.current()
    await cache.settled()
    assert source.calls == 2
    source.fail = False
    clock.now += 0.5
    cache.current()
    await cache.settled()
    assert (cache.current(), cache.failures, cache.loads) == (9, 1, 2)


async def test_concurrent_reads_share_one_load() -> None:
    """Many clicks at once past the TTL start one load between them."""
    clock, source = Clock(), Source()
    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return await source()

    cache = Snapshot(slow, 0, ttl=1.0, clock=clock)
    for _ in range(50):
        cache.current()
    gate.set()
    await cache.settled()
    assert (source.calls, cache.current()) == (1, 1)
