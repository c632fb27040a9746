"""ANCHOR for `make bench` -- NOT product code. Nothing in pixel_server imports this.

A raw ASGI callable (no framework, no storage, no logging) that answers ``GET /p.gif`` with the
43-byte GIF and no-store headers, like app_raw of research/perf-baseline.md 6.2. It is the most
any Python app can get from an ASGI server on this machine: every hit pixel_server serves costs
at least what this costs, so ``pixel`` / ``raw-asgi`` is the share of the server's own ceiling
that pixel_server reaches. It stores nothing, so its rows have no zero-loss check.

Run: ``python -m uvicorn bench.raw_app:app --http httptools --loop uvloop --no-access-log``
or ``granian --interface asgi --workers 1 --runtime-threads 1 --loop uvloop --http 1
--no-access-log bench.raw_app:app`` (from the project root).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x01\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02L\x01\x00;"
)
HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    (b"cache-control", b"no-store, max-age=0"),
]
NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        if scope["path"] == "/p.gif":
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": GIF})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND})
            await send({"type": "http.response.body", "body": b"not found"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
