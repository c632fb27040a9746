"""A Python client for ``POST /e`` (docs/events.md), sync and async.

::

    from pixel_server.client import Client

    with Client("https://t.example.com", key="pxk_...") as pixel:
        pixel.track("purchase_completed", uid="u-17", params={"order_id": "8812"})
    # leaving the block sends what is queued

Events are queued and sent in batches (``batch_size``, or :meth:`Client.flush`). Each event
gets its ``eid`` when it is tracked, once, so a batch sent again after a timeout, a lost
connection or a 503 cannot store anything twice: the server answers what it already has
``duplicate``. Failures that a retry can cure (503, 429, 5xx, a network error) are retried
with exponential backoff and full jitter, honouring ``Retry-After``, for up to ``max_wait``
seconds; then :class:`Unavailable` is raised and the events stay queued for a later flush.
A refusal that a retry cannot cure (400, 401, 403, 413) raises :class:`Refused` at once.

:class:`AsyncClient` is the same on asyncio. httpx does the HTTP.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

RETRIED_STATUSES = frozenset((429, 500, 502, 503, 504))
MAX_BATCH = 500  # the server's default PIXEL_EVENTS_MAX_BATCH


class PixelError(Exception):
    """Base of the client's errors."""


class Refused(PixelError):
    """The server refused the request in a way a retry cannot cure (its error in ``body``)."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', body)}")
        self.status, self.body = status, body


class Unavailable(PixelError):
    """The server could not be reached, or could not store, for ``max_wait`` seconds; the
    events are still queued (their eids kept) for the next flush."""


@dataclass(frozen=True)
class Result:
    """What the server said about one event: accepted, duplicate or rejected (with why)."""

    eid: str
    status: str
    reason: str | None = None
    message: str | None = None

    @property
    def stored(self) -> bool:
        """The event is in the store (now, or from an earlier attempt)."""
        return self.status in ("accepted", "duplicate")


def event(name: str, eid: str | None, members: dict[str, Any]) -> dict[str, Any]:
    """An event as the server takes it: its eid made here, once, unless given."""
    given = {key: value for key, value in members.items() if value is not None}
    return {"name": name, "eid": eid or str(uuid.uuid4()), **given}


class Backoff:
    """Waits between attempts: full jitter over 0.5 s doubling to 30 s, at least what
    ``Retry-After`` asks, never past the deadline."""

    def __init__(self, max_wait: float, rand: Callable[[], float] = random.random) -> None:
        self.deadline = time.monotonic() + max_wait
        self.attempt = 0
        self.rand = rand

    def next_wait(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt; None once the deadline is passed."""
        self.attempt += 1
        wait: float = self.rand() * min(30.0, 0.5 * 2 ** (self.attempt - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        if time.monotonic() + wait > self.deadline:
            return None
        return wait


def _retry_after(response: httpx.Response) -> float | None:
    value: str = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _results(batch: list[dict[str, Any]], response: httpx.Response) -> list[Result]:
    body = response.json()
    return [
        Result(event["eid"], item["status"], item.get("reason"), item.get("message"))
        for event, item in zip(batch, body["results"], strict=True)
    ]


class _Queue:
    """The events waiting to be sent, and the batches they go in."""

    def __init__(self, batch_size: int) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size is 1 to {MAX_BATCH}")
        self.batch_size = batch_size
        self.events: list[dict[str, Any]] = []

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """Batches from the front; a batch leaves the queue only once its answer is in."""
        while self.events:
            yield self.events[: self.batch_size]

    def sent(self, batch: list[dict[str, Any]]) -> None:
        del self.events[: len(batch)]


def _headers(key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "pixel_server-client"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


class _Attempts:
    """The attempts at sending one batch, without the I/O (shared by both clients): each
    answer or failure gives the results, or the seconds to wait before the next attempt;
    Refused when no retry can help, Unavailable once ``max_wait`` is spent."""

    def __init__(self, batch: list[dict[str, Any]], max_wait: float) -> None:
        self.batch, self.max_wait = batch, max_wait
        self.backoff = Backoff(max_wait)

    def read(self, response: httpx.Response) -> list[Result] | float:
        if response.status_code == 200:
            return _results(self.batch, response)
        if response.status_code not in RETRIED_STATUSES:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise Refused(response.status_code, body)
        return self._wait(_retry_after(response), f"HTTP {response.status_code}")

    def failed(self, exc: Exception) -> float:
        return self._wait(None, repr(exc))

    def _wait(self, retry_after: float | None, last: str) -> float:
        wait = self.backoff.next_wait(retry_after)
        if wait is None:
            raise Unavailable(f"{len(self.batch)} events not sent within {self.max_wait}s: {last}")
        return wait


class Client:
    """Sends events to ``url``'s ``/e``; ``key``: an API key with the ingest scope (a server
    call), or None (a browser-like call: no ts, ip or ua)."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        batch_size: int = 100,
        max_wait: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._queue = _Queue(batch_size)
        self.max_wait = max_wait
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=_headers(key), timeout=timeout, transport=transport
        )

    def track(self, name: str, *, eid: str | None = None, **members: Any) -> str:
        """Queue an event (members: sid, uid, cid, url, ref, utm_*, seq, params, and for a
        server call ts, ip, ua); return its eid. A full batch is sent at once."""
        item = event(name, eid, members)
        self._queue.events.append(item)
        if len(self._queue.events) >= self._queue.batch_size:
            self.flush()
        return str(item["eid"])

    def flush(self) -> list[Result]:
        """Send everything queued; the results of every event, in order."""
        results: list[Result] = []
        for batch in self._queue.batches():
            results += self._send(batch)
            self._queue.sent(batch)
        return results

    def _send(self, batch: list[dict[str, Any]]) -> list[Result]:
        attempt = _Attempts(batch, self.max_wait)
        while True:
            try:
                answer = attempt.read(self._http.post("/e", json=batch))
            except httpx.TransportError as exc:  # refused, reset, timed out: it may have landed
                answer = attempt.failed(exc)
            if isinstance(answer, list):
                return answer
            time.sleep(answer)

    def close(self, flush: bool = True) -> None:
        """Send what is queued (unless ``flush=False``: it is dropped), then close the
        connection, even if the send fails."""
        try:
            if flush:
                self.flush()
        finally:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(flush=kind is None)


class AsyncClient:
    """:class:`Client` on asyncio."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        batch_size: int = 100,
        max_wait: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._queue = _Queue(batch_size)
        self.max_wait = max_wait
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=_headers(key), timeout=timeout, transport=transport
        )

    async def track(self, name: str, *, eid: str | None = None, **members: Any) -> str:
        item = event(name, eid, members)
        self._queue.events.append(item)
        if len(self._queue.events) >= self._queue.batch_size:
            await self.flush()
        return str(item["eid"])

    async def flush(self) -> list[Result]:
        results: list[Result] = []
        for batch in self._queue.batches():
            results += await self._send(batch)
            self._queue.sent(batch)
        return results

    async def _send(self, batch: list[dict[str, Any]]) -> list[Result]:
        attempt = _Attempts(batch, self.max_wait)
        while True:
            try:
                answer = attempt.read(await self._http.post("/e", json=batch))
            except httpx.TransportError as exc:
                answer = attempt.failed(exc)
            if isinstance(answer, list):
                return answer
            await asyncio.sleep(answer)

    async def aclose(self, flush: bool = True) -> None:
        try:
            if flush:
                await self.flush()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(flush=kind is None)
