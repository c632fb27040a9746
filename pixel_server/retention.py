"""Retention: how long hits, and their raw fields, are kept (docs/privacy.md).

* ``PIXEL_RETAIN_DAYS``: a hit is deleted once it is that many days old (0: kept);
* ``PIXEL_RETAIN_RAW_DAYS``: its ``PIXEL_RETAIN_RAW_FIELDS`` (by default the raw user agent,
  the Referer and the parameters JSON) are cleared once it is that many days old, while its
  parsed dimensions (browser, OS, device, UTM, traffic class) stay.

Cut-offs fall on the start of a day of the report zone (floored to a UTC hour, for zones with
a half-hour offset), so every rollup cell (rollup.py) is either wholly before a cut-off or
wholly after it. The rollups are what reports read, and they are kept: a purge first needs
them complete, and records its *horizon*, the latest cut-off so far; a rebuild
(``pixel-server rollups rebuild``) and a relabel's recount then leave the cells before the
horizon as they are, since the hits they counted are gone or no longer whole.

The server purges every ``PURGE_EVERY_S`` (and once at start) when a retention is set;
``pixel-server purge [--dry-run]`` does it at once and can return the space to the system.
Each purge is written to the admin log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .background import every, running
from .config import split_list
from .salts import day_span
from .validators import RAW_FIELD_NAMES

if TYPE_CHECKING:
    from .config import Settings
    from .store.base import Store

log = logging.getLogger("pixel_server")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
PURGE_EVERY_S = 3600.0
FIRST_PURGE_S = 30.0  # after start: let the server settle first
# the hit fields a raw retention may clear (never ts, kind, cid, the UTM values, the parsed
# dimensions or the traffic class: what the reports are made of)
RAW_FIELDS = RAW_FIELD_NAMES


class RollupsIncomplete(RuntimeError):
    """A purge would lose counts: the rollups do not cover every stored hit yet."""

    def __init__(self) -> None:
        super().__init__(
            "the rollups do not cover every stored hit: run `pixel-server rollups rebuild`"
            " first, or the purged hits would leave the reports"
        )


def check_complete(plan: Plan, complete: bool) -> None:
    """Refuse (RollupsIncomplete) to run ``plan`` on a store whose rollups are not
    ``complete``; a dry run only counts, so it may."""
    if not complete and not plan.dry_run:
        raise RollupsIncomplete


def window_end(first: int, hi: int) -> int:
    """Where a purge window that starts at the hit at ``first`` (ms) ends: at the end of its
    UTC hour, at most ``hi`` — an hour of hits a transaction, so writers wait milliseconds."""
    return min(hi, first // HOUR_MS * HOUR_MS + HOUR_MS)


@dataclass(frozen=True)
class Plan:
    """What to purge: hits before ``hits_before`` (epoch ms), ``fields`` of hits before
    ``raw_before``; ``horizon`` the day start the cut-offs fall on; ``vacuum``: give the
    freed space back to the system (SQLite's VACUUM where incremental vacuum is off)."""

    hits_before: int | None
    raw_before: int | None
    fields: tuple[str, ...]
    horizon: int | None
    dry_run: bool = False
    vacuum: bool = False

    @property
    def active(self) -> bool:
        return self.hits_before is not None or (self.raw_before is not None and bool(self.fields))


@dataclass
class Report:
    """What a purge did (or, dry, would do)."""

    dry_run: bool
    hits_deleted: int = 0
    hits_cleared: int = 0  # hits whose raw fields were cleared
    partitions_dropped: list[str] = field(default_factory=list)
    bytes_before: int | None = None
    bytes_after: int | None = None
    hits_before: int | None = None
    raw_before: int | None = None
    fields: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cutoff(now_ms: int, days: int, zone: str) -> tuple[int, int] | None:
    """(cut-off, day start) for a retention of ``days`` days: hits before the cut-off go."""
    if days <= 0:
        return None
    start = day_span(now_ms - days * DAY_MS, zone)[0]
    return start // HOUR_MS * HOUR_MS, start


def plan(settings: Settings, now_ms: int, dry_run: bool = False, vacuum: bool = False) -> Plan:
    hits = cutoff(now_ms, settings.retain_days, settings.report_zone)
    raw = cutoff(now_ms, settings.retain_raw_days, settings.report_zone)
    fields = tuple(f for f in RAW_FIELDS if f in split_list(settings.retain_raw_fields))
    if hits is not None and raw is not None and raw[0] <= hits[0]:
        raw = None  # the hits themselves go first
    days = [c[1] for c in (hits, raw) if c is not None]
    return Plan(
        hits_before=None if hits is None else hits[0],
        raw_before=None if raw is None or not fields else raw[0],
        fields=fields,
        horizon=max(days) if days else None,
        dry_run=dry_run,
        vacuum=vacuum,
    )


State = tuple[int | None, int | None, str | None, int | None]  # a retention_state row


def raw_start(plan: Plan, state: State) -> int:
    """Where clearing the raw fields starts: where the last purge stopped, if it cleared the
    same fields (else from the first hit), and never before the hits deleted now."""
    _hits, raw, fields, _horizon = state
    same = fields == ",".join(plan.fields) and raw is not None
    return max(raw if same and raw is not None else 0, plan.hits_before or 0)


def next_state(plan: Plan, state: State) -> State:
    """The retention_state after ``plan`` has run."""
    hits, raw, fields, horizon = state
    return (
        _later(hits, plan.hits_before),
        plan.raw_before if plan.raw_before is not None else raw,
        ",".join(plan.fields) if plan.raw_before is not None else fields,
        _later(horizon, plan.horizon),
    )


def _later(old: int | None, new: int | None) -> int | None:
    return new if old is None else old if new is None else max(old, new)


def frozen(horizon: int | None) -> tuple[int, int]:
    """(first hourly slot, first daily slot) a rebuild may recount under ``horizon``."""
    if horizon is None:
        return 0, 0
    return horizon // HOUR_MS * HOUR_MS // MINUTE_MS, horizon // MINUTE_MS


async def purge(store: Store, the_plan: Plan, actor: str) -> Report:
    """Run ``the_plan`` on ``store`` and log it in the admin log (unless dry)."""
    report = await store.purge(the_plan)
    if not the_plan.dry_run:
        await store.log_admin(time.time_ns() // 1_000_000, "purge", actor, report.as_dict())
    return report


@asynccontextmanager
async def purging(settings: Settings, store: Store) -> AsyncIterator[None]:
    """Purge every PURGE_EVERY_S while the block runs, when a retention is set."""
    if not plan(settings, time.time_ns() // 1_000_000).active:
        yield
        return

    async def once() -> None:
        try:
            report = await purge(store, plan(settings, time.time_ns() // 1_000_000), "server")
        except RollupsIncomplete as exc:
            log.warning("retention: no purge: %s", exc)
        except Exception as exc:  # the store is down: next time
            log.warning("retention: the purge failed, tried again later: %s", exc)
        else:
            if report.hits_deleted or report.hits_cleared:
                log.info(
                    "retention: %d hits deleted, the raw fields of %d cleared",
                    report.hits_deleted,
                    report.hits_cleared,
                )

    async with running(every(PURGE_EVERY_S, once, first=FIRST_PURGE_S), "purge"):
        yield
