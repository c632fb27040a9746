"""The tracking endpoints as plain ASGI callables: parse, record, respond.

They skip Starlette's Request/Response objects because they are the hot path. Each answers
only after its hit is committed (or released after ``PIXEL_ACK_TIMEOUT``). A pixel answers
with the GIF whatever happens; a redirect goes only to a target that is signed and still
passes validation.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from starlette.types import Receive, Scope, Send

from .hits import parse_query
from .interstitial import EXPIRED, REVOKED, send_interstitial
from .payload import (
    TARGET,
    InvalidToken,
    check_expiry,
    hit_fields,
    is_notrack,
    is_trap,
    read_send,
    read_target,
    redirect_location,
)
from .responses import send_blank, send_gif, send_page, send_redirect
from .runtime import Runtime
from .traffic import Verdict
from .urls import TargetRejected, normalize_target

log = logging.getLogger("pixel_server.endpoints")

# A campaign's links share a few targets, and validation is a pure function of the target and
# the (fixed) policy. Refusals raise, so they are never cached.
valid_target = lru_cache(maxsize=4096)(normalize_target)

ALLOW = [(b"allow", b"GET, HEAD")]
TRAP_VERDICT = Verdict("link_scanner", ("trap",))  # bursts.py marks its message's other clicks


class _Endpoint:
    """A GET/HEAD-only ASGI endpoint; subclasses implement :meth:`handle`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await send_page(send, 405, "Method not allowed", False, ALLOW)
            return
        await self.handle(scope, send, method == "HEAD")

    async def handle(self, scope: Scope, send: Send, head: bool) -> None:
        raise NotImplementedError


class PixelEndpoint(_Endpoint):
    """``GET|HEAD /p.gif?...``: a view, identified by its query parameters."""

    async def handle(self, scope: Scope, send: Send, head: bool) -> None:
        try:
            flags: set[str] = set()
            params = parse_query(scope["query_string"], self.rt.limits, flags)
            await self.rt.record("view", scope, params, flags)
        except Exception:  # the GIF goes out whatever happens; the loss is logged and counted
            log.exception("pixel hit not recorded")
            self.rt.metrics.dropped.labels("view", "internal_error").inc()
        await send_gif(send, head)


class SignedPixelEndpoint(_Endpoint):
    """``GET|HEAD /p/<token>.gif``: an email open; ids come only from the signed token."""

    async def handle(self, scope: Scope, send: Send, head: bool) -> None:
        try:
            payload = self.rt.pixel_tokens.loads(scope["path_params"]["token"])
            check_expiry(payload)
        except InvalidToken as exc:
            # forged, tampered or expired: still a GIF, but never counted as an open
            self.rt.metrics.tokens_invalid.labels("pixel", exc.reason).inc()
            self.rt.refused[("pixel", exc.reason)] += 1
        else:
            try:
                params, flags = hit_fields(payload, self.rt.limits.max_value_chars)
                await self.rt.record("open", scope, params, flags, read_send(payload))
            except Exception:
                log.exception("open not recorded")
                self.rt.metrics.dropped.labels("open", "internal_error").inc()
        await send_gif(send, head)


class RedirectEndpoint(_Endpoint):
    """``GET|HEAD /r/<token>``: a click, then 302 to the signed target.

    The query string of the request is ignored: it can neither change the target nor add
    ids. A bad token answers 400, a target that no longer passes validation 403; an expired
    or revoked link 410 with a page that may link on to the target (interstitial.py); none
    of these carries a Location header. A link signed ``notrack`` redirects without storing
    its click.
    """

    async def handle(self, scope: Scope, send: Send, head: bool) -> None:
        metrics = self.rt.metrics
        try:
            payload = self.rt.link_tokens.loads(scope["path_params"]["token"])
            if is_trap(payload):
                await self._trap(scope, send, head, payload)
                return
            target = read_target(payload)
        except InvalidToken as exc:
            metrics.tokens_invalid.labels("link", exc.reason).inc()
            self.rt.refused[("link", exc.reason)] += 1
            if exc.reason == "expired":
                await self._expired(send, head, payload)
            else:
                await send_page(send, 400, "This link is not valid", head)
            return
        if not self._allowed(target):
            await send_page(send, 403, "This link's destination is not allowed", head)
            return
        location = redirect_location(payload, target)
        revoked = self.rt.revoked.current()
        if revoked.rules:
            rule = revoked.match(payload, target)
            if rule is not None:
                metrics.redirects_revoked.inc()
                onward = location if rule.offer_continue else None
                await send_interstitial(send, head, REVOKED, target, onward, rule.reason)
                return
        if is_notrack(payload):
            metrics.not_stored.labels("click", "notrack").inc()
        else:
            try:
                params, flags = hit_fields(payload, self.rt.limits.max_value_chars, location)
                await self.rt.record("click", scope, params, flags, read_send(payload))
            except Exception:  # the visitor still gets where they were going
                log.exception("click not recorded")
                metrics.dropped.labels("click", "internal_error").inc()
        await send_redirect(send, location)

    def _allowed(self, target: str) -> bool:
        """Whether the URL policy allows ``target`` now (validated again at redirect time:
        the policy may have tightened since signing); a refusal is counted."""
        try:
            if valid_target(target, self.rt.target_policy) != target:
                raise TargetRejected("not_canonical", "target is not in canonical form")
        except TargetRejected as exc:
            self.rt.metrics.redirects_refused.labels(exc.reason).inc()
            return False
        return True

    async def _expired(self, send: Send, head: bool, payload: dict[str, Any]) -> None:
        """The expired page; it links on only to a signed target the policy allows."""
        target = payload.get(TARGET)
        if not isinstance(target, str):
            await send_interstitial(send, head, EXPIRED, None, None)
            return
        onward = redirect_location(payload, target) if self._allowed(target) else None
        await send_interstitial(send, head, EXPIRED, target, onward)

    async def _trap(self, scope: Scope, send: Send, head: bool, payload: dict[str, Any]) -> None:
        """A click on a wrapped email's hidden link: stored as a scanner's, answered with a
        blank page (there is nowhere to go)."""
        try:
            params, flags = hit_fields(payload, self.rt.limits.max_value_chars)
            await self.rt.record("click", scope, params, flags, read_send(payload), TRAP_VERDICT)
        except Exception:
            log.exception("trap click not recorded")
            self.rt.metrics.dropped.labels("click", "internal_error").inc()
        await send_blank(send, head)
