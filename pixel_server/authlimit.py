"""Failed authentication attempts, limited per client network.

Every place that checks a secret — the API (tokens and keys), ``POST /e``'s server keys, the
dashboard's login, ``/metrics`` — reports a wrong one here, by the client's network (its /24
or /48, clientip.py: one host cannot dodge the limit by hopping addresses within its network).
A network gets ``PIXEL_AUTH_FAILURES`` wrong attempts, then one more per ``60 /
PIXEL_AUTH_FAILURES`` seconds (a token bucket); past that, every attempt from it is answered
429 with ``Retry-After`` before its secret is even looked at, the right one too, so guessing
costs a minute per few tries. A secret is 32 random bytes (apikeys.py): guessing one is
hopeless anyway; the limit keeps the attempts from costing us and makes them visible
(``pixel_auth_failures_total``, ``pixel_auth_limited_total``, by surface).

The counts live in each process's memory (at most ``MAX_NETWORKS`` networks, the least
recently failed forgotten first): with several workers or instances a network gets the limit
at each.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_NETWORKS = 65_536


class TooManyFailures(Exception):
    """The network has failed too often: answer 429 with ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts from this network; retry in {retry_after} s")
        self.retry_after = retry_after


class FailureLimit:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens regained a second
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, network: str, now: float) -> float:
        entry = self._buckets.get(network)
        if entry is None:
            return self.capacity
        tokens, since = entry
        return min(self.capacity, tokens + (now - since) * self.rate)

    def check(self, network: str | None) -> None:
        """Raise TooManyFailures if ``network`` may not try now."""
        if network is None or network not in self._buckets:
            return
        now = self._clock()
        tokens = self._tokens(network, now)
        if tokens < 1.0:
            raise TooManyFailures(max(1, math.ceil((1.0 - tokens) / self.rate)))

    def failed(self, network: str | None) -> None:
        """Count a wrong secret from ``network``."""
        if network is None:
            return
        now = self._clock()
        tokens = self._tokens(network, now) - 1.0
        self._buckets[network] = (max(tokens, 0.0), now)
        self._buckets.move_to_end(network)
        while len(self._buckets) > MAX_NETWORKS:
            self._buckets.popitem(last=False)
