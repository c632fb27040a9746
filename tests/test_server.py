"""A real ``pixel-server serve`` process: real HTTP, real signals, real SQLite file."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from conftest import API_TOKEN, SECRET, ServerProcess

pytestmark = pytest.mark.server


def load(
    server: ServerProcess,
    clients: int,
    stop: threading.Event,
    prefix: str,
    acked: list[str] | None = None,
) -> list[str]:
    """Send unique-eid pixels from ``clients`` threads until ``stop`` or the server goes away;
    return (and append to ``acked``) every eid that was answered 200."""
    acked = [] if acked is None else acked
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                eid = f"{prefix}-{n}-{i}"
                try:
                    response = http.get(f"/p.gif?cid=load&eid={eid}")
                except httpx.TransportError:
                    return  # the server closed: stop this client
                if response.status_code == 200:
                    with lock:
                        acked.append(eid)
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return acked


def test_real_server_serves_the_contract(server_factory: Callable[..., ServerProcess]) -> None:
    """Over real HTTP: the GIF with its headers, HEAD, a redirect refusal, and the API."""
    server = server_factory()
    response = httpx.get(f"{server.url}/p.gif?cid=x&utm_source=y")
    assert response.status_code == 200
    assert response.headers["content-length"] == "43"
    assert "server" not in response.headers
    head = httpx.head(f"{server.url}/p.gif?cid=x")
    assert (head.status_code, head.content) == (200, b"")
    refused = httpx.get(f"{server.url}/r/k1.junk.junk")
    assert refused.status_code == 400
    assert "location" not in refused.headers
    hits = httpx.get(f"{server.url}/api/hits", headers={"authorization": f"Bearer {API_TOKEN}"})
    assert [hit["ip"] for hit in hits.json()["hits"]] == ["127.0.0.0", "127.0.0.0"]
    assert server.stop() == 0


def test_sigterm_mid_load_loses_no_acknowledged_hit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Hits answered 200 before and during SIGTERM are all in the database; exit 0 within 10 s."""
    rng = random.Random(20261128)
    for round_no in range(3):
        server = server_factory()
        stop = threading.Event()
        result: list[str] = []
        loader = threading.Thread(target=load, args=(server, 6, stop, f"r{round_no}", result))
        loader.start()
        time.sleep(rng.uniform(0.3, 1.2))
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 10
        stop.set()
        loader.join(30)
        stored = {row[0] for row in server.rows()}
        assert result, "the load produced no acknowledged hits"
        missing = set(result) - stored
        assert not missing, f"{len(missing)} acknowledged hits lost in round {round_no}"
        assert len(stored) == len(server.rows("SELECT eid FROM hits"))  # no duplicates
        assert "final flush done" in server.log.read_text()
        server.db.unlink()
        for suffix in ("-wal", "-shm"):
            server.db.with_name(server.db.name + suffix).unlink(missing_ok=True)


def test_two_workers_share_one_sqlite_file(server_factory: Callable[..., ServerProcess]) -> None:
    """With --workers 2, concurrent hits all land in the one file and nothing says 'locked'."""
    server = server_factory("--workers", "2")
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    acked = load(server, 8, stop, "w")
    assert server.stop() == 0
    stored = {row[0] for row in server.rows()}
    assert len(acked) > 200
    assert set(acked) <= stored
    pids = server.rows("SELECT count(*) FROM hits")
    assert pids[0][0] == len(stored)
    log = server.log.read_text()
    assert "database is locked" not in log
    assert "store write failed" not in log


def test_sigkill_loses_nothing_acknowledged_and_keeps_the_file_sound(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """kill -9 mid-load: every hit answered 200 is stored (ack is after commit), integrity ok."""
    server = server_factory()
    stop = threading.Event()
    result: list[str] = []
    loader = threading.Thread(target=load, args=(server, 6, stop, "k", result))
    loader.start()
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    loader.join(30)
    assert result
    assert set(result) <= {row[0] for row in server.rows()}
    assert server.rows("PRAGMA integrity_check") == [("ok",)]


def test_logs_are_json_lines_without_secrets(server_factory: Callable[..., ServerProcess]) -> None:
    """The server's log is one JSON object per line and never shows the key or API tokens."""
    server = server_factory()
    httpx.get(f"{server.url}/api/hits", headers={"authorization": "Bearer wrong-token"})
    httpx.get(f"{server.url}/api/hits", headers={"authorization": f"Bearer {API_TOKEN}"})
    httpx.get(f"{server.url}/r/k1.forged.token")
    httpx.get(f"{server.url}/p.gif?cid=secret-test")
    assert server.stop() == 0
    text = server.log.read_text()
    for line in text.splitlines():
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    for secret in (SECRET, API_TOKEN, "wrong-token", "secret-test"):
        assert secret not in text
