"""The read API under ``/api``: hits as JSON pages, CSV and NDJSON, behind bearer tokens.

Every error, here and for unknown ``/api`` paths, has one shape::

    {"error": {"status": 400, "code": "bad_filter", "message": "..."}}

A request is validated whole, and the exports read their first page, before the first byte is
sent, so any error that can be answered is answered in that shape. A store failure later in an
export cannot change the 200 already sent: the export is then cut off without the end of its
chunked body, so that curl, browsers and HTTP libraries report a failed download instead of a
complete but short file.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .apikeys import KeyRefused, check_key, split_key
from .authlimit import TooManyFailures
from .export import csv_header, csv_rows, iter_pages, ndjson_rows, present
from .query import MAX_LIMIT, HitQuery, QueryError, format_cursor
from .runtime import Runtime

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("pixel_server.api")


class ApiError(Exception):
    """Raised inside an API endpoint; becomes the JSON error shape with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ExportAborted(RuntimeError):
    """Raised out of the ASGI app when an export fails after its 200 was sent, so the server
    closes the connection without ending the chunked body (not an OSError, which Starlette
    would read as the client going away)."""


def store_unavailable(what: str) -> ApiError:
    """Log the store failure being handled and build its 503."""
    log.exception("%s failed: the hit store could not be read", what)
    return ApiError(
        503,
        "store_unavailable",
        "The hit store cannot be read right now; try again later.",
        {"Retry-After": "5"},
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"status": status, "code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 for /api paths in our error shape; plain text elsewhere."""
    assert isinstance(exc, HTTPException)
    if request.scope["path"].startswith("/api"):  # not request.url: it re-decodes the query
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
    return Response(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def authorize(request: Request, rt: Runtime, scope: str) -> None:
    """Let the request through if it carries a PIXEL_API_TOKENS token, or an API key with
    ``scope`` (apikeys.py); raise the ApiError that answers it otherwise. A network that sent
    too many wrong ones is answered 429 first (authlimit.py)."""
    authorization = request.headers.get("authorization", "")
    network = attempt(rt, "api", request) if authorization else None  # no secret: no attempt
    try:
        await _authorize(rt, request, authorization, scope)
    except ApiError as exc:
        if exc.status == 401 and authorization:
            rt.attempt_failed("api", network)
        raise


def attempt(rt: Runtime, surface: str, request: Request) -> str | None:
    """The request's network, if it may try a secret; the 429 ApiError otherwise."""
    try:
        return rt.may_attempt(surface, request.scope)
    except TooManyFailures as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        raise ApiError(429, "too_many_failures", str(exc), headers) from None


async def _authorize(rt: Runtime, request: Request, authorization: str, scope: str) -> None:
    if split_key(authorization.partition(" ")[2].strip()) is None:
        tokens = rt.settings.api_token_list
        if not tokens:  # only keys can open it: say how to get one, whatever was sent
            raise _unauthorized(
                f"send an API key with the {scope} scope (`pixel-server keys create --scope"
                f" {scope}`); PIXEL_API_TOKENS is not set, so no other token is accepted"
            )
        check_token(request, tokens)
        return
    try:
        await check_key(rt.api_keys, authorization, scope)
    except KeyRefused as exc:
        if exc.status == 503:
            raise store_unavailable("reading API keys") from None
        if exc.status == 401:
            raise _unauthorized(str(exc)) from None
        raise ApiError(exc.status, exc.code, str(exc)) from None


def _unauthorized(why: str = "") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        f"Send a valid token: Authorization: Bearer <token>{'; ' + why if why else '.'}",
        {"WWW-Authenticate": 'Bearer realm="pixel_server"'},
    )


def check_token(request: Request, tokens: tuple[str, ...]) -> None:
    """Pass if the request's bearer token is one of ``tokens``; the 401 ApiError if not."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare against every token, always, so timing says nothing about which was close
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not matched:
        raise _unauthorized()


def guard(rt: Runtime, handler: Handler, scope: str = "read") -> Handler:
    """``handler`` behind :func:`authorize`, its ApiErrors answered in the one shape."""

    async def endpoint(request: Request) -> Response:
        try:
            await authorize(request, rt, scope)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)

    return endpoint


class HitsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [
            Route("/hits", self._guard(self.hits), methods=["GET"]),
            Route("/hits.csv", self._guard(self.hits_csv), methods=["GET"]),
            Route("/hits.ndjson", self._guard(self.hits_ndjson), methods=["GET"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        return guard(self.rt, handler)

    def _query(self, request: Request, max_limit: int | None = MAX_LIMIT) -> HitQuery:
        # every (name, value) pair, so that a repeated filter is refused, not "last one wins"
        params = request.query_params.multi_items()
        try:
            return HitQuery.from_params(params, max_limit=max_limit)
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from None

    async def hits(self, request: Request) -> Response:
        """``GET /api/hits``: one page, newest first, with ``next_cursor`` for the next."""
        query = self._query(request)
        query = replace(query, limit=query.page_size)
        assert self.rt.store is not None
        try:
            rows = await self.rt.store.query(query)
        except Exception:  # any store failure: logged, answered 503 in our shape
            raise store_unavailable(request.scope["path"]) from None
        more = len(rows) == query.limit
        return JSONResponse(
            {
                "hits": [present(row) for row in rows],
                "next_cursor": format_cursor(rows[-1]) if rows and more else None,
            }
        )

    async def _stream(
        self, request: Request, header: str, lines: Callable[[Sequence[Sequence[Any]]], str]
    ) -> AsyncIterator[str]:
        """The export body, after validating the request and reading the first page."""
        query = self._query(request, None)
        store = self.rt.store
        assert store is not None
        path = request.scope["path"]
        pages = iter_pages(store, replace(query, limit=None), query.limit)
        try:
            first = await anext(pages, None)
        except Exception:  # as in hits(): nothing is sent yet, so a 503
            raise store_unavailable(path) from None

        async def body() -> AsyncIterator[str]:
            sent = 0
            if header:
                yield header
            if first is None:
                return
            try:
                yield lines(first)  # one chunk per page, not one per row
                sent = len(first)
                async for page in pages:
                    yield lines(page)
                    sent += len(page)
            except Exception as exc:
                log.error("%s aborted after %d rows, cut off unfinished: %r", path, sent, exc)
                raise ExportAborted(f"{path} aborted after {sent} rows") from exc

        return body()

    async def hits_csv(self, request: Request) -> Response:
        """``GET /api/hits.csv``: every matching hit (``limit`` caps the count), streamed."""
        body = await self._stream(request, csv_header(), csv_rows)
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="hits.csv"'},
        )

    async def hits_ndjson(self, request: Request) -> Response:
        """``GET /api/hits.ndjson``: like the CSV export, one JSON object per line."""
        body = await self._stream(request, "", ndjson_rows)
        return StreamingResponse(body, media_type="application/x-ndjson")
