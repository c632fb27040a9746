"""Driving the ASGI app directly, with exact bytes: for the test suite and bench/fuzz.py.

An HTTP client re-encodes what it sends; fuzzing the query parser needs the query bytes to reach
the app exactly as generated, so these helpers build the ASGI scope by hand.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def asgi_request(
    app: ASGIApp,
    method: str,
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Answer:
    """Send one HTTP request straight through ASGI; exceptions from the app propagate."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path, safe="/:@!$&'()*+,;=-._~").encode("ascii"),
        "query_string": query,
        "root_path": "",
        "headers": headers or [(b"host", b"testserver"), (b"user-agent", b"fuzz/1.0")],
        "client": ("203.0.113.9", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(dict(message))

    await app(scope, receive, send)
    if not messages:  # nothing was sent: a server would answer 500 for the app
        return Answer(500, [], b"")
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return Answer(int(messages[0]["status"]), list(messages[0].get("headers", [])), body)
