"""``/api/revocations``: revoke links, campaigns and targets (revocations.py), behind an API
key with the admin scope or a ``PIXEL_API_TOKENS`` token.

* ``POST`` a JSON object ``{"link": "<URL or token>"}``, ``{"cid": "spring"}`` (maybe with
  ``"target"``), or ``{"target": "<URL or host>"}``, each with an optional ``"reason"`` and
  ``"offer_continue"``: ``201 {"revocation": {...}}``;
* ``GET``: ``200 {"revocations": [...]}``, oldest first;
* ``DELETE`` with ``{"id": "<its id>"}`` or the object it was made with: ``200
  {"revocation": {...}}`` (undone), 404 ``not_found`` if there is no such revocation.

A bad body answers 400 ``bad_json``, ``bad_item``, ``bad_link``, ``bad_cid``, ``bad_target``,
``bad_reason`` or ``bad_offer_continue``; 413 ``body_too_large``; the store down 503. This
server sees a change at once, the others within ``PIXEL_REVOCATIONS_TTL``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ApiError, guard, store_unavailable
from .links_api import no_duplicate_keys, read_body
from .revocations import Revocation, RevocationError, from_request
from .runtime import Runtime
from .urls import normalize_target

MAX_BODY_BYTES = 64 << 10


class RevocationsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "DELETE"]
        return [Route("/revocations", guard(self.rt, self.revocations, "admin"), methods=methods)]

    async def revocations(self, request: Request) -> Response:
        """List (GET), add (POST) or undo (DELETE) revocations."""
        store = self.rt.store
        assert store is not None, "lifespan has not started"
        if request.method == "GET":
            try:
                rules = await store.revocations()
            except Exception:
                raise store_unavailable("/api/revocations") from None
            return _answer({"revocations": [rule.as_dict() for rule in rules]})
        item = _parse(await read_body(request, MAX_BODY_BYTES))
        if request.method == "DELETE" and isinstance(item, dict) and set(item) == {"id"}:
            rule_id = item["id"]
            if not isinstance(rule_id, str):
                raise ApiError(400, "bad_id", "'id' must be a string")
        else:
            rule = self._rule(item)
            rule_id = rule.id
            if request.method == "POST":
                try:
                    await store.add_revocation(rule)
                except Exception:
                    raise store_unavailable("/api/revocations") from None
                await self.rt.revoked.refresh()
                return _answer({"revocation": rule.as_dict()}, 201)
        try:
            removed = await store.remove_revocation(rule_id)
        except Exception:
            raise store_unavailable("/api/revocations") from None
        if removed is None:
            raise ApiError(404, "not_found", "There is no such revocation.")
        await self.rt.revoked.refresh()
        return _answer({"revocation": removed.as_dict()})

    def _rule(self, item: Any) -> Revocation:
        rt = self.rt
        try:
            return from_request(
                item,
                rt.link_tokens.loads,
                lambda url: normalize_target(url, rt.target_policy),
                time.time_ns() // 1_000_000,
            )
        except RevocationError as exc:
            raise ApiError(400, f"bad_{exc.param}", str(exc)) from None


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body, object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"Cannot read the body as JSON: {exc}") from None


def _answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
