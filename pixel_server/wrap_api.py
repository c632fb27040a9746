"""``POST /api/wrap``: an HTML email wrapped for one recipient (wrap.py), behind the API token
or a key with the admin scope, as ``POST /api/links``.

The body is a JSON object (at most :data:`MAX_BODY_BYTES` bytes)::

    {"html": "<html>...</html>", "cid": "spring", "uid": "r-1042",
     "utm_source": "newsletter", "fields": {"list": "vip"}, "expires": "90d",
     "append_utm": false, "pixel": true, "sent_at": "2026-03-01T09:00Z",
     "message_id": "spring-1", "trap": false}

Only ``html`` is required; ``sent_at`` (default now: the send time the tokens carry) is
``now``, epoch seconds or an ISO time, ``message_id`` the id of the send; ``trap``: true
inserts the hidden trap link (docs/traffic.md). The answer is
``200 {"html": "...", "links": <tracked links>, "targets": [<each distinct canonical
target>]}``. Anything else answers in the API's error shape: 400 ``bad_json`` (not a JSON
object, a key twice), ``bad_item``, ``bad_field``, ``bad_expires``, ``bad_sent_at``,
``bad_message_id``, ``bad_url`` (a target the redirect rules refuse: it is named),
``bad_token``; 413 ``body_too_large``; 401/403 without a valid token or key; 409
``no_public_url``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, error_response
from .fields import NAMED_KEYS
from .links import LinkError, Minter, spec_of_item
from .links_api import no_duplicate_keys, signing_request
from .runtime import Runtime
from .wrap import Template, skip_patterns

MAX_BODY_BYTES = 4 << 20  # Gmail clips a message past 102 KB; 4 MiB is any email
BODY_KEYS = frozenset(
    (
        "html",
        "pixel",
        "fields",
        "expires",
        "append_utm",
        "notrack",
        "trap",
        "leave",
        "fields",
        "expires",
        "append_utm",
        "sent_at",
        "message_id",
        *NAMED_KEYS,
    )
)


class WrapApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        return [Route("/wrap", self.wrap, methods=["POST"])]

    async def wrap(self, request: Request) -> Response:
        """``POST /api/wrap``: the email of the body, wrapped."""
        try:
            body, base = await signing_request(request, self.rt, MAX_BODY_BYTES, parse_body)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        try:  # a large email takes milliseconds to tokenize and sign: off the event loop
            answer = await run_in_threadpool(self.wrapped, body, base)
        except LinkError as exc:
            return error_response(400, exc.code, str(exc))
        return JSONResponse(answer)

    def wrapped(self, body: dict[str, Any], base: str) -> dict[str, Any]:
        rt, limit = self.rt, self.rt.settings.max_token_bytes
        unknown = sorted(set(body) - BODY_KEYS)
        if unknown:
            message = f"unknown key {unknown[0][:40]!r}; extra fields go in the 'fields' object"
            raise LinkError("item", message)
        source, pixel = body.get("html"), body.get("pixel", True)
        if not isinstance(source, str):
            raise LinkError("item", "'html' must be a string: the email")
        trap = body.get("trap", False)
        if not isinstance(pixel, bool) or not isinstance(trap, bool):
            raise LinkError("item", "'pixel' and 'trap' must be true or false")
        leave = body.get("leave", [])
        if not isinstance(leave, list) or not all(isinstance(p, str) for p in leave):
            raise LinkError("item", "'leave' must be a list of regular expressions")
        try:
            skip = skip_patterns(leave)
        except ValueError as exc:
            raise LinkError("item", str(exc)) from None
        body = {"sent_at": "now", **body}  # a wrapped email is timed from its send
        link_spec = spec_of_item(body, link=True)
        pixel_spec = spec_of_item({**body, "append_utm": False, "notrack": False}, link=False)
        links = Minter(rt.link_tokens, base, rt.target_policy, limit)
        pixels = Minter(rt.pixel_tokens, base, None, limit)
        template = Template.parse(source, wrapped_prefix=f"{base}/r/", skip=skip)
        signed = links.mint_each(link_spec, template.targets())
        pixel_url = pixels.mint(pixel_spec) if pixel else None
        trap_url = links.mint_trap(link_spec) if trap else None
        text = template.render(signed.__getitem__, pixel_url, trap_url)
        targets = list(dict.fromkeys(links.target(target) for target in signed))
        return {"html": text, "links": len(template.links), "targets": targets}


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or 400 in the API's error shape."""
    try:
        value = json.loads(body, object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"Cannot read the body as JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", 'The body must be a JSON object: {"html": ...}.')
    return value
