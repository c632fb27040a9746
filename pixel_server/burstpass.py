"""The burst pass: every ``PIXEL_BURST_EVERY`` seconds, the recent clicks through the burst and
trap rules (bursts.py), and the clicks they catch relabelled in the store.

Off the request path: a click is stored as traffic.py judged it, and answered; the pass reads
the clicks from the store (its partial index on the clicks' ts) and relabels, compare-and-set,
only the rows still of the class it read. A failed pass is logged and counted, and the next
one reads the same clicks again.

The running pass keeps the window's clicks in memory (:class:`Window`): each pass reads only
the clicks since the previous one (and LATE_S before, for a click committed a little after its
time), and judges again only the messages those new clicks belong to. So a pass costs what
arrived since the last, not the whole window: at 1,000 clicks a second a 62 s window re-read
every 2 s would be 31 reads of every click. A click stored later than LATE_S after its time
(a spill journal replayed after an outage) is left to ``pixel-server reclassify``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .background import running
from .bursts import Relabel, Seen, Thresholds, is_trap, message_of, relabels
from .config import Settings
from .metrics import Metrics
from .store import Store

log = logging.getLogger("pixel_server.bursts")
MAX_CLICKS = 50_000  # read by one pass at most: beyond, the oldest of the window are judged
LATE_S = 1.0  # a pass reads again this far before the last: clicks committed after their time

Key = tuple[str, ...]


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.burst_links, settings.burst_seconds, settings.burst_delivery_seconds)


def window_ms(settings: Settings) -> int:
    """How far back a pass reads: a burst still growing, or a trap's message, is seen whole
    by the passes while it lasts."""
    longest = max(settings.burst_seconds, settings.burst_delivery_seconds)
    return int((longest + 2 * settings.burst_every) * 1000)


class Window:
    """The clicks of the last window, by message, as the passes read and relabelled them."""

    def __init__(self) -> None:
        self.read_to: int | None = None  # ms: the end of the last pass's read
        self.messages: dict[Key, dict[int, Seen]] = {}
        self.pending: set[Key] = set()  # messages with new clicks, not yet judged with them
        self._key_of: dict[int, Key] = {}
        self._links: dict[Key, Counter[str | None]] = {}  # each message's links, and traps
        self._traps: Counter[Key] = Counter()
        self._order: deque[tuple[int, int, Key]] = deque()  # (ts, id, message), oldest first

    def since(self, now_ms: int, span_ms: int) -> int:
        """Where the next read starts."""
        start = now_ms - span_ms
        if self.read_to is None:
            return start
        return max(start, self.read_to - int(LATE_S * 1000))

    def add(self, clicks: list[Seen]) -> set[Key]:
        """Keep ``clicks`` (a fresher copy replaces a kept one); the messages with a click new
        to the window."""
        touched: set[Key] = set()
        for click in clicks:
            key = message_of(click)
            if key is None:
                continue
            kept = self.messages.setdefault(key, {})
            if click.id not in kept:
                touched.add(key)
                self._order.append((click.ts, click.id, key))
                self._key_of[click.id] = key
                self._links.setdefault(key, Counter())[click.url] += 1
                self._traps[key] += is_trap(click)
            kept[click.id] = click
        return touched

    def forget_before(self, cutoff_ms: int) -> None:
        while self._order and self._order[0][0] < cutoff_ms:
            _ts, click_id, key = self._order.popleft()
            self._key_of.pop(click_id, None)
            kept = self.messages.get(key)
            if kept is None:
                continue
            click = kept.pop(click_id, None)
            if click is not None:
                links = self._links[key]
                links[click.url] -= 1
                if not links[click.url]:
                    del links[click.url]
                self._traps[key] -= is_trap(click)
            if not kept:
                del self.messages[key], self._links[key], self._traps[key]
                self.pending.discard(key)

    def may_burst(self, key: Key, t: Thresholds) -> bool:
        """Whether the rules could relabel any of a message's clicks: a trap among them, or
        enough distinct links (a recipient clicking one link again and again is no burst)."""
        return self._traps[key] > 0 or len(self._links[key]) >= t.links

    def relabelled(self, change: Relabel) -> None:
        """Keep the class a change gave, so the next compare-and-set expects it."""
        kept = self.messages.get(self._key_of.get(change.id, ()), {})
        click = kept.get(change.id)
        if click is not None:
            kept[change.id] = click._replace(traffic=change.cls, traffic_reasons=change.reasons)


async def run_pass(
    store: Store, settings: Settings, metrics: Metrics, now_ms: int, window: Window | None = None
) -> int:
    """One pass over the clicks of the window ending at ``now_ms``; the rows relabelled.
    ``window``: what the previous passes read (None: read the whole window now)."""
    window = Window() if window is None else window
    span = window_ms(settings)
    clicks = await store.clicks_since(window.since(now_ms, span), MAX_CLICKS)
    window.forget_before(now_ms - span)
    window.pending |= window.add(clicks)
    window.read_to = max([now_ms, *(c.ts for c in clicks)])
    t = thresholds(settings)
    judged = [
        click
        for key in window.pending
        if window.may_burst(key, t)
        for click in window.messages[key].values()
    ]
    groups: dict[tuple[str, str], list[Relabel]] = {}
    for change in relabels(judged, t):
        groups.setdefault((change.cls, change.reasons.split(":")[0]), []).append(change)
    changed = 0
    for (cls, reason), changes in groups.items():
        done = await store.relabel(changes)
        metrics.relabeled.labels(cls, reason).inc(done)
        changed += done
        for change in changes:
            window.relabelled(change)
    window.pending.clear()  # a failed pass leaves them, for the next
    return changed


async def _loop(store: Store, settings: Settings, metrics: Metrics) -> None:
    window = Window()
    while True:
        await asyncio.sleep(settings.burst_every)
        try:
            await run_pass(store, settings, metrics, time.time_ns() // 1_000_000, window)
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
    async with running(_loop(store, settings, metrics), "burst-pass"):
        yield
