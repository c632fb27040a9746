"""What the endpoints share: settings-derived helpers, built once, plus the store and writer
that the lifespan opens and closes."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.types import Scope

from .apikeys import ApiKey, KeyCache
from .authlimit import FailureLimit, TooManyFailures
from .burstpass import burst_pass
from .clientip import ClientIP, Networks, anonymise
from .config import Settings
from .eventsink import EventSink
from .hits import Limits, build_hit, request_address, request_headers
from .keys import Keyring
from .metrics import Metrics
from .networks import load as load_networks
from .privacy import Policy
from .refused import flushing
from .retention import purging
from .revocations import NOTHING_REVOKED, Revoked
from .salts import DaySalts, rotating
from .signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner
from .snapshot import Snapshot
from .spill import Spill
from .store import Store, open_store
from .traffic import Verdict
from .urls import TargetPolicy
from .useragent import warm_up
from .writer import Writer

log = logging.getLogger("pixel_server")


@dataclass
class Runtime:
    settings: Settings
    keyring: Keyring
    metrics: Metrics = field(default_factory=Metrics)
    store: Store | None = None  # None: the lifespan opens the store the settings name
    writer: Writer | None = None
    events: EventSink | None = None  # POST /e's group commit, opened with the writer
    # requests refused before they became a hit, per (kind, reason): refused.py writes them
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        s = self.settings
        self.limits = Limits(s.max_query_bytes, s.max_params, s.max_value_chars)
        self.client_ip = ClientIP(s.ip_mode, s.trusted_proxies)
        self.privacy = Policy.from_settings(s)
        self.failures = FailureLimit(s.auth_failures)  # wrong secrets, per network
        self.salts = DaySalts(s.report_zone)  # the visitor hash's and PIXEL_IP_MODE=hash's
        self.networks = load_networks(s.networks)  # known networks, for traffic classes
        self.pixel_tokens = TokenSigner(self.keyring, PIXEL_SALT, s.max_token_bytes)
        self.link_tokens = TokenSigner(self.keyring, REDIRECT_SALT, s.max_token_bytes)
        self.target_policy = TargetPolicy.from_settings(s)
        self.api_keys = KeyCache(self._load_keys)
        self.excluded = Networks(s.exclude_networks)
        self.revoked = Snapshot(self._load_revoked, NOTHING_REVOKED, s.revocations_ttl)

    async def _load_revoked(self) -> Revoked:
        assert self.store is not None, "lifespan has not started"
        try:
            return Revoked.of(await self.store.revocations())
        except Exception:
            self.metrics.revocations_stale.inc()
            raise

    def address_of(self, scope: Scope) -> str | None:
        """The request's client address, full (not yet anonymised)."""
        client = scope.get("client")
        return request_address(
            request_headers(scope["headers"]), client[0] if client else None, self.client_ip
        )

    def is_excluded(self, scope: Scope) -> bool:
        """Whether the request comes from PIXEL_EXCLUDE_NETWORKS (by its full address)."""
        return self.address_of(scope) in self.excluded

    def may_attempt(self, surface: str, scope: Scope) -> str | None:
        """The request's network, if it may try a secret now; TooManyFailures otherwise."""
        address = self.address_of(scope)
        network = None if address is None else anonymise(address, "truncate")
        try:
            self.failures.check(network)
        except TooManyFailures:
            self.metrics.auth_limited.labels(surface).inc()
            raise
        return network

    def attempt_failed(self, surface: str, network: str | None) -> None:
        self.metrics.auth_failures.labels(surface).inc()
        self.failures.failed(network)

    async def _load_keys(self) -> list[ApiKey]:
        assert self.store is not None, "lifespan has not started"
        return await self.store.api_keys()

    async def record(
        self,
        kind: str,
        scope: Scope,
        params: Mapping[str, str],
        flags: set[str],
        send: tuple[int | None, str | None] = (None, None),
        verdict: Verdict | None = None,
    ) -> bool:
        """Build the hit, queue it and wait for its commit. True once it is stored.

        ``send`` is the send time and message id of the email a token was in. A request from
        PIXEL_EXCLUDE_NETWORKS is counted, not stored (False)."""
        if self.excluded and self.is_excluded(scope):
            self.metrics.not_stored.labels(kind, "excluded").inc()
            return False
        client = scope.get("client")
        hit = build_hit(
            kind=kind,
            now_ms=time.time_ns() // 1_000_000,
            method=scope["method"],
            params=params,
            headers=request_headers(scope["headers"]),
            peer=client[0] if client else None,
            client_ip=self.client_ip,
            flags=flags,
            networks=self.networks,
            sent=send[0],
            msg=send[1],
            verdict=verdict,
            policy=self.privacy,
            salts=self.salts,
            visitors=self.settings.visitor_hash,
        )
        assert self.writer is not None, "lifespan has not started"
        future = self.writer.submit(hit)
        return False if future is None else await future


# the young generation is collected every this many net allocations (Python's default: 700);
# the older ones every 10 collections of the one below, as by default
GC_YOUNG = 10_000


def settle_gc() -> None:
    """Keep what startup built out of the cyclic collector's scans, and collect less often.

    A batch of events allocates a few objects per event (parsed JSON, a row), nearly all freed
    by reference counting; at Python's default threshold the collector still ran several times
    a request and scanned the modules, the user-agent regexes and everything else startup
    built each time it reached the oldest generation: 11% of the events profile (an
    in-process run of events-20, docs/benchmarks.md). ``gc.freeze`` moves every object alive
    now to a generation no collection scans (objects freed later are still freed);
    cyclic garbage made while serving is still collected, in larger steps.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 10, 10)


@asynccontextmanager
async def lifespan(rt: Runtime) -> AsyncIterator[None]:
    """Open the store and writer; on shutdown drain the writer, then close the store."""
    s = rt.settings
    store = rt.store
    shown = type(store).__name__
    if store is None:
        store, shown = open_store(s), s.store.shown
    await store.open()
    rt.metrics.watch_store(store)
    spill = None if s.spill_path is None else Spill(s.spill_path, s.spill_max_bytes)
    try:
        rt.store = store
        await rt.revoked.refresh()  # the store just opened: a failure keeps none revoked
        warm_up()
        settle_gc()
        async with (
            Writer(
                store,
                rt.metrics,
                queue_max=s.queue_max,
                batch_max=s.batch_max,
                ack_timeout=s.ack_timeout,
                drain_timeout=s.drain_timeout,
                spill=spill,
            ) as writer,
            EventSink(store, s.batch_max) as events,
            burst_pass(store, s, rt.metrics),
            flushing(rt, store),
            rotating(rt.salts, store),
            purging(s, store),
        ):
            rt.writer, rt.events = writer, events
            log.info("serving; store=%s", shown)
            if not await store.rollups_complete():
                log.warning(
                    "the rollups do not cover every stored hit (hits from before them, or"
                    " another PIXEL_REPORT_ZONE): reports read the hits, slower, until"
                    " `pixel-server rollups rebuild`"
                )
            yield
    finally:
        if spill is not None:
            spill.close()
        await store.aclose()


def app_lifespan(rt: Runtime) -> Any:
    @asynccontextmanager
    async def run(_app: Starlette) -> AsyncIterator[None]:
        async with lifespan(rt):
            yield

    return run
