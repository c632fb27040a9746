"""The burst pass: every ``PIXEL_BURST_EVERY`` seconds, the recent clicks through the burst and
trap rules (bursts.py), and the clicks they catch relabelled in the store.

Off the request path: a click is stored as traffic.py judged it, and answered; the pass reads
the last window of clicks from the store (its partial index on the clicks' ts) and relabels,
compare-and-set, only the rows still of the class it read. A failed pass is logged and
counted, and the next one reads the same window again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from .bursts import Relabel, Thresholds, relabels
from .config import Settings
from .metrics import Metrics
from .store import Store

log = logging.getLogger("pixel_server.bursts")
MAX_CLICKS = 50_000  # read by one pass at most: beyond, the oldest of the window are judged


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.burst_links, settings.burst_seconds, settings.burst_delivery_seconds)


def window_ms(settings: Settings) -> int:
    """How far back a pass reads: a burst still growing, or a trap's message, is seen whole
    by the passes while it lasts."""
    longest = max(settings.burst_seconds, settings.burst_delivery_seconds)
    return int((longest + 2 * settings.burst_every) * 1000)


async def run_pass(store: Store, settings: Settings, metrics: Metrics, now_ms: int) -> int:
    """One pass over the clicks of the window ending at ``now_ms``; the rows relabelled."""
    clicks = await store.clicks_since(now_ms - window_ms(settings), MAX_CLICKS)
    groups: dict[tuple[str, str], list[Relabel]] = {}
    for change in relabels(clicks, thresholds(settings)):
        groups.setdefault((change.cls, change.reasons.split(":")[0]), []).append(change)
    changed = 0
    for (cls, reason), changes in groups.items():
        done = await store.relabel(changes)
        metrics.relabeled.labels(cls, reason).inc(done)
        changed += done
    return changed


async def _loop(store: Store, settings: Settings, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(settings.burst_every)
        try:
            await run_pass(store, settings, metrics, time.time_ns() // 1_000_000)
        except Exception:  # the store is down, or a row surprised us: try again next time
            log.exception("burst pass failed")
            metrics.burst_passes.labels("failed").inc()
        else:
            metrics.burst_passes.labels("ok").inc()


@asynccontextmanager
async def burst_pass(store: Store, settings: Settings, metrics: Metrics) -> AsyncIterator[None]:
    """The pass running in the background for the block (none if PIXEL_BURST_EVERY is 0)."""
    if settings.burst_every <= 0:
        yield
        return
    task = asyncio.create_task(_loop(store, settings, metrics), name="burst-pass")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
