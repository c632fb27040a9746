"""uvicorn's HTTP protocol, with a response's head and body sent in one write.

uvicorn (httptools) writes the status line and headers on ``http.response.start`` and the
body on ``http.response.body``: two ``send()`` calls and two TCP segments for a 43-byte GIF.
Both calls happen in the same event-loop step, so holding the head until the body arrives
costs nothing and halves the syscalls per response. A head with no body following (HEAD, 304)
is flushed at the end of the step.

It touches one seam of uvicorn: the transport the protocol hands to each request cycle.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

RESPONSE_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """Delays a response head until the next write (or the end of this loop step)."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
            self._transport.write(data)
        elif data.startswith(RESPONSE_HEAD) and data.endswith(b"\r\n\r\n"):
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
