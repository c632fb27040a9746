"""The coalescing transport: a response head waits for its body so both go in one write."""

from __future__ import annotations

import asyncio
from typing import Any

from pixel_server.coalesce import CoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_head_and_body_go_out_in_one_write() -> None:
    """A head followed by its body in the same step becomes a single write."""
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(HEAD)
    transport.write(b"GIF")
    assert inner.writes == [HEAD + b"GIF"]
    await asyncio.sleep(0)
    assert inner.writes == [HEAD + b"GIF"]


async def test_head_without_body_is_flushed_at_the_end_of_the_step() -> None:
    """A HEAD response (no body write) still goes out, one loop step later."""
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(HEAD)
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]


async def test_close_flushes_a_held_head_first() -> None:
    """Closing the connection never drops a head that is being held."""
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD]
    assert inner.closed


async def test_other_writes_pass_straight_through() -> None:
    """Body chunks and anything that is not a complete head are written at once."""
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"chunk")
    transport.write(b"HTTP/1.1 200 OK\r\npartial")
    assert inner.writes == [b"chunk", b"HTTP/1.1 200 OK\r\npartial"]
    assert transport.is_closing() is False
