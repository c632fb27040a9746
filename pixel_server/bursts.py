"""Bursts and the trap link: classes that need the other clicks of a message (issue 9).

Pure: :func:`relabels` takes stored clicks (:class:`Seen`, the columns of
:data:`SEEN_COLUMNS`) and answers which of them are a mail gateway's, with the reason:

* a **burst**: at least ``links`` distinct links of one message (its ``msg``, else its
  ``cid`` + ``uid``), clicked from one network (the stored, anonymised address: its /24 or
  /48) each within ``seconds`` of the one before, or all within ``delivery_seconds`` of the
  send, before any human-looking click of that message from elsewhere or earlier. A person
  reads, then clicks one link; a gateway follows every link at delivery, in a second. The
  reason is ``burst:N_links``;
* the **trap**: a click on the hidden link (``t`` in its token, stored with the reason
  ``trap``) is a machine's; the other clicks of its message within ``seconds`` of it, or from
  its network within ``delivery_seconds``, are too (``trap_message``).

A later click from a browser stays what traffic.py said. The burst pass (burstpass.py) runs
these rules on recent clicks; ``pixel-server reclassify`` on stored history. docs/traffic.md
explains the thresholds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

LINK_SCANNER = "link_scanner"
TRAP = "trap"
TRAP_MESSAGE = "trap_message"
BURST = "burst:"
PEOPLE = frozenset(("human", "mail_proxy"))  # traffic.MACHINE's complement
# the columns the rules read, in the order a store's clicks_since() answers them
SEEN_COLUMNS = (
    "id",
    "ts",
    "cid",
    "uid",
    "msg",
    "url",
    "ip",
    "traffic",
    "traffic_reasons",
    "sent_ts",
)


class Seen(NamedTuple):
    """One stored click, as the rules need it."""

    id: int
    ts: int  # ms
    cid: str | None
    uid: str | None
    msg: str | None
    url: str | None  # where the link went (its target): distinct links have distinct ones
    ip: str | None  # anonymised: the network
    traffic: str | None
    traffic_reasons: str | None
    sent_ts: int | None = None  # ms: when its message was sent, if its token said


@dataclass(frozen=True, slots=True)
class Thresholds:
    links: int = 2  # PIXEL_BURST_LINKS
    seconds: float = 5.0  # PIXEL_BURST_SECONDS
    delivery_seconds: float = 60.0  # PIXEL_BURST_DELIVERY_SECONDS


@dataclass(frozen=True, slots=True)
class Relabel:
    """A click to store as ``cls`` with ``reasons``, if its class is still ``expected``."""

    id: int
    ts: int
    expected: str | None
    cls: str
    reasons: str


def message_of(click: Seen) -> tuple[str, ...] | None:
    """The message a click belongs to: its message id, else its campaign and recipient."""
    if click.msg is not None:
        return ("m", click.msg)
    if click.cid is not None and click.uid is not None:
        return ("c", click.cid, click.uid)
    return None


def is_trap(click: Seen) -> bool:
    return click.traffic == LINK_SCANNER and (click.traffic_reasons or "").split(",")[0] == TRAP


def relabels(clicks: Iterable[Seen], t: Thresholds = Thresholds()) -> list[Relabel]:
    """The clicks of ``clicks`` whose class the burst and trap rules change (a click already
    ``link_scanner``, for whatever reason, is left as it is)."""
    by_message: dict[tuple[str, ...], list[Seen]] = defaultdict(list)
    for click in clicks:
        key = message_of(click)
        if key is not None:
            by_message[key].append(click)
    out: dict[int, Relabel] = {}
    for group in by_message.values():
        group.sort(key=lambda c: (c.ts, c.id))
        for click, reason in _verdicts(group, t):
            if click.id in out or is_trap(click):
                continue
            if click.traffic == LINK_SCANNER and not _grown(click.traffic_reasons, reason):
                continue  # a scanner's already: its own reason (ua:gateway, ...) says more
            out[click.id] = Relabel(click.id, click.ts, click.traffic, LINK_SCANNER, reason)
    return sorted(out.values(), key=lambda r: (r.ts, r.id))


def _grown(stored: str | None, reason: str) -> bool:
    """Whether a burst stored with fewer links has grown since (the pass saw its start)."""
    return stored is not None and stored.startswith(BURST) and stored != reason


def _verdicts(group: Sequence[Seen], t: Thresholds) -> Iterator[tuple[Seen, str]]:
    gap_ms, delivery_ms = t.seconds * 1000, t.delivery_seconds * 1000
    for trap in (c for c in group if is_trap(c)):
        for click in group:
            near = abs(click.ts - trap.ts) <= gap_ms
            same_net = click.ip == trap.ip and abs(click.ts - trap.ts) <= delivery_ms
            if click.id != trap.id and (near or same_net):
                yield click, TRAP_MESSAGE
    by_net: dict[str | None, list[Seen]] = defaultdict(list)
    for click in group:
        by_net[click.ip].append(click)
    for clicks in by_net.values():
        for burst in _bursts(clicks, gap_ms, delivery_ms):
            links = len({c.url for c in burst})
            if links >= t.links and not _person_first(group, burst):
                reason = f"{BURST}{links}_links"
                for click in burst:
                    yield click, reason


def _bursts(clicks: Sequence[Seen], gap_ms: float, delivery_ms: float) -> Iterator[list[Seen]]:
    """Runs of clicks each within ``gap_ms`` of the one before, and the clicks within
    ``delivery_ms`` of their send."""
    run: list[Seen] = []
    for click in clicks:
        if run and click.ts - run[-1].ts > gap_ms:
            yield run
            run = []
        run.append(click)
    if run:
        yield run
    at_delivery = []
    for click in clicks:
        if click.sent_ts is not None and 0 <= click.ts - click.sent_ts <= delivery_ms:
            at_delivery.append(click)
    if at_delivery:
        yield at_delivery


def _person_first(group: Sequence[Seen], burst: Sequence[Seen]) -> bool:
    """Whether a human-looking click of the message, not in ``burst``, came before it: a
    reader was there already, and the burst may be theirs (tabs opened from the message)."""
    first = burst[0].ts
    members = {c.id for c in burst}
    return any(c.ts < first and c.id not in members and c.traffic in PEOPLE for c in group)
