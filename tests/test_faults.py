"""Fault tests against a real server process: signals, kill -9, store outages, many writers.

Every test sends pixels with unique event ids and compares, as sets, the ids that were
answered 200 with the ids in the SQLite file afterwards.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, load

pytestmark = pytest.mark.server
SERVERS = pytest.mark.parametrize("kind", ["uvicorn", "granian"])


def stored_eids(server: ServerProcess) -> list[str]:
    return [row[0] for row in server.rows("SELECT eid FROM hits WHERE eid IS NOT NULL")]


def assert_all_stored(server: ServerProcess, acked: list[str]) -> None:
    assert acked, "the load produced no acknowledged hits"
    stored = stored_eids(server)
    assert len(stored) == len(set(stored)), "a hit was stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged hits are not stored"


def start_load(
    server: ServerProcess, clients: int, prefix: str
) -> tuple[threading.Event, threading.Thread, list[str], list[float]]:
    stop = threading.Event()
    acked: list[str] = []
    latencies: list[float] = []
    thread = threading.Thread(
        target=load, args=(server, clients, stop, prefix, acked, latencies), daemon=True
    )
    thread.start()
    return stop, thread, acked, latencies


@SERVERS
def test_sigterm_at_random_points_loses_nothing_acknowledged(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, kind: str
) -> None:
    """10 rounds: load from 6 clients, SIGTERM at a random moment; exit 0 within 10 s and
    every hit answered 200 is stored, once."""
    rng = random.Random(20261128)
    for round_no in range(10):
        db = str(tmp_path / f"r{round_no}.db")
        server = server_factory(env={"PIXEL_DB": db, "PIXEL_SERVER": kind})
        stop, thread, acked, _ = start_load(server, 6, f"r{round_no}")
        time.sleep(rng.uniform(0.2, 1.0))
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 10
        stop.set()
        thread.join(30)
        assert_all_stored(server, acked)


@SERVERS
def test_kill_9_then_restart_loses_nothing_acknowledged(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """kill -9 mid-load (every process of the server): every acknowledged hit is stored once,
    the file passes integrity_check, and the server starts again on it."""
    server = server_factory(env={"PIXEL_SERVER": kind})
    stop, thread, acked, _ = start_load(server, 6, "k")
    time.sleep(1.0)
    server.kill_all()
    stop.set()
    thread.join(30)
    assert server.rows("PRAGMA integrity_check") == [("ok",)]
    assert_all_stored(server, acked)
    again = server_factory()
    assert httpx.get(f"{again.url}/p.gif?eid=after-restart").status_code == 200
    assert again.stop() == 0
    assert "after-restart" in stored_eids(again)


@contextmanager
def exclusive_lock(db: Path) -> Iterator[None]:
    """Another program holding the SQLite write lock."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def unwritable(db: Path) -> Iterator[None]:
    """The database files cannot be written: immutable (root) or read-only (other users)."""
    files = [db, db.with_name(db.name + "-wal")]
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", *map(str, files)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    else:
        modes = [f.stat().st_mode for f in files]
        for f in files:
            f.chmod(0o444)
        try:
            yield
        finally:
            for f, mode in zip(files, modes, strict=True):
                f.chmod(mode)


def ready_status(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=5).status_code


@pytest.mark.parametrize(
    ("outage", "kind"),
    [(exclusive_lock, "uvicorn"), (unwritable, "uvicorn"), (exclusive_lock, "granian")],
    ids=["locked", "unwritable", "locked-granian"],
)
def test_store_outage_keeps_pixels_fast_and_loses_nothing(
    server_factory: Callable[..., ServerProcess],
    outage: Callable[[Path], AbstractContextManager[None]],
    kind: str,
) -> None:
    """For 8 s under load the store cannot be written: pixels keep answering 200 within the
    ack timeout, /readyz says degraded, and afterwards every acknowledged hit is stored."""
    server = server_factory(env={"PIXEL_SERVER": kind})
    stop, thread, acked, latencies = start_load(server, 6, "o")
    time.sleep(0.5)
    with outage(server.db):
        time.sleep(1.5)
        assert ready_status(server) == 503
        during = len(acked)
        time.sleep(6.5)
        assert len(acked) > during + 100, "pixels stopped being answered during the outage"
    deadline = time.monotonic() + 15
    while ready_status(server) != 200:
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    thread.join(30)
    assert server.stop() == 0
    assert max(latencies) < 2.0, f"slowest pixel took {max(latencies):.2f} s"
    assert_all_stored(server, acked)
    assert not list(server.db.with_name(server.db.name + ".spill").glob("*.jsonl"))


def test_kill_9_during_an_outage_loses_nothing_acknowledged(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Hits acknowledged from the spill journal survive kill -9; the next start replays them."""
    server = server_factory()
    stop, thread, acked, _ = start_load(server, 6, "ko")
    with exclusive_lock(server.db):
        time.sleep(3)
        server.kill_all()
        stop.set()
        thread.join(30)
    spilled = list(server.db.with_name(server.db.name + ".spill").glob("*.jsonl"))
    assert spilled, "nothing was spilled during the outage"
    again = server_factory()
    deadline = time.monotonic() + 15
    while ready_status(again) != 200:
        assert time.monotonic() < deadline, "the journal was not replayed"
        time.sleep(0.1)
    assert again.stop() == 0
    assert_all_stored(again, acked)
    assert not any(path.exists() for path in spilled)


def test_four_workers_share_one_file_without_loss_or_errors(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """--workers 4 on one SQLite file: every acknowledged hit stored, no lock error logged."""
    server = server_factory("--workers", "4")
    stop, thread, acked, _ = start_load(server, 8, "w4")
    time.sleep(3)
    stop.set()
    thread.join(30)
    assert server.stop() == 0
    assert_all_stored(server, acked)
    log = server.log.read_text()
    assert "locked" not in log
    assert "store write failed" not in log
