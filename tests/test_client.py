"""pixel_server.client against a real server that fails and recovers, on SQLite and on
PostgreSQL: a store that answers 503 for a while, a server that is not there yet, a refusal
that no retry cures; every event stored exactly once. And the backoff's arithmetic."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pixel_server.apikeys import new_key
from pixel_server.client import AsyncClient, Backoff, Client, Refused, Result, Unavailable

from conftest import ServerProcess, free_port, store_locked, wait_until

pytestmark = pytest.mark.both_stores
FAST = {"PIXEL_BUSY_TIMEOUT": "0.2"}  # a locked store answers 503 after 0.2 s


class Counting(httpx.HTTPTransport):
    """A real transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return super().handle_request(request)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def event_posts(server: ServerProcess, status: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f'pixel_event_posts_total{{status="{status}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_store_that_fails_then_recovers_gets_every_event_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """While the store is locked every post is answered 503; the client retries with
    backoff and, once it is released, every event is stored exactly once."""
    server = server_factory(env=FAST)
    transport = Counting()
    pixel = Client(server.url, batch_size=500, max_wait=300, transport=transport)
    eids = [pixel.track("step", sid="s1", seq=n + 1) for n in range(120)]
    with store_locked(server):
        thread, out = in_thread(pixel.flush)
        wait_until(lambda: event_posts(server, "503") >= 2, "two 503s answered")
    thread.join(timeout=300)
    [results] = out
    assert isinstance(results, list), results
    assert [r.eid for r in results] == eids
    assert all(r.status == "accepted" for r in results)
    assert transport.calls >= 3  # two 503s at least, then the 200
    stored = server.rows("SELECT eid FROM hits WHERE kind = 'event'")
    assert sorted(eid for (eid,) in stored) == sorted(eids)
    pixel.close()


def test_a_server_not_there_yet_is_waited_for(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Connection refused is retried; the server started later gets the batch, once."""
    port = free_port()
    transport = Counting()
    pixel = Client(f"http://127.0.0.1:{port}", max_wait=300, transport=transport)
    eid = pixel.track("app_opened", uid="u1")
    thread, out = in_thread(pixel.flush)
    wait_until(lambda: transport.calls >= 2, "two refused attempts")
    server = server_factory(env={**FAST, "PIXEL_PORT": str(port)})
    thread.join(timeout=300)
    assert out == [[Result(eid, "accepted")]]
    assert server.rows("SELECT eid FROM hits WHERE kind = 'event'") == [(eid,)]
    pixel.close()


def test_giving_up_keeps_the_events_for_the_next_flush(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """After max_wait, Unavailable; the events stay queued with their eids, and a later
    flush stores them, once, even if the first attempt had stored some."""
    port = free_port()
    pixel = Client(f"http://127.0.0.1:{port}", max_wait=0.5)
    eids = [pixel.track("step", seq=n + 1, sid="s") for n in range(3)]
    with pytest.raises(Unavailable, match=r"3 events not sent within 0\.5s"):
        pixel.flush()
    server = server_factory(env={"PIXEL_PORT": str(port)})
    pixel.max_wait = 60
    assert [r.eid for r in pixel.flush()] == eids
    assert pixel.flush() == []  # nothing left
    assert len(server.rows("SELECT eid FROM hits WHERE kind = 'event'")) == 3
    pixel.close()


def test_a_refusal_is_not_retried(server_factory: Callable[..., ServerProcess]) -> None:
    """A wrong key (401) raises Refused after one request; the event stays queued."""
    server = server_factory()
    transport = Counting()
    text, _ = new_key("nobody", ["ingest"], now_ms=0)  # never stored: not this server's
    pixel = Client(server.url, key=text, transport=transport)
    pixel.track("purchase_completed", eid="o-1")
    with pytest.raises(Refused) as caught:
        pixel.flush()
    pixel.close(flush=False)
    assert caught.value.status == 401
    assert transport.calls == 1


def test_the_async_client_resends_as_duplicates(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """AsyncClient: the same eids sent twice (a retry after a lost answer) are answered
    duplicate the second time and stored once."""
    server = server_factory()

    async def run() -> tuple[list[Result], list[Result]]:
        async with AsyncClient(server.url, batch_size=10) as pixel:
            for n in range(5):
                await pixel.track("video_progress", eid=f"v-{n}", params={"percent": n * 25})
            first = await pixel.flush()
            for n in range(5):
                await pixel.track("video_progress", eid=f"v-{n}", params={"percent": n * 25})
            return first, await pixel.flush()

    first, again = asyncio.run(run())
    assert [r.status for r in first] == ["accepted"] * 5
    assert [r.status for r in again] == ["duplicate"] * 5
    assert all(r.stored for r in again)
    assert len(server.rows("SELECT eid FROM hits WHERE kind = 'event'")) == 5


@pytest.mark.sqlite_only("arithmetic, no store")
def test_backoff_doubles_with_full_jitter_and_honours_retry_after() -> None:
    """Waits are rand() x 0.5 s doubling to 30 s, at least Retry-After, None past the
    deadline."""
    top = Backoff(max_wait=3600, rand=lambda: 1.0)
    assert [top.next_wait(None) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low = Backoff(max_wait=3600, rand=lambda: 0.0)
    assert low.next_wait(None) == 0.0
    assert low.next_wait(7) == 7
    late = Backoff(max_wait=1, rand=lambda: 1.0)
    assert late.next_wait(5) is None
