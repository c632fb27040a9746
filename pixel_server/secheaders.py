"""Security headers: what every HTML page carries, and HSTS when it is configured.

Every HTML answer — the pages of a refused or expired link, the trap link's blank page, the
dashboard, an error page — carries a Content-Security-Policy that allows no script at all
(``default-src 'none'``: no inline script, no ``eval``, no other origin) and cannot be framed
(``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for older browsers), plus
``Referrer-Policy`` and ``X-Content-Type-Options: nosniff``. The pages the hot path sends
build these in (:data:`PAGE_HEADERS`); :class:`SecurityHeaders` adds whichever is missing to
every other HTML answer.

``PIXEL_HSTS_SECONDS`` (0: off) adds ``Strict-Transport-Security`` to every answer, the GIF
included: set it only when every client reaches the service over TLS (a browser ignores the
header over plain HTTP, but remembers it for ``max-age`` seconds once seen over HTTPS).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = b"default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# every HTML page of the hot path (responses.py, interstitial.py)
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)
_PAGE_NAMES = frozenset(name for name, _ in PAGE_HEADERS)


def hsts_value(seconds: int) -> bytes:
    return b"max-age=%d; includeSubDomains" % seconds


class SecurityHeaders:
    """ASGI middleware: the headers of :data:`PAGE_HEADERS` an HTML answer lacks (a page may
    set its own, stricter or looser where it needs to: the dashboard's styles), and HSTS on
    every answer when ``hsts_seconds`` is set."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        hsts = (b"strict-transport-security", hsts_value(hsts_seconds))
        self.hsts = (hsts,) if hsts_seconds else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":  # a copy: some are shared constants
                headers = completed(list(message.get("headers", ())), self.hsts)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def completed(
    headers: list[tuple[bytes, bytes]], always: tuple[tuple[bytes, bytes], ...] = ()
) -> list[tuple[bytes, bytes]]:
    """``headers`` plus ``always`` and, for an HTML answer, the page headers it lacks."""
    names = {name.lower() for name, _ in headers}
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
    if content_type.lower().startswith(b"text/html"):
        headers.extend(h for h in PAGE_HEADERS if h[0] not in names)
    headers.extend(h for h in always if h[0] not in names)
    return headers


def with_hsts(send: Send, hsts_seconds: int) -> Send:
    """``send``, adding HSTS to the answer's head (the hot path's routes, when configured)."""
    header = (b"strict-transport-security", hsts_value(hsts_seconds))

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending
