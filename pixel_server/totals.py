"""Campaign totals: one definition of opens, clicks, unique opens and clicks and click-to-open,
used by ``GET /api/campaigns/{cid}``, ``pixel-server campaign`` and whatever reads them next.

The store does the heavy part in SQL (:meth:`Store.campaign_groups`): it answers one
:class:`Group` per (kind, traffic class, uid, link, HEAD?, proxy repeat?) with its number of
hits. Everything that decides what counts is here, pure, and versioned
(:data:`DEFINITIONS_VERSION`), so that a figure can be told from one a later definition gives:

* **people** are the classes ``human`` and ``mail_proxy`` (a real open through a webmail image
  proxy, device unknown) and hits stored before classification (class NULL); every other
  class (traffic.py MACHINE) is a machine, reported apart, and in the main figures only when
  asked (``machines``);
* a **HEAD** request never counts (it fetches no image and follows no link);
* a **proxy repeat** — a ``mail_proxy`` fetch of the pixel of the same campaign, recipient
  and kind within :data:`PROXY_REPEAT_MS` of the one before — does not count: Gmail's proxy
  fetches again when the message is reopened or re-rendered, which is one reader;
* an **open** is a counted ``open`` hit (the signed email pixel), a **click** a counted
  ``click`` (``/r/``), a **view** a counted ``view`` (``/p.gif``, a web page);
* **unique** opens (clicks) are the distinct ``uid`` among counted opens (clicks) that carry
  one; hits without a ``uid`` count as opens and clicks but cannot be told apart, so they
  are left out of the unique figures and reported as ``anonymous_opens`` and
  ``anonymous_clicks``;
* **inferred opens** are the recipients with a counted click and no counted open ("clicked
  implies opened": the open was hidden by MPP or blocked images); reported apart, never
  added to the opens;
* **CTOR** (click-to-open rate) = unique clickers / (unique openers + inferred opens), None
  when nobody opened; it is at most 1 by construction;
* per **link** (a click's stored ``url``, the target it redirected to): clicks, unique
  clickers, and machine clicks, the :data:`TOP_LINKS` most clicked.

docs/campaigns.md says why each definition is what it is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .traffic import MACHINE

DEFINITIONS_VERSION = 1
PROXY_REPEAT_MS = 60_000  # a mail_proxy fetch this soon after the one before is a repeat
PROXY = "mail_proxy"
KINDS = ("open", "view", "click")  # what a campaign's totals read
TOP_LINKS = 200
TOP_REASONS = 20  # per machine class
MAX_REASON_CHARS = 80


class Group(NamedTuple):
    """The hits of one campaign sharing all of these; ``n`` of them."""

    kind: str
    traffic: str | None
    uid: str | None
    link: str | None  # a click's url; None for other kinds
    head: bool
    repeat: bool  # a mail_proxy repeat (PROXY_REPEAT_MS)
    n: int


class Campaign(NamedTuple):
    """What a store answers for a campaign's totals (Store.campaign_groups)."""

    groups: list[Group]
    reasons: list[tuple[str | None, str, int]]  # (traffic, traffic_reasons, n)


def from_rows(groups: Iterable[Sequence[Any]], reasons: Iterable[Sequence[Any]]) -> Campaign:
    """A Campaign from the SQL stores' rows (sql.py campaign_groups, campaign_reasons)."""
    return Campaign(
        [
            Group(str(k), t, u, link, bool(head), bool(repeat), int(n))
            for k, t, u, link, head, repeat, n in groups
        ],
        [(t, str(text), int(n)) for t, text, n in reasons],
    )


def is_machine(traffic: str | None) -> bool:
    """Whether a class is a machine's: not a person, nor unclassified (NULL)."""
    return traffic in MACHINE


def counted(group: Group) -> bool:
    """Whether a group's hits count at all (machines aside): not HEAD, not proxy repeats."""
    return not group.head and not group.repeat


def group_rows(rows: Iterable[dict[str, Any]]) -> list[Group]:
    """The groups of stored hit rows of one campaign: what the SQL stores compute, for the
    memory store and for tests. ``rows`` need ts, kind, traffic, uid, url and method."""
    ordered = sorted((r for r in rows if r["kind"] in KINDS), key=lambda r: r["ts"])
    last: dict[tuple[str, str], int] = {}  # (kind, uid) -> ts of its last proxy GET
    counts: Counter[Group] = Counter()
    for row in ordered:
        head = row["method"] == "HEAD"
        repeat = False
        if row["traffic"] == PROXY and row["uid"] is not None and not head:
            key = (row["kind"], row["uid"])
            before = last.get(key)
            repeat = before is not None and row["ts"] - before < PROXY_REPEAT_MS
            last[key] = row["ts"]
        link = row["url"] if row["kind"] == "click" else None
        counts[Group(row["kind"], row["traffic"], row["uid"], link, head, repeat, 0)] += 1
    return [group._replace(n=n) for group, n in counts.items()]


@dataclass
class Figures:
    """The totals of one set of classes."""

    opens: int = 0
    unique_opens: int = 0
    inferred_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    views: int = 0
    unique_views: int = 0
    anonymous_opens: int = 0
    anonymous_clicks: int = 0
    ctor: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "opens": self.opens,
            "unique_opens": self.unique_opens,
            "inferred_opens": self.inferred_opens,
            "clicks": self.clicks,
            "unique_clicks": self.unique_clicks,
            "ctor": None if self.ctor is None else round(self.ctor, 4),
            "views": self.views,
            "unique_views": self.unique_views,
            "anonymous_opens": self.anonymous_opens,
            "anonymous_clicks": self.anonymous_clicks,
        }


def figures(groups: Iterable[Group], infer: bool = True) -> Figures:
    """The figures of ``groups`` (already the classes wanted), by the definitions above;
    without ``infer`` (the machines' own figures) no opens are inferred and CTOR is None: a
    scanner's click says nothing about an open."""
    result = Figures()
    uids: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        if not counted(group):
            continue
        if group.kind == "open":
            result.opens += group.n
        elif group.kind == "click":
            result.clicks += group.n
        else:
            result.views += group.n
        if group.uid is not None:
            uids[group.kind].add(group.uid)
        elif group.kind == "open":
            result.anonymous_opens += group.n
        elif group.kind == "click":
            result.anonymous_clicks += group.n
    openers, clickers = uids["open"], uids["click"]
    result.unique_opens, result.unique_clicks = len(openers), len(clickers)
    result.unique_views = len(uids["view"])
    if not infer:
        return result
    result.inferred_opens = len(clickers - openers)
    opened = result.unique_opens + result.inferred_opens
    result.ctor = result.unique_clicks / opened if opened else None
    return result


@dataclass
class Link:
    url: str
    clicks: int = 0
    unique_clicks: int = 0
    machine_clicks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "clicks": self.clicks,
            "unique_clicks": self.unique_clicks,
            "machine_clicks": self.machine_clicks,
        }


def links(groups: Iterable[Group], machines: bool) -> list[Link]:
    """Per link: counted clicks and unique clickers (of the classes the main figures count)
    and machine clicks, most unique clickers first, then most clicks, then by url."""
    per: dict[str, Link] = {}
    clickers: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        if group.kind != "click" or group.link is None or not counted(group):
            continue
        link = per.setdefault(group.link, Link(group.link))
        machine = is_machine(group.traffic)
        if machine:
            link.machine_clicks += group.n
        if machines or not machine:
            link.clicks += group.n
            if group.uid is not None:
                clickers[group.link].add(group.uid)
    for url, uids in clickers.items():
        per[url].unique_clicks = len(uids)
    return sorted(per.values(), key=lambda link: (-link.unique_clicks, -link.clicks, link.url))


def reason_name(reason: str) -> str:
    """A stored reason as counted: ``since_send:37s`` is ``since_send`` (its seconds vary)."""
    if reason.startswith("since_send:"):
        return "since_send"
    return reason[:MAX_REASON_CHARS]


@dataclass
class MachineClass:
    opens: int = 0
    clicks: int = 0
    views: int = 0
    head: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "opens": self.opens,
            "clicks": self.clicks,
            "views": self.views,
            "head": self.head,
            "reasons": dict(self.reasons.most_common(TOP_REASONS)),
        }


def machine_classes(
    groups: Iterable[Group], reasons: Iterable[Sequence[Any]]
) -> dict[str, MachineClass]:
    """Per machine class: its counted opens, clicks and views, its HEAD requests, and how
    many of its stored hits gave each reason; ``reasons`` are the store's rows of
    ``(traffic, traffic_reasons, n)``."""
    classes: dict[str, MachineClass] = {}
    for group in groups:
        if not is_machine(group.traffic):
            continue
        assert group.traffic is not None
        entry = classes.setdefault(group.traffic, MachineClass())
        if group.head:
            entry.head += group.n
        elif group.kind == "open":
            entry.opens += group.n
        elif group.kind == "click":
            entry.clicks += group.n
        else:
            entry.views += group.n
    for traffic, text, n in reasons:
        if is_machine(traffic) and text:
            entry = classes.setdefault(str(traffic), MachineClass())
            for reason in str(text).split(","):
                entry.reasons[reason_name(reason)] += int(n)
    return dict(sorted(classes.items()))


@dataclass
class CampaignTotals:
    """Everything ``GET /api/campaigns/{cid}`` answers."""

    cid: str
    span: tuple[int, int]  # ms
    machines_included: bool
    totals: Figures
    people: Figures
    machines: Figures
    classes: dict[str, MachineClass]
    proxy_repeats: int
    head: int
    links: list[Link]
    links_total: int

    def as_dict(self) -> dict[str, Any]:
        from .export import iso_time

        return {
            "cid": self.cid,
            "since": iso_time(self.span[0]) if self.span[0] else None,  # not given
            "until": iso_time(self.span[1]),
            "definitions": DEFINITIONS_VERSION,
            "machines_included": self.machines_included,
            "totals": self.totals.as_dict(),
            "people": self.people.as_dict(),
            "machines": {**self.machines.as_dict(), "classes": self._classes()},
            "proxy_repeats": self.proxy_repeats,
            "head_requests": self.head,
            "links": [link.as_dict() for link in self.links],
            "links_total": self.links_total,
        }

    def _classes(self) -> dict[str, Any]:
        return {name: entry.as_dict() for name, entry in self.classes.items()}


def campaign_totals(
    cid: str, span: tuple[int, int], campaign: Campaign, machines: bool = False
) -> CampaignTotals:
    """The totals of one campaign from the store's groups and reason counts; ``machines``
    puts the machine classes in the main figures (they are reported apart either way)."""
    groups, reasons = campaign
    people = [g for g in groups if not is_machine(g.traffic)]
    machine = [g for g in groups if is_machine(g.traffic)]
    every_link = links(groups, machines)
    return CampaignTotals(
        cid=cid,
        span=span,
        machines_included=machines,
        totals=figures(groups if machines else people),
        people=figures(people),
        machines=figures(machine, infer=False),
        classes=machine_classes(groups, reasons),
        proxy_repeats=sum(g.n for g in groups if g.repeat),
        head=sum(g.n for g in groups if g.head),
        links=every_link[:TOP_LINKS],
        links_total=len(every_link),
    )


def parse_request(
    cid: str, pairs: Sequence[tuple[str, str]], now_ms: int, max_cid_chars: int
) -> tuple[tuple[int, int], bool]:
    """The span (ms) and the machines switch a campaign report asks for with ``since``
    (default: the beginning), ``until`` (default now) and ``machines`` (``1``/``0``, default
    0), as the read API and the CLI take them; QueryError for anything else, a repeated name,
    an empty campaign, or one longer than any stored value can be (``max_cid_chars``)."""
    from .query import QueryError, parse_time, single_params

    if not cid or len(cid) > max_cid_chars:
        raise QueryError(f"the campaign id must be 1 to {max_cid_chars} characters")
    params = single_params(pairs, ("since", "until", "machines"), "parameter")
    since = parse_time(params.get("since"), now_ms, "since")
    until = parse_time(params.get("until"), now_ms, "until")
    machines = params.get("machines", "")
    if machines not in ("", "0", "1"):
        raise QueryError("machines: give 1 (count machine classes too) or 0")
    span = (0 if since is None else since, now_ms if until is None else until)
    return (span if span[0] < span[1] else (span[0], span[0])), machines == "1"
