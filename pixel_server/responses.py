"""Responses sent straight through ASGI: the GIF, the redirect, and the small error pages.

The pixel and redirect routes answer with prebuilt header lists instead of Starlette Response
objects: this is the hot path, and every header here is a constant.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from starlette.types import Send

from .secheaders import PAGE_HEADERS

# The 43-byte transparent 1x1 GIF89a, byte-identical to nginx's empty_gif.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x01\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02L\x01\x00;"
)

GIF_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"image/gif"),
    (b"content-length", b"%d" % len(GIF)),
    (b"cache-control", b"no-store, no-cache, must-revalidate, private, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-robots-tag", b"noindex"),
]
_GIF_START = {"type": "http.response.start", "status": 200, "headers": GIF_HEADERS}
_GIF_BODY = {"type": "http.response.body", "body": GIF}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}

REDIRECT_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"content-length", b"0"),
]


async def send_gif(send: Send, head: bool) -> None:
    await send(_GIF_START)
    await send(_EMPTY_BODY if head else _GIF_BODY)


async def send_redirect(send: Send, location: str) -> None:
    """302 to ``location``, which must already be a validated, ASCII-only URL."""
    headers = [(b"location", location.encode("ascii")), *REDIRECT_HEADERS]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send(_EMPTY_BODY)


BLANK = b"<!doctype html><meta charset=utf-8><meta name=robots content=noindex><title></title>"
BLANK_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-length", b"%d" % len(BLANK)),
    (b"cache-control", b"no-store"),
    *PAGE_HEADERS,
    (b"x-robots-tag", b"noindex"),
]


async def send_blank(send: Send, head: bool) -> None:
    """200 and an empty page nobody should index: the trap link's answer."""
    await send({"type": "http.response.start", "status": 200, "headers": BLANK_HEADERS})
    await send(_EMPTY_BODY if head else {"type": "http.response.body", "body": BLANK})


async def send_page(
    send: Send, status: int, title: str, head: bool, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A small HTML page for a refused link. It never carries a Location header."""
    body = (
        "<!doctype html><meta charset=utf-8><meta name=robots content=noindex>"
        f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        *PAGE_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
