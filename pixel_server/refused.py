"""Requests refused before they became a hit — a forged, tampered or expired token — counted
per UTC day, kind (pixel, link) and reason, so that ``pixel-server audit`` can report them
long after the server that saw them (Prometheus' pixel_tokens_invalid_total resets with it).

The hot path adds one to an in-memory Counter (Runtime.refused); the server writes the
counts to the store every FLUSH_S seconds and once more when it stops. A crash loses at most
the last FLUSH_S seconds of this count (never a hit: these requests stored nothing).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .background import every, running
from .loss import DAY_MS

if TYPE_CHECKING:
    from .runtime import Runtime
    from .store.base import Store

log = logging.getLogger("pixel_server")
FLUSH_S = 5.0


async def flush(rt: Runtime, store: Store) -> None:
    """Write the counts gathered since the last flush; on failure keep them for the next."""
    counts, rt.refused = rt.refused, Counter()
    if not counts:
        return
    try:
        await store.add_rejects(time.time_ns() // 1_000_000 // DAY_MS, counts)
    except Exception:  # the store is down: counted again next time
        rt.refused.update(counts)


@asynccontextmanager
async def flushing(rt: Runtime, store: Store) -> AsyncIterator[None]:
    """Flush every FLUSH_S seconds while the block runs, and once at its end."""

    try:
        async with running(every(FLUSH_S, lambda: flush(rt, store)), "refused-flush"):
            yield
    finally:  # once the loop has stopped: the last counts
        await flush(rt, store)
