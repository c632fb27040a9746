"""``POST /e`` across processes: the same batches posted at once through two worker processes
sharing one SQLite file, and through two instances sharing one PostgreSQL. Each event is
answered ``accepted`` exactly once over all the answers and stored exactly once: duplicates are
found by the store's unique index, not by a process's memory."""

from __future__ import annotations

import json
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Load, ServerProcess

BATCHES = 40
PER_BATCH = 20
SENDERS = 4  # each sends every batch, in its own order


def batches() -> list[list[dict[str, object]]]:
    return [
        [
            {"name": "add_to_cart", "eid": f"b{b}-e{e}", "sid": f"s{b}", "seq": e + 1}
            for e in range(PER_BATCH)
        ]
        for b in range(BATCHES)
    ]


def send_all(urls: list[str]) -> Counter[str]:
    """Every sender posts every batch (the first half of the senders in order, the others in
    reverse), retrying a 503 as a client must; the statuses of the 200 answers, per eid."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def sender(number: int) -> None:
        todo = batches() if number % 2 == 0 else batches()[::-1]
        url = urls[number % len(urls)]
        try:
            with httpx.Client(timeout=60) as client:
                for batch in todo:
                    while True:
                        response = client.post(
                            f"{url}/e",
                            content=json.dumps(batch),
                            headers={"content-type": "application/json"},
                        )
                        if response.status_code != 503:
                            break
                    assert response.status_code == 200, response.text
                    results = response.json()["results"]
                    with lock:
                        for event, result in zip(batch, results, strict=True):
                            if result["status"] == "accepted":
                                outcomes[str(event["eid"])] += 1
                            else:
                                assert result["status"] == "duplicate", result
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return outcomes


def assert_each_once(outcomes: Counter[str], server: ServerProcess) -> None:
    every = {str(event["eid"]) for batch in batches() for event in batch}
    assert set(outcomes) == every
    assert set(outcomes.values()) == {1}, "an event was accepted twice"
    stored = server.rows("SELECT eid FROM hits WHERE kind = 'event'")
    assert len(stored) == len(every)
    assert {eid for (eid,) in stored} == every


def test_two_workers_sharing_a_sqlite_file_store_each_event_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Two worker processes on one SQLite file, four senders at once."""
    server = server_factory(env={"PIXEL_WORKERS": "2"})
    assert_each_once(send_all([server.url]), server)


@pytest.mark.usefixtures("pg_database")
def test_two_instances_sharing_postgresql_store_each_event_once(
    server_factory: Callable[..., ServerProcess], pg_url: str
) -> None:
    """Two instances on one PostgreSQL database, two senders each."""
    env = {"PIXEL_DATABASE_URL": pg_url}
    first = server_factory(env=env)
    second = server_factory(env=env)
    assert_each_once(send_all([first.url, second.url]), first)


@pytest.mark.both_stores
@pytest.mark.timeout(300)  # 5 starts and stops under load; 300 s catches a hang
def test_sigterm_loses_no_acknowledged_event(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, backend: str
) -> None:
    """5 rounds: batches of 5 events from 4 clients, SIGTERM after a random number of
    answered events while the load goes on; exit 0, and every event answered accepted is
    stored, once."""
    rng = random.Random(20261202)
    for round_no in range(5):
        fresh = {"PIXEL_DB": str(tmp_path / f"r{round_no}.db")} if backend == "sqlite" else {}
        server = server_factory(env=fresh)
        run = Load(server, 4, f"r{round_no}")
        run.events = 5
        with run:
            run.wait_for(rng.randint(20, 400))
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(20) == 0  # graceful 5 s + drain 10 s, and 5 s to spare
        stored = [eid for (eid,) in server.rows("SELECT eid FROM hits WHERE kind = 'event'")]
        assert len(stored) == len(set(stored))
        assert set(run.acked) <= set(stored)
