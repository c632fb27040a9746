"""The page of a link that no longer redirects: expired (its ``x`` passed) or revoked.

``410 Gone`` with a small HTML page naming the target's host: "This link has expired —
continue to shop.example?". It links on to the target only when that is the signed target
and the URL policy still allows it (urls.py), and for a revoked link only if it was revoked
with ``--offer-continue``. Everything shown is escaped; the page has no script, and its
Content-Security-Policy allows none (nor styles, frames, forms, or a base URL); it is not
indexed and sends no Referer on.
"""

from __future__ import annotations

import html

from starlette.types import Send

from .revocations import host_of
from .secheaders import PAGE_HEADERS

HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    *PAGE_HEADERS,
    (b"x-robots-tag", b"noindex"),
]
EXPIRED = "This link has expired"
REVOKED = "This link is no longer available"


def render(title: str, target: str | None, location: str | None, reason: str = "") -> bytes:
    """The page: ``title``, the host of ``target``, a link on to ``location`` if given (the
    caller has checked it may be followed), and ``reason`` if any."""
    host = html.escape(host_of(target) if target else "")
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        "<meta name=robots content=noindex><meta name=referrer content=no-referrer>",
        f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>",
    ]
    if reason:
        parts.append(f"<p>{html.escape(reason)}</p>")
    if location is not None and host:
        href = html.escape(location, quote=True)
        parts.append(
            f"<p>{html.escape(title)} — continue to "
            f'<a href="{href}" rel="noreferrer noopener nofollow">{host}</a>?</p>'
        )
    elif host:
        parts.append(f"<p>It led to {host}.</p>")
    return "".join(parts).encode()


async def send_interstitial(
    send: Send,
    head: bool,
    title: str,
    target: str | None,
    location: str | None,
    reason: str = "",
) -> None:
    """Answer 410 with :func:`render`'s page (no Location header, ever)."""
    body = render(title, target, location, reason)
    headers = [*HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 410, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
