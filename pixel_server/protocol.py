"""The HTTP protocol ``serve`` runs under uvicorn: coalesced writes plus the connection bounds.

uvicorn with httptools bounds none of these itself: ``limit_concurrency`` answers 503 only
once a request head has arrived (an idle socket is never refused), its keep-alive timeout only
runs *between* requests (each byte of a head resets it), and ``h11_max_incomplete_event_size``
does not apply to httptools, which buffers a header of any size. So, per connection:

1. over ``max_connections`` open connections, a new one gets a 503 and is closed at once,
   so the process never runs out of file descriptors;
2. a connection must deliver a complete request head within ``header_timeout`` of connecting
   (and of the first read of each later request), else it is closed (408 if it sent a part);
3. a head (request line and headers) over ``max_header_bytes`` gets a 431 and is closed;
   it is counted as it arrives, so a huge header is never buffered whole.

Each refusal is counted in ``bounds.REFUSALS`` (``pixel_connections_refused_total``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

from .bounds import REFUSALS, Bounds
from .coalesce import CoalescingHttpToolsProtocol

REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class HeadTooLarge(Exception):
    """Raised inside a parser callback when the request head passes ``max_header_bytes``."""


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
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.bounds: Bounds = getattr(config, "bounds", None) or Bounds()
        self._in_head = True  # the bytes arriving now belong to a request head
        self._head_bytes = 0  # bytes received since that head began
        self._head_begun = False  # a head has begun and is not complete yet
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
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        # uvicorn's data_received, plus our own refusal raised inside a parser callback
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                self._refuse_large_head()
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        # a head still incomplete after this chunk is all head: httptools buffers a header
        # until its end, so a long one is refused while it is still arriving
        if self._in_head and self._head_bytes > self.bounds.max_header_bytes:
            self._refuse_large_head()
        elif self._in_head and (self._head_bytes or self._head_begun):
            # only a head split over reads needs the deadline (empty lines before a request
            # count: they cancelled the keep-alive timer); one that arrives whole, as almost
            # every request does, costs no timer
            self._arm_head_timer()

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # parser callbacks: on_url and on_header are not overridden, because an override of each
    # cost about 3 us a request (measured: 10% of the pixel's throughput). A head that arrives
    # in pieces is measured in data_received; one that arrived whole is measured here, from
    # what uvicorn parsed, and only when more bytes than the limit came in since it began.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True

    def on_headers_complete(self) -> None:
        self._in_head = self._head_begun = False
        self._cancel_head_timer()
        limit = self.bounds.max_header_bytes
        if self._head_bytes > limit and self._parsed_head_size() > limit:
            raise HeadTooLarge
        super().on_headers_complete()

    def _parsed_head_size(self) -> int:
        """The request line and headers as received: URL, names and values, ": " and CRLF."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    # the bounds
    def _refuse_large_head(self) -> None:
        limit = self.bounds.max_header_bytes
        self._refuse("header_too_large", 431, f"Request head over {limit} bytes.")

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
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(refusal(status, message))
            self.transport.close()
