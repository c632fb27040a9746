"""The loss report: how many events were sent but never arrived, and how many arrived more
than once, per UTC day and campaign. The service measures its own data loss.

It reads ``seq``, the number each event carries within its session ``sid`` (1, 2, 3 …;
docs/events.md). For one session:

* ``received``: its stored events;
* ``lost``: the numbers below its highest that never arrived (``max(seq)`` minus the distinct
  numbers that did): a tab closed mid-send, a blocked request, an offline queue given up;
* ``repeated``: events stored with a number the session had already (sent again with a new
  eid, which dedup cannot recognise);
* ``duplicates``: events answered ``duplicate`` (a retry with the same eid, stored once),
  counted per day and campaign as the store finds them (``event_duplicates``).

What it cannot see: events lost after a session's last arrival (nothing later says they were
sent), and events without ``sid`` and ``seq`` (server calls usually: they are not counted).
A session counts on the UTC day of its first event, with the campaign (``cid``) its events
carry ("" for none); sessions are taken to last under a day, so the report reads one day
before and after its span to see the whole of the sessions at its edges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the type: the CLI reads reports without the hit pipeline
    from .hits import Hit

DAY_MS = 86_400_000


@dataclass(frozen=True)
class LossRow:
    day: int  # days since 1970-01-01 (UTC)
    cid: str  # "" for events without a campaign
    sessions: int = 0
    received: int = 0
    lost: int = 0
    repeated: int = 0
    duplicates: int = 0

    @property
    def sent(self) -> int:
        """The events the sessions numbered (what arrived once, plus what did not)."""
        return self.received - self.repeated + self.lost

    @property
    def loss_rate(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.day * 86_400, UTC).date().isoformat()

    def as_dict(self) -> dict[str, object]:
        return {"day": self.date, "cid": self.cid, **self.summary()}

    def summary(self) -> dict[str, object]:
        """The counts and the rate, without day and campaign (of a :func:`total`)."""
        return {
            "sessions": self.sessions,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "repeated": self.repeated,
            "duplicates": self.duplicates,
            "loss_rate": round(self.loss_rate, 6),
        }


def day_span(since_ms: int, until_ms: int) -> tuple[int, int]:
    """``since`` down and ``until`` up to whole UTC days, in ms: the report is per day."""
    return since_ms - since_ms % DAY_MS, -(-until_ms // DAY_MS) * DAY_MS


DEFAULT_SINCE = "7d"


def parse_request(
    pairs: Sequence[tuple[str, str]], now_ms: int
) -> tuple[tuple[int, int], str | None]:
    """The span (whole days) and campaign a report asks for with ``since`` (default 7d),
    ``until`` (default now) and ``cid``, as the read API and the CLI take them; QueryError
    for anything else, a repeated name included."""
    from .query import parse_time, single_params

    params = single_params(pairs, ("cid", "since", "until"), "parameter")
    since = parse_time(params.get("since") or DEFAULT_SINCE, now_ms, "since")
    until = parse_time(params.get("until"), now_ms, "until")
    assert since is not None
    until = now_ms if until is None else until
    if since >= until:  # nothing between them, as /api/hits answers such a span
        return (since, since), params.get("cid")
    return day_span(since, until), params.get("cid")


def duplicate_counts(hits: Sequence[Hit], outcomes: Sequence[bool]) -> Counter[tuple[int, str]]:
    """The duplicates of a write_events batch per (day, cid): what the store adds up."""
    counts: Counter[tuple[int, str]] = Counter()
    for hit, new in zip(hits, outcomes, strict=True):
        if not new:
            counts[hit.ts // DAY_MS, hit.cid or ""] += 1
    return counts


def merge(
    sessions: Iterable[Sequence[int | str]], duplicates: Iterable[Sequence[int | str]]
) -> list[LossRow]:
    """Rows of the store's two queries, ``(day, cid, sessions, received, lost, repeated)``
    and ``(day, cid, n)``, as one row per day and campaign, oldest first."""
    rows: dict[tuple[int, str], LossRow] = {}
    for day, cid, count, received, lost, repeated in sessions:
        key = (int(day), str(cid))
        rows[key] = LossRow(*key, int(count), int(received), int(lost), int(repeated))
    for day, cid, n in duplicates:
        key = (int(day), str(cid))
        row = rows.get(key, LossRow(*key))
        rows[key] = LossRow(*key, row.sessions, row.received, row.lost, row.repeated, int(n))
    return [rows[key] for key in sorted(rows)]


def total(rows: Iterable[LossRow]) -> LossRow:
    """The sums of ``rows`` (its day and cid mean nothing): :meth:`LossRow.summary`."""
    sums = [0, 0, 0, 0, 0]
    for row in rows:
        for i, value in enumerate(
            (row.sessions, row.received, row.lost, row.repeated, row.duplicates)
        ):
            sums[i] += value
    return LossRow(0, "", *sums)
