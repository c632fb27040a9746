"""Resource bounds of ``serve`` without a proxy in front: connections, request heads, idle time.

A bare server that accepts every socket and buffers every header runs out of file descriptors
(then pixels, ``/healthz`` and hits all fail) or memory. ``Bounds`` is what the HTTP protocol
enforces (``coalesce.py`` for uvicorn; granian gets the equivalent options in ``server.py``),
and ``Refusals`` counts what was refused for ``/metrics`` and logs it at most once a minute,
so an attack cannot flood the log either.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings

log = logging.getLogger("pixel_server.bounds")

# descriptors kept free for everything that is not a client connection: the listening socket,
# the SQLite database, its WAL and shm files, spill journals, logs, the event loop's own
FD_RESERVE = 64
REFUSAL_REASONS = ("max_connections", "header_too_large", "header_timeout")


@dataclass(frozen=True)
class Bounds:
    """What one server process enforces on its client connections."""

    max_connections: int = 2048
    max_header_bytes: int = 65536
    header_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, fd_limit: int) -> Bounds:
        """The bounds for ``settings``, with the connection limit kept below ``fd_limit``."""
        allowed = max(1, fd_limit - FD_RESERVE)
        if settings.max_connections > allowed:
            log.warning(
                "PIXEL_MAX_CONNECTIONS=%d is above what %d file descriptors allow: using %d",
                settings.max_connections,
                fd_limit,
                allowed,
            )
        return cls(
            max_connections=min(settings.max_connections, allowed),
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
        )


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. an unlimited hard limit above the kernel's nr_open
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Refusals:
    """Connections refused or closed for a bound, by reason; logged once per ``interval``."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.counts: Counter[str] = Counter()
        self.interval = interval
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged: Counter[str] = Counter()

    def refuse(self, reason: str) -> None:
        self.counts[reason] += 1
        self._unlogged[reason] += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= self.interval:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self._unlogged.items()))
            log.warning(
                "refusing connections over the server's bounds: %s since the last report "
                "(one report per %.0fs at most; all counted in pixel_connections_refused_total)",
                summary,
                self.interval,
            )
            self._logged_at = now
            self._unlogged.clear()


# one per process: uvicorn's protocol objects refuse, the app's /metrics reports
REFUSALS = Refusals()
