"""The head bounds of ``BoundedHttpToolsProtocol``, fed in process: however a stream of
requests is cut into reads, the same requests reach the app and the same head is refused.

The protocol counts heads from uvicorn's state after each read, not in parser callbacks, so
what matters is where the reads end: inside a head, between pipelined heads, in a body.
tests/test_bounds.py attacks real servers; here every cut of a stream is tried.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from pixel_server.bounds import REFUSALS, Bounds
from pixel_server.protocol import BoundedHttpToolsProtocol

LIMIT = 1024


def get(cid: str, head_bytes: int) -> bytes:
    """A GET whose head, request line to blank line, is exactly ``head_bytes`` long."""
    start = f"GET /p.gif?cid={cid} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    return start + b"a" * (head_bytes - len(start) - 4) + b"\r\n\r\n"


def post(cid: str, body_bytes: int) -> bytes:
    head = f"POST /p.gif?cid={cid} HTTP/1.1\r\nHost: x\r\nContent-Length: {body_bytes}\r\n\r\n"
    return head.encode() + b"b" * body_bytes


class Transport(asyncio.Transport):
    """Keeps what is written before the close; the close reaches the protocol a step later,
    as with uvloop."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def write(self, data: Any) -> None:
        if not self.closed:
            self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Served:
    """One connection's outcome: the requests the app saw and the statuses sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.statuses: list[int] = []
        self.closed = False


def connect(served: Served, state: ServerState) -> tuple[BoundedHttpToolsProtocol, Transport]:
    """A new connection to an app that answers 200 to every request, noting its cid."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.seen.append(scope["query_string"].decode().removeprefix("cid="))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app, lifespan="off", proxy_headers=False, log_config=None)
    config.bounds = Bounds(max_header_bytes=LIMIT)  # type: ignore[attr-defined]
    protocol = BoundedHttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
    transport = Transport(protocol)
    protocol.connection_made(transport)
    return protocol, transport


async def serve(reads: Iterable[bytes]) -> Served:
    """Feed ``reads`` to a new connection one ``data_received`` each, letting the requests
    each read completed run to their answers before the next."""
    served, state = Served(), ServerState()
    protocol, transport = connect(served, state)
    for data in reads:
        if transport.closed:
            break
        protocol.data_received(data)
        while state.tasks or protocol.pipeline:  # the requests run, one after another
            await asyncio.sleep(0)
    await asyncio.sleep(0)  # the close, if any, reaches the protocol
    served.statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", transport.written)]
    served.closed = transport.closed
    if not transport.closed:
        protocol.connection_lost(None)
    return served


def cuts(stream: bytes) -> Iterator[list[bytes]]:
    """``stream`` in one read, in two at every position, byte by byte, in reads of 7 bytes,
    of the limit, and of the limit plus one."""
    yield [stream]
    for at in range(1, len(stream)):
        yield [stream[:at], stream[at:]]
    for size in (1, 7, LIMIT, LIMIT + 1):
        yield [stream[i : i + size] for i in range(0, len(stream), size)]


async def test_pipelined_heads_each_under_the_limit_are_all_served_however_cut() -> None:
    """Three heads of up to the limit, together three times over it: no head is charged
    with the bytes of another, whether they arrive in one read or in many."""
    stream = get("a", 900) + get("b", LIMIT - 1) + get("c", LIMIT)
    for reads in cuts(stream):
        served = await serve(reads)
        assert (served.seen, served.statuses, served.closed) == (
            ["a", "b", "c"],
            [200, 200, 200],
            False,
        ), [len(r) for r in reads]


@pytest.mark.parametrize("before", [b"", get("first", 300)], ids=["alone", "after-another"])
async def test_a_head_one_byte_over_the_limit_is_refused_however_cut(before: bytes) -> None:
    """A head of limit + 1 bytes never reaches the app, alone or pipelined after another
    request in the same read: the request before it is answered, then the 431, and the
    connection closes."""
    stream = before + get("big", LIMIT + 1) + get("after", 100)
    for reads in cuts(stream):
        refused = REFUSALS.counts["header_too_large"]
        served = await serve(reads)
        expected = (["first"], [200, 431]) if before else ([], [431])
        assert (served.seen, served.statuses, served.closed) == (*expected, True)
        assert REFUSALS.counts["header_too_large"] == refused + 1


async def test_body_bytes_are_not_head_bytes() -> None:
    """A POST with a body of three times the limit, in reads of the limit or byte by byte,
    then a head of exactly the limit in the next read: both served. (A head that begins in
    the read where a body ends is counted from that read's last blank line, body tail and
    all: without parser callbacks the end of a body is not seen.)"""
    body, head = post("post", 3 * LIMIT), get("next", LIMIT)
    for size in (LIMIT, 1):
        reads = [body[i : i + size] for i in range(0, len(body), size)]
        served = await serve([*reads, head])
        assert (served.seen, served.statuses) == (["post", "next"], [200, 200])


async def test_the_head_deadline_runs_only_while_a_head_is_incomplete() -> None:
    """A head that arrives whole costs no timer; a part of one, or empty lines after a
    response (each cancels uvicorn's keep-alive timer), start the head deadline."""
    state = ServerState()
    protocol, _ = connect(Served(), state)
    assert protocol._head_timer is not None  # from connecting
    head = get("t", 200)
    protocol.data_received(head)
    assert protocol._head_timer is None
    protocol.data_received(head[:50])
    assert protocol._head_timer is not None
    protocol.data_received(head[50:])
    assert protocol._head_timer is None
    while state.tasks:  # both requests answered (uvicorn arms its keep-alive timer)
        await asyncio.sleep(0)
    protocol.data_received(b"\r\n")
    assert protocol._head_timer is not None
    protocol.connection_lost(None)
