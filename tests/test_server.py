"""A real ``pixel-server serve`` process: real HTTP, real signals, a real store (SQLite file or
PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from conftest import API_TOKEN, SECRET, Load, ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.both_stores]


@pytest.mark.parametrize("kind", ["uvicorn", "granian"])
def test_real_server_serves_the_contract(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    """Over real HTTP: the GIF with its headers, HEAD, a redirect refusal, and the API."""
    server = server_factory(env={"PIXEL_SERVER": kind})
    response = httpx.get(f"{server.url}/p.gif?cid=x&utm_source=y")
    assert response.status_code == 200
    assert response.headers["content-length"] == "43"
    if kind == "uvicorn":  # granian always names itself; uvicorn's header is switched off
        assert "server" not in response.headers
    head = httpx.head(f"{server.url}/p.gif?cid=x")
    assert (head.status_code, head.content) == (200, b"")
    refused = httpx.get(f"{server.url}/r/k1.junk.junk")
    assert refused.status_code == 400
    assert "location" not in refused.headers
    hits = httpx.get(f"{server.url}/api/hits", headers={"authorization": f"Bearer {API_TOKEN}"})
    assert [hit["ip"] for hit in hits.json()["hits"]] == ["127.0.0.0", "127.0.0.0"]
    assert server.stop() == 0


def test_two_workers_share_one_store(server_factory: Callable[..., ServerProcess]) -> None:
    """With --workers 2, concurrent hits all land in the one store and nothing says 'locked'."""
    server = server_factory("--workers", "2")
    with Load(server, 8, "w") as run:
        run.wait_for(400)  # not 3 s of load: a busy machine answers far fewer in 3 s
    acked = run.acked
    assert server.stop() == 0
    stored = {row[0] for row in server.rows()}
    assert len(acked) > 200
    assert set(acked) <= stored
    pids = server.rows("SELECT count(*) FROM hits")
    assert pids[0][0] == len(stored)
    log = server.log.read_text()
    assert "database is locked" not in log
    assert "store write failed" not in log


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
