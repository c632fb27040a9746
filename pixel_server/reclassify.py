"""``pixel-server reclassify``: stored hits judged again under the current rules (traffic.py,
then the burst and trap rules of bursts.py), from stored evidence only.

What a hit keeps is what is re-read: the method, the user agent, the kind, the send time
(``sent_ts``) and the anonymised address, never the full one (it was never stored). So:

* Exchange Online Protection's networks are matched on the stored /24 (IPv4 ``truncate``
  mode): every EOP range is /24-aligned, so the rule gives the same answer. With
  ``PIXEL_IP_MODE=none`` there is no address, and the rule cannot apply;
* the ``Purpose``/``Sec-Purpose`` header is not stored: a hit classed by it keeps its class;
* a trap click is known by its stored reason (``trap``; the token is not stored): it stays;
* an event stored as a server call (``server_call``) is judged as one again;
* a hit that becomes or stops being ``mail_proxy`` keeps its device, browser and OS columns.

Changes are written compare-and-set (store ``relabel``): a hit the server relabelled
meanwhile is left as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .bursts import Relabel, Seen, Thresholds, relabels
from .networks import Networks
from .query import HitQuery
from .store import Store
from .traffic import Verdict, classify

PAGE = 2_000
KEPT = ("trap", "header:purpose")  # first reasons whose evidence is not stored


@dataclass
class Outcome:
    """What a run changed (or, dry, would change): hits read, and (from, to) counts."""

    read: int = 0
    changed: Counter[tuple[str, str]] = field(default_factory=Counter)
    written: int = 0


def judge(row: dict[str, Any], networks: Networks | None = None) -> Verdict:
    """The verdict of a stored hit under the current rules, from what it stored;
    ``networks`` the known networks (PIXEL_NETWORKS; None: the shipped lists)."""
    reasons = (row.get("traffic_reasons") or "").split(",")
    if row.get("traffic") is not None and reasons[0] in KEPT:
        return Verdict(row["traffic"], tuple(reasons))
    sent, ts = row.get("sent_ts"), row["ts"]
    since = None if sent is None or sent > ts else (ts - sent) / 1000
    return classify(
        method=row["method"],
        ua=row.get("ua"),
        kind=row["kind"],
        ip=row.get("ip"),
        since_send_s=since,
        vouched="server_call" in reasons,
        networks=networks,
    )


def _change(row: dict[str, Any], cls: str, reasons: str) -> Relabel | None:
    if row.get("traffic") == cls and (row.get("traffic_reasons") or "") == reasons:
        return None
    return Relabel(row["id"], row["ts"], row.get("traffic"), cls, reasons)


async def reclassify(
    store: Store,
    span: tuple[int | None, int | None],
    thresholds: Thresholds,
    *,
    dry_run: bool,
    networks: Networks | None = None,
) -> Outcome:
    """Judge the hits in ``span`` (ms, either end open) again; write the changes unless
    ``dry_run``."""
    outcome = Outcome()
    changes: dict[int, Relabel] = {}
    clicks: list[Seen] = []
    original: dict[int, tuple[str | None, str | None]] = {}  # a click's stored class, reasons
    beyond: tuple[int, int] | None = None
    while True:
        query = HitQuery(
            since_ms=span[0], until_ms=span[1], beyond=beyond, oldest_first=True, limit=PAGE
        )
        rows = await store.query(query)
        if not rows:
            break
        beyond = (rows[-1]["ts"], rows[-1]["id"])
        outcome.read += len(rows)
        for row in rows:
            verdict = judge(row, networks)
            reasons = ",".join(verdict.reasons)
            change = _change(row, verdict.cls, reasons)
            if change is not None:
                changes[row["id"]] = change
            if row["kind"] == "click":
                original[row["id"]] = (row.get("traffic"), row.get("traffic_reasons") or None)
                values = {**row, "traffic": verdict.cls, "traffic_reasons": reasons or None}
                clicks.append(Seen._make(values[c] for c in Seen._fields))
    for burst in relabels(clicks, thresholds):
        was_cls, was_reasons = original[burst.id]
        if (was_cls, was_reasons) == (burst.cls, burst.reasons):
            changes.pop(burst.id, None)  # stored so already
        else:
            changes[burst.id] = Relabel(burst.id, burst.ts, was_cls, burst.cls, burst.reasons)
    final = sorted(changes.values(), key=lambda c: (c.ts, c.id))
    for c in final:
        outcome.changed[(c.expected or "none", c.cls)] += 1
    if not dry_run:
        outcome.written = await _write(store, final)
    return outcome


async def _write(store: Store, changes: Sequence[Relabel]) -> int:
    written = 0
    for start in range(0, len(changes), PAGE):
        written += await store.relabel(changes[start : start + PAGE])
    return written
