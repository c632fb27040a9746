"""``POST /api/links``: sign many redirect links in one request, behind the API token.

The body is a JSON array (at most :data:`MAX_LINKS` items, :data:`MAX_BODY_BYTES` bytes) of::

    {"url": "https://shop.example/sale", "cid": "spring", "uid": "r-1042",
     "utm_source": "newsletter", "fields": {"list": "vip"}, "expires": "90d",
     "append_utm": true}

Only ``url`` is required. The answer is ``200 {"links": [...], "errors": <count>}``, one entry
per item in request order: ``{"link": "<signed URL>", "target": "<canonical target>"}``, or
``{"error": {"status": 400, "code": "bad_expires", "message": "..."}}`` for an item that
cannot be signed (the same rules as ``pixel-server link``, see links.py). A request that is
not such an array gets the API's one error shape: 400 ``bad_json``, 413 ``body_too_large`` or
``too_many_links``, 401/403 without a valid token, 409 ``no_public_url`` when the server
listens on every address (``PIXEL_HOST=0.0.0.0``) without ``PIXEL_PUBLIC_URL``: its links
would point at ``http://0.0.0.0:8000``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, authorize, error_response
from .config import ConfigError
from .links import LinkError, Minter, public_base, spec_from_json
from .runtime import Runtime

T = TypeVar("T")
MAX_LINKS = 10_000
MAX_BODY_BYTES = 8 << 20  # 10,000 items with a few fields each fit in ~2 MB


class LinksApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [Route("/links", self.links, methods=["POST"])]

    async def links(self, request: Request) -> Response:
        """``POST /api/links``: signed links for a JSON array of link requests."""
        try:
            items, base = await signing_request(request, self.rt, MAX_BODY_BYTES, parse_items)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        # signing 10,000 links takes a few hundred ms of CPU: off the event loop, so the
        # pixels and redirects this process serves meanwhile are not held up behind it
        results = await run_in_threadpool(self.mint_all, items, base)
        errors = sum("error" in result for result in results)
        return JSONResponse({"links": results, "errors": errors})

    def mint_all(self, items: list[Any], base: str) -> list[dict[str, Any]]:
        rt = self.rt
        minter = Minter(rt.link_tokens, base, rt.target_policy, rt.settings.max_token_bytes)
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                url, spec = spec_from_json(item)
                link = minter.mint(spec, url)
                results.append({"link": link, "target": minter.target(url)})
            except LinkError as exc:
                error = {"status": 400, "code": exc.code, "message": str(exc)}
                results.append({"error": error})
        return results


async def signing_request(
    request: Request, rt: Runtime, limit: int, parse: Callable[[bytes], T]
) -> tuple[T, str]:
    """What a signing endpoint (``/api/links``, ``/api/wrap``) checks first, in this order:
    the admin scope (or a token), the body within ``limit`` bytes read by ``parse``, and the
    public base URL its links are printed under (409 ``no_public_url``); ApiError otherwise."""
    await authorize(request, rt, "admin")
    body = parse(await read_body(request, limit))
    try:
        return body, public_base(rt.settings)
    except ConfigError as exc:
        raise ApiError(409, "no_public_url", str(exc)) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = ApiError(413, "body_too_large", f"The body must be at most {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_items(body: bytes) -> list[Any]:
    """The JSON array of a request body, or 400/413 in the API's error shape."""
    try:
        items = json.loads(body, object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"Cannot read the body as JSON: {exc}") from None
    if not isinstance(items, list):
        raise ApiError(400, "bad_json", "The body must be a JSON array of link requests.")
    if len(items) > MAX_LINKS:
        raise ApiError(
            413, "too_many_links", f"At most {MAX_LINKS} links per request ({len(items)} sent)."
        )
    return items


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"cid": "a", "cid": "b"} would silently sign "b": refuse it, like --field cid=x --cid y
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj
