"""``GET|HEAD /t.js`` and ``/t.<hash>.js``: the browser tracker, prepared once at start.

``pixel_server/static/t.js`` is the readable source. What is served is that file without its
whole-line comments, indentation and blank lines (:func:`served_source`), identity or gzip as
the client accepts. ``<hash>`` names those served bytes, so ``/t.<hash>.js`` never changes and
is cached for a year; ``/t.js`` is cached for five minutes, so a new release reaches pages
soon. A hash that is not the current one is 404: the content behind it is gone, and this
service redirects only to signed targets.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files

from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

SOURCE = files("pixel_server").joinpath("static/t.js")
SHORT_CACHE = b"public, max-age=300"
LONG_CACHE = b"public, max-age=31536000, immutable"


def served_source(source: str) -> bytes:
    """``source`` without whole-line ``//`` comments, indentation and blank lines.

    Safe without a JavaScript parser because t.js has no template literals (refused here), so
    no string or regular expression spans lines: a line that starts with ``//`` is a comment,
    and every line break is kept, so automatic semicolon insertion reads the same code.
    """
    if "`" in source:
        raise ValueError("t.js must not use template literals: served_source keeps lines whole")
    lines = (line.strip() for line in source.splitlines())
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("//")).encode()


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (``gzip``, ``x-gzip`` or ``*``, with a
    q-value above zero)."""
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip", "*"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class TrackerScript:
    """The ASGI endpoint for both tracker URLs (GET and HEAD; the routes refuse the rest)."""

    def __init__(self, source: str | None = None) -> None:
        self.body = served_source(SOURCE.read_text("utf-8") if source is None else source)
        # mtime=0: the same bytes on every start and every instance, so ETags agree
        self.gzipped = gzip.compress(self.body, 9, mtime=0)
        self.digest = hashlib.sha256(self.body).hexdigest()[:16]
        self.path = f"/t.{self.digest}.js"

    def routes(self) -> list[Route]:
        return [
            Route("/t.js", self, methods=["GET"]),
            Route("/t.{digest}.js", self, methods=["GET"]),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        digest = scope["path_params"].get("digest")
        if digest is not None and digest != self.digest:
            raise HTTPException(404)  # answered by the app's handler, like any unknown path
        headers = dict(scope["headers"])
        zipped = accepts_gzip(headers.get(b"accept-encoding", b"").decode("latin-1"))
        etag = f'"{self.digest}{"-gzip" if zipped else ""}"'.encode()
        body = self.gzipped if zipped else self.body
        response = [
            (b"content-type", b"text/javascript; charset=utf-8"),
            (b"cache-control", SHORT_CACHE if digest is None else LONG_CACHE),
            (b"etag", etag),
            (b"vary", b"accept-encoding"),
            (b"x-content-type-options", b"nosniff"),
            # a page that sets Cross-Origin-Embedder-Policy may still load it from our origin
            (b"cross-origin-resource-policy", b"cross-origin"),
        ]
        if self._unchanged(headers.get(b"if-none-match", b"")):
            await send({"type": "http.response.start", "status": 304, "headers": response})
            await send({"type": "http.response.body", "body": b""})
            return
        if zipped:
            response.append((b"content-encoding", b"gzip"))
        response.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": 200, "headers": response})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    def _unchanged(self, if_none_match: bytes) -> bool:
        """``If-None-Match`` names either encoding of the current script (weak comparison)."""
        tags = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
        return bool(tags & {b"*", f'"{self.digest}"'.encode(), f'"{self.digest}-gzip"'.encode()})
