"""The HTTP protocol ``serve`` runs under uvicorn: coalesced writes plus the connection bounds.

uvicorn with httptools bounds none of these itself: ``limit_concurrency`` answers 503 only
once a request head has arrived (an idle socket is never refused), its keep-alive timeout only
runs *between* requests (each byte of a head resets it), and ``h11_max_incomplete_event_size``
does not apply to httptools, which buffers a header of any size. So, per connection:

1. over ``max_connections`` open connections, a new one gets a 503 and is closed at once,
   so the process never runs out of file descriptors;
2. a connection must deliver a complete request head within ``header_timeout`` of connecting
   (and of the first read of each later request), else it is closed (408 if it sent a part);
3. a head (request line to blank line) over ``max_header_bytes`` bytes gets a 431, after
   the answers to the requests before it on the connection, and the connection is closed;
   it is counted as it arrives, so a huge header is never buffered whole, and each of the
   heads pipelined in one read is counted alone.

Each refusal is counted in ``bounds.REFUSALS`` (``pixel_connections_refused_total``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .bounds import REFUSALS, Bounds
from .coalesce import CoalescingHttpToolsProtocol

REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def refusal(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` plain-text response."""
    body = message.encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status]),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )


class BoundedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The bounds, enforced in ``data_received`` alone: no parser callback is overridden.

    Each override of a callback is one more Python call per request; a read that holds
    whole heads, as almost every read does, costs here a length check before uvicorn parses
    it and two identity checks after. What a read did is read off uvicorn's state: each
    complete head makes a new ``self.cycle`` whose ``scope`` is the ``self.scope`` its
    ``on_message_begin`` made, so a head is incomplete while ``self.scope`` is no cycle's.

    A head is measured in bytes, from its request line to its blank line. One that begins in
    the read where a request body ends is counted from that read's last blank line, with the
    body's tail: the end of a body is not seen without a callback (the bounds do not cover
    bodies, and no endpoint of ours reads one).
    """

    # Slots, not the instance dict: uvicorn's protocol already keeps 28 attributes there, and
    # past 30 CPython (3.11) stops sharing the keys of instance dicts, which slows every
    # attribute access in uvicorn's own per-request code (~1,700 instructions a request by
    # callgrind, more than these bounds cost; bench/protocol_cost.py).
    __slots__ = ("_head_bytes", "_head_limit", "_head_timer", "bounds")

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.bounds: Bounds = getattr(config, "bounds", None) or Bounds()
        self._head_limit = self.bounds.max_header_bytes
        self._head_bytes = 0  # bytes of the incomplete head so far (0: none is incomplete)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            self._refuse("max_connections", 503, "Too many connections, try again later.")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes + len(data) > self._head_limit:
            self._receive_in_steps(data)
            return
        # no head that ends or stops in this read can be over the limit: uvicorn parses it
        cycle, scope = self.cycle, self.scope
        HttpToolsProtocol.data_received(self, data)
        if self.cycle is not cycle and self.cycle.scope is self.scope:
            # the usual read: it completed a head (or several) and left none incomplete
            self._head_bytes = 0
            if self._head_timer is not None:
                self._cancel_head_timer()
        else:
            self._after(data, 0, len(data), cycle, scope)

    def _receive_in_steps(self, data: bytes) -> None:
        """Feed ``data`` in steps no longer than the incomplete head may still grow, so that a
        head over the limit is refused before uvicorn runs its request, and a long one while
        it is still arriving (httptools buffers a header until its end)."""
        start = 0
        while start < len(data) and self._head_bytes < self._head_limit:
            if self.transport.is_closing():  # a 400, say
                return
            stop = min(len(data), start + self._head_limit - self._head_bytes)
            cycle, scope = self.cycle, self.scope
            HttpToolsProtocol.data_received(self, data[start:stop])
            self._after(data, start, stop, cycle, scope)
            start = stop

    def _after(self, data: bytes, start: int, stop: int, cycle: object, scope: object) -> None:
        """Account for ``data[start:stop]``, just parsed (``cycle`` and ``scope``: uvicorn's
        from before it)."""
        if self.scope is not None and (self.cycle is None or self.cycle.scope is not self.scope):
            # a head is incomplete: the same as before, or one that began in this piece, after
            # its last blank line (a head holds none) and the empty lines llhttp skips, which
            # also finish a blank line begun in the last piece
            if self.scope is scope:
                self._head_bytes += stop - start
            else:
                blank = data.rfind(b"\r\n\r\n", start, stop)
                begin = start if blank < 0 else blank + 4
                self._head_bytes = len(data[begin:stop].lstrip(b"\r\n"))
                if self.cycle is not cycle:  # after a complete one: its deadline starts now
                    self._cancel_head_timer()
            if self._head_bytes >= self._head_limit:  # it can only end up over the limit
                self._refuse_large_head()
            else:
                self._arm_head_timer()
        elif self.cycle is not cycle or data[start:stop].strip(b"\r\n"):
            # a head completed, or a body arrived (at a head's start llhttp takes nothing
            # but empty lines without beginning a request)
            self._head_bytes = 0
            self._cancel_head_timer()
        else:
            # only empty lines, which cancelled uvicorn's keep-alive timer: they get the head
            # deadline, else a client could hold the connection with one CRLF a second
            self._arm_head_timer()

    # the bounds
    def _refuse_large_head(self) -> None:
        """The 431, once the requests before this head on the connection are answered."""
        self._head_bytes = self._head_limit  # no more of this connection is parsed
        self._cancel_head_timer()
        last = self.cycle  # uvicorn answers pipelined requests in order: this one is last

        def refuse() -> None:
            self._refuse("header_too_large", 431, f"Request head over {self._head_limit} bytes.")

        if last is None or last.response_complete:
            refuse()
            return
        self.transport.pause_reading()  # not through uvicorn's flow control, which resumes
        answered = last.on_response

        def answered_then_refuse() -> None:
            answered()
            refuse()

        last.on_response = answered_then_refuse

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.bounds.header_timeout, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse("header_timeout", 408, "Request head not received in time.")
        else:  # a silent connection (a preconnect, or an idle socket held open): just close
            REFUSALS.refuse("header_timeout")
            self.transport.close()

    def _refuse(self, reason: str, status: int, message: str) -> None:
        REFUSALS.refuse(reason)
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, message))
            self.transport.close()
