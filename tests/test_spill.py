"""The spill journal: durable acknowledgement while the store is down, replay without loss
or duplicates, adoption of journals left by dead processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pixel_server.hits import Hit
from pixel_server.metrics import Metrics
from pixel_server.spill import Journal, Spill, encode
from pixel_server.store.memory import MemoryStore
from pixel_server.writer import Writer

from conftest import closing_line, until


def hit(i: int) -> Hit:
    return Hit(ts=i, kind="view", eid=f"e{i}")


async def wait_for(condition: object, timeout: float = 30.0) -> None:
    """Poll until ``condition()``; the deadline is generous: it only turns a hang into a
    failure (replay retries back off to 1 s, and the machine may be busy)."""
    assert callable(condition)
    await until(condition, "condition not met in time", timeout)


async def test_outage_acknowledges_from_the_journal_then_replays(tmp_path: Path) -> None:
    """With the store down, hits are fsynced to the journal and acknowledged as stored; when
    the store is back they are replayed into it and the journal is deleted."""
    store = MemoryStore()
    store.down = True
    spill = Spill(tmp_path / "spill", 1 << 20)
    metrics = Metrics()
    async with Writer(store, metrics, spill=spill, ack_timeout=5) as writer:
        futures = [writer.submit(hit(i)) for i in range(100)]
        # ack_timeout is 5 s and the store is down: only the journal answers True, however
        # long a busy machine takes; the deadline only catches a hang
        results = await asyncio.wait_for(
            asyncio.gather(*[f for f in futures if f is not None]), timeout=30
        )
        assert results == [True] * 100  # durable: in the journal
        [journal] = list((tmp_path / "spill").iterdir())
        assert len(journal.read_text().splitlines()) == 100
        assert not writer.healthy
        store.down = False
        await wait_for(lambda: len(store.rows) == 100)
        await wait_for(lambda: writer.healthy)
    assert sorted(row["eid"] for row in store.rows) == sorted(f"e{i}" for i in range(100))
    assert list((tmp_path / "spill").iterdir()) == []
    assert store.progress == {}
    assert metrics.registry.get_sample_value("pixel_hits_spilled_total") == 100
    assert metrics.registry.get_sample_value("pixel_hits_replayed_total") == 100
    assert metrics.registry.get_sample_value("pixel_hits_stored_total", {"kind": "view"}) == 100


async def test_hits_keep_going_to_the_journal_until_it_is_replayed(tmp_path: Path) -> None:
    """Once spilling, new hits are journaled too (in order) until the backlog is replayed."""
    store = MemoryStore()
    store.down = True
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 1 << 20)) as writer:
        first = writer.submit(hit(1))
        assert first is not None
        await first
        store.down = False
        second = writer.submit(hit(2))
        assert second is not None
        await second
        await wait_for(lambda: len(store.rows) == 2)
    assert [row["eid"] for row in store.rows] == ["e1", "e2"]


async def test_final_flush_log_counts_hits_it_sent_to_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hits the shutdown flush journals (store down) are counted as written to the journal."""
    store = MemoryStore()
    store.down = True
    spill = Spill(tmp_path, 1 << 20)
    writer = Writer(store, Metrics(), spill=spill)
    writer.start()
    for i in range(5):
        writer.submit(hit(i))
    line = await closing_line(writer, caplog)
    spill.close()
    assert line == (
        "final flush done: 5 hits written (0 to the store, 5 to the spill journal), "
        "0 left unwritten; 0 stored by this worker in all"
    )


def write_journal(path: Path, hits: list[Hit], torn: bool = False) -> None:
    data = b"".join(map(encode, hits)) + (b'{"v":2,"hit":{"ts":3,"kind":"vi' if torn else b"")
    path.write_bytes(data)


async def test_journal_of_a_dead_process_is_adopted_and_replayed(tmp_path: Path) -> None:
    """A journal nobody holds a lock on (its process died) is replayed at start-up."""
    write_journal(tmp_path / "spill-999-1.jsonl", [hit(i) for i in range(10)])
    store = MemoryStore()
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 1 << 20)):
        await wait_for(lambda: len(store.rows) == 10)
    assert not (tmp_path / "spill-999-1.jsonl").exists()


async def test_replay_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    """If replay stopped after committing some rows, those rows are not inserted again."""
    path = tmp_path / "spill-999-2.jsonl"
    hits = [Hit(ts=i, kind="view", cid="no-eid") for i in range(10)]  # no eid: no dedup help
    write_journal(path, hits)
    four_rows = sum(len(encode(h)) for h in hits[:4])
    store = MemoryStore()
    await store.write(hits[:4], progress=(path.name, four_rows))
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 1 << 20)):
        # once the journal is deleted nothing more can be replayed from it (no sleep needed)
        await wait_for(lambda: not path.exists())
    assert [row["ts"] for row in store.rows] == list(range(10))


async def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A partial line left by a crash mid-append (never acknowledged) is skipped."""
    write_journal(tmp_path / "spill-999-3.jsonl", [hit(1), hit(2)], torn=True)
    store = MemoryStore()
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 1 << 20)):
        await wait_for(lambda: not (tmp_path / "spill-999-3.jsonl").exists())
    assert [row["eid"] for row in store.rows] == ["e1", "e2"]


def test_a_live_processes_journal_is_not_adopted(tmp_path: Path) -> None:
    """A journal whose process still holds its lock is left alone."""
    mine = Journal.create(tmp_path)
    while_alive = Spill(tmp_path, 1 << 20)
    try:
        assert while_alive.backlog == []
    finally:
        mine.close()
        while_alive.close()
    after_death = Spill(tmp_path, 1 << 20)
    try:
        assert [j.path for j in after_death.backlog] == [mine.path]
    finally:
        after_death.close()


async def test_full_journal_falls_back_to_memory_and_the_ack_timeout(tmp_path: Path) -> None:
    """Past the journal's size bound, hits wait in memory; requests are released after the
    ack timeout and the hits are stored when the store returns."""
    store = MemoryStore()
    store.down = True
    async with Writer(store, Metrics(), spill=Spill(tmp_path, 10), ack_timeout=0.2) as writer:
        futures = [writer.submit(hit(i)) for i in range(5)]
        results = await asyncio.wait_for(  # a deadline for a missing release, not a bound
            asyncio.gather(*[f for f in futures if f is not None]), timeout=30
        )
        assert results == [False] * 5  # answered, not yet durable
        store.down = False
        await wait_for(lambda: len(store.rows) == 5)
