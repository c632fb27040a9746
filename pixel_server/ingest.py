"""``POST /e``: read the body within bounds, check each event, commit the batch, answer per
index (docs/events.md). A plain ASGI callable, like the pixel: single-event beacons are a hot
path too.

The answer is sent after the commit. What cannot be stored answers 503 with ``Retry-After``
and stores nothing; a body that is not a batch of events answers 4xx in the read API's one
JSON error shape; neither ever reaches the store.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from starlette.types import Receive, Scope, Send

from .apikeys import KeyRefused, check_key
from .authlimit import TooManyFailures
from .clientip import stored_ip
from .events import (
    BadBatch,
    Event,
    Rejected,
    Rules,
    ServerCall,
    check_event,
    media_type,
    read_batch,
)
from .eventschema import Registry
from .eventschema import load as load_registry
from .hits import (
    COLUMNS,
    Hit,
    add_flag,
    build_hit,
    request_address,
    request_headers,
    set_traffic,
    set_user_agent,
    set_visitor,
)
from .metrics import Children
from .privacy import CONSENT, REDACTED_FLAG
from .runtime import Runtime
from .traffic import classify
from .validators import split_list

log = logging.getLogger("pixel_server.ingest")

SCHEMA_FLAGS = frozenset(("unknown_event", "schema_violation"))  # said in the answer too
RETRY_AFTER = b"2"  # seconds: a store outage (a lock, a failover) is usually that short
# where an Event's values go in a Hit's row (its "e" is the event column)
_INDEX = {**{name: i for i, name in enumerate(COLUMNS)}, "e": COLUMNS.index("event")}
_PARAMS, _SEQ, _FLAGS = _INDEX["params"], _INDEX["seq"], _INDEX["flags"]
_TS, _IP = _INDEX["ts"], _INDEX["ip"]


def _flat_encoder() -> Callable[[dict[str, Any]], str]:
    """Params as stored: compact JSON, like a pixel's (hits.py), non-ASCII kept.

    ``JSONEncoder.encode`` builds the C encoder anew on every call, which was half its cost
    per event; the C encoder (what ``json`` itself uses) is made once here. No check for
    cycles: params are flat and checked finite (events.py). Without the C module, the pure
    Python encoder."""
    if c_make_encoder is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    chunks = c_make_encoder(None, None, encode_basestring, None, ":", ",", False, False, True)
    return lambda params: "".join(chunks(params, 0))


_params_json = _flat_encoder()
_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
ALLOW = (b"allow", b"POST, OPTIONS")
# a page's script may read when to retry a 503 (CORS hides other headers than the basic ones)
EXPOSE = (b"access-control-expose-headers", b"retry-after")
PREFLIGHT = [
    (b"access-control-allow-methods", b"POST"),
    (b"access-control-allow-headers", b"content-type, content-encoding, authorization"),
    (b"access-control-max-age", b"86400"),
]


class _Refused(Exception):
    """An answer other than 200: ``status``, ``code``, ``message``, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, list(headers)


class EventsEndpoint:
    """``POST /e`` (and its CORS preflight)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        registry = load_registry(s.event_schemas) if s.event_schemas else Registry()
        self.rules = Rules(s.events_max_batch, s.max_params, s.max_value_chars, registry)
        self.max_bytes = s.events_max_bytes
        origins = s.cors_origins.strip()
        self.any_origin = origins == "*"
        self.origins = frozenset(() if self.any_origin else split_list(origins))
        # labels() validates its values and takes a lock on every call: each child once
        self._outcomes = Children(rt.metrics.events)
        self._flagged = Children(rt.metrics.events_flagged)
        self._posts = Children(rt.metrics.event_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {name: value for name, value in raw if name in _INGEST_HEADERS}
        cors: list[tuple[bytes, bytes]] = []
        try:
            cors = self._cors(headers.get(b"origin"))
            if scope["method"] == "OPTIONS":
                await self._send(send, 204, b"", [*cors, *PREFLIGHT, ALLOW])
                return
            if scope["method"] != "POST":
                raise _Refused(405, "method_not_allowed", "POST events to /e", [ALLOW])
            authorization = headers.get(b"authorization")
            server = (
                None if authorization is None else await self._server_call(scope, authorization)
            )
            body = await self._body(receive, headers)
            status, data = 200, await self._ingest(scope, raw, body, headers, server)
        except _Refused as exc:
            error = {"status": exc.status, "code": exc.code, "message": str(exc)}
            status, data, cors = exc.status, _json({"error": error}), [*cors, *exc.headers]
        await self._send(send, status, data.encode(), [_JSON, *cors])

    async def _send(
        self, send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        self._posts(str(status)).inc()
        # a 204 has no Content-Length (RFC 9110 8.6)
        length = [] if status == 204 else [(b"content-length", b"%d" % len(body))]
        head = [*length, _NO_STORE, *headers]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    def _cors(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of the answer; a browser page of an origin not allowed is
        refused (a server call, with no Origin, always passes)."""
        if origin is None:
            return []
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*"), EXPOSE]
        if origin.decode("latin-1") not in self.origins:
            raise _Refused(403, "origin_not_allowed", "pages of this origin may not post events")
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin"), EXPOSE]

    async def _server_call(self, scope: Scope, authorization: bytes) -> ServerCall:
        """A server call: the request carries a live API key with the ingest scope; refused
        with any other Authorization (without one, it is a browser call), and with 429 from
        a network that sent too many wrong ones (authlimit.py)."""
        try:
            network = self.rt.may_attempt("events", scope)
        except TooManyFailures as exc:
            retry = [(b"retry-after", b"%d" % exc.retry_after)]
            raise _Refused(429, "too_many_failures", str(exc), retry) from None
        try:
            await check_key(self.rt.api_keys, authorization.decode("latin-1"), "ingest")
        except KeyRefused as exc:
            if exc.status == 503:
                raise _unavailable(exc.__cause__ or exc) from None
            if exc.status == 401:
                self.rt.attempt_failed("events", network)
            challenge = [(b"www-authenticate", b'Bearer realm="pixel_server"')]
            headers = challenge if exc.status == 401 else []
            raise _Refused(exc.status, exc.code, str(exc), headers) from None
        now_ms = time.time_ns() // 1_000_000
        return ServerCall(now_ms, int(self.rt.settings.events_max_age * 1000))

    async def _body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        limit = self.max_bytes
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise _Refused(413, "too_large", f"the body is larger than {limit} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "incomplete", "the client went away before the body ended")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding == b"gzip":
            return _gunzip(body, limit)
        if encoding != b"identity":
            raise _Refused(415, "unsupported_encoding", "Content-Encoding must be gzip or none")
        return body

    async def _ingest(
        self,
        scope: Scope,
        raw: list[tuple[bytes, bytes]],
        body: bytes,
        headers: dict[bytes, bytes],
        server: ServerCall | None,
    ) -> str:
        try:
            batch = read_batch(body, media_type(headers), self.rules)
        except BadBatch as exc:
            raise _Refused(exc.status, exc.code, str(exc)) from None
        checked = [check_event(item, self.rules, server, batch.plain) for item in batch.items]
        excluded = self._excluded(scope, checked, server is not None)
        events = [
            event for event in checked if isinstance(event, Event) and id(event) not in excluded
        ]
        hits = self._hits(scope, raw, events, server is not None) if events else []
        outcomes = await self._store(hits) if hits else []
        results: list[str] = []
        # (status, reason): counted once below; dicts, as a Counter() costs a microsecond
        tally: dict[tuple[str, str], int] = {}
        flagged: dict[str, int] = {}
        stored = iter(outcomes)
        for index, event in enumerate(checked):
            if isinstance(event, Rejected):
                result = {"index": index, "status": "rejected", "reason": event.reason}
                result["message"] = event.message
                results.append(_json(result))
                key = ("rejected", event.reason)
                tally[key] = tally.get(key, 0) + 1
                continue
            if (
                excluded and id(event) in excluded
            ):  # from PIXEL_EXCLUDE_NETWORKS: answered, not kept
                results.append(f'{{"index":{index},"status":"excluded"}}')
                tally["excluded", ""] = tally.get(("excluded", ""), 0) + 1
                continue
            status = "accepted" if next(stored) else "duplicate"
            key = (status, "")
            tally[key] = tally.get(key, 0) + 1
            shown = event.flags & SCHEMA_FLAGS if status == "accepted" else None
            if shown:
                flags = sorted(shown)
                results.append(_json({"index": index, "status": status, "flags": flags}))
                for flag in flags:
                    flagged[flag] = flagged.get(flag, 0) + 1
            else:  # the common answer, written as _json writes it
                results.append(f'{{"index":{index},"status":"{status}"}}')
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "excluded": 0}
        for (status, reason), n in tally.items():
            self._outcomes(status, reason).inc(n)
            counts[status] += n
        if counts["excluded"]:
            self.rt.metrics.not_stored.labels("event", "excluded").inc(counts["excluded"])
        for flag, n in flagged.items():
            self._flagged(flag).inc(n)
        return (
            f'{{"accepted":{counts["accepted"]},"duplicates":{counts["duplicate"]},'
            f'"rejected":{counts["rejected"]},"results":[{",".join(results)}]}}'
        )

    def _excluded(self, scope: Scope, checked: list[Event | Rejected], server: bool) -> set[int]:
        """The ids (``id()``) of the events from PIXEL_EXCLUDE_NETWORKS: by the address a
        server call gives for its client, else by the request's (full, not yet anonymised)."""
        networks = self.rt.excluded
        if not networks:
            return set()
        own: bool | None = None
        found = set()
        for event in checked:
            if not isinstance(event, Event):
                continue
            if server and event.ip is not None:
                if event.ip in networks:
                    found.add(id(event))
                continue
            if own is None:
                own = self.rt.is_excluded(scope)
            if own:
                found.add(id(event))
        return found

    def _hits(
        self, scope: Scope, raw: list[tuple[bytes, bytes]], events: list[Event], server: bool
    ) -> list[Hit]:
        """The rows of ``events``: what the request says (IP, user agent, DNT) is the same
        for each, so it is read once, into a row each event's values are put in; then what
        each may keep (privacy.py: its consent parameter, the request's signals)."""
        client = scope.get("client")
        peer = client[0] if client else None
        rt, now_ms = self.rt, time.time_ns() // 1_000_000
        headers = request_headers(raw)
        base = build_hit(
            kind="event",
            now_ms=now_ms,
            method="POST",
            params={},
            headers=headers,
            peer=peer,
            client_ip=rt.client_ip,
            flags=set(),
            networks=rt.networks,
            salts=rt.salts,
        )
        request_flags = frozenset(base.flags.split(",")) if base.flags else frozenset()
        template = base.row()
        policy, salt, mode = rt.privacy, rt.salts.salt(now_ms), rt.client_ip.mode
        # the request's own address, for a browser's events (a server call's is the back end)
        address = None if server else request_address(headers, peer, rt.client_ip)
        hits = []
        for event in events:
            values = list(template)
            for key, value in event.fields.items():
                values[_INDEX[key]] = value
            if event.params:
                values[_PARAMS] = _params_json(event.params)
            values[_SEQ] = event.seq
            if event.flags:
                values[_FLAGS] = ",".join(sorted(request_flags | event.flags))
            if event.ts is not None:
                values[_TS] = event.ts
            consent = event.params.get(CONSENT) if event.params else None
            withheld = policy.withholds(base.dnt, base.gpc, consent)
            told = None if event.ip is None else event.ip.strip(" \t")
            if told is not None or (withheld and policy.ip_mode(mode, True) != mode):
                values[_IP] = stored_ip(told or address, policy.ip_mode(mode, withheld), salt)
            hit = Hit(*values)
            if policy.redact(hit):  # before the visitor: a uid may go
                add_flag(hit, REDACTED_FLAG)
            if event.ua is not None:
                set_user_agent(hit, event.ua)
            if server:  # the client's agent and address if told, never the back end's own
                verdict = classify(
                    method="POST",
                    ua=hit.ua if event.ua else None,
                    kind="event",
                    ip=told,
                    vouched=True,
                    networks=rt.networks,
                )
                set_traffic(hit, verdict)
            if rt.settings.visitor_hash and (withheld or hit.uid is None):  # else the uid counts
                set_visitor(hit, salt, told or address, event.ua if server else hit.ua)
            if withheld:
                policy.scrub(hit)
            hits.append(hit)
        return hits

    async def _store(self, hits: list[Hit]) -> list[bool]:
        assert self.rt.events is not None, "lifespan has not started"
        try:
            return await self.rt.events.write(hits)
        except Exception as exc:  # StoreUnavailable, or rows refused: either way a retry
            raise _unavailable(exc) from None


_INGEST_HEADERS = frozenset(
    (b"content-type", b"content-encoding", b"content-length", b"origin", b"authorization")
)


def _unavailable(exc: BaseException) -> _Refused:
    log.warning("events not stored, answered 503: %s", exc)
    message = "the events could not be stored now; send them again later"
    return _Refused(503, "store_unavailable", message, [(b"retry-after", RETRY_AFTER)])


def _gunzip(body: bytes, limit: int) -> bytes:
    """``body`` gunzipped, refused past ``limit`` bytes (a small body can unpack to gigabytes)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise _Refused(400, "bad_gzip", "the body is not gzip") from None
    if len(data) > limit:
        raise _Refused(413, "too_large", f"the body unpacks to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise _Refused(400, "bad_gzip", "the gzip body is cut short or has data after its end")
    return data
