"""Rollups: the hits pre-counted, so a report over millions of hits reads thousands of
rows. Pure: what a hit contributes, and how contributions add up; the stores keep the cells
(``rollups`` and ``rollup_sums`` tables) and add each batch's in the transaction that stores
its hits, so a rollup never disagrees with what was acknowledged.

A **cell** is keyed by ``(slot, cid, kind, event, traffic, dim, value)``; ``slot`` is the
start of its span in UTC minutes. Every counted hit adds to

* the **hourly totals** (dim :data:`HOURLY`, ``""``): per UTC hour and traffic class, for
  hourly series and for days in any zone with whole-hour offsets;
* the **daily totals** (dim :data:`DAILY`, ``"*"``) and one cell per :data:`DIMENSIONS`
  entry (value ``""`` when the hit has none) and per declared event parameter
  (``param:<name>``: the registry's string, integer and boolean parameters): per day in the
  report zone (``PIXEL_REPORT_ZONE``, Spec.zone). The dimensions' cells keep only whether the
  hit was a person's or a machine's (traffic ``""`` or :data:`MACHINE_CELL`), not its
  class: the hour-by-class-by-value cube would be larger than the hits themselves.

A cell holds:

* ``n``: the counted hits;
* a HyperLogLog sketch of who made them (sketch.py): a hit's ``uid``, else its daily
  ``visitor`` hash (salts.py; a hit with neither is not in it);
* per numeric parameter declared for the event (``number``, ``integer``): the sum of its
  values and how many hits had one (``rollup_sums``), for sums and averages.

What counts is totals.py's definition, decided here per hit: a ``HEAD`` never counts (and
is always the class ``probe``), nor a **proxy repeat** — a ``mail_proxy`` GET of the same
campaign, kind and uid less than ``PROXY_REPEAT_MS`` after one stored before it. "Before"
means stored before (a smaller id), as the writer sees it: for hits that arrive in time order
this is exactly totals.py's rule; a fetch replayed late from a spill journal is judged
against what was stored before it, by the writer and by ``rollups rebuild`` alike.

Empty and missing values are one value, ``""`` (shown as "(none)"): a cell's key columns
are never NULL, so that a conflict finds the cell.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .eventschema import Registry
from .hits import COLUMNS
from .revocations import host_of
from .totals import PROXY, PROXY_REPEAT_MS
from .traffic import MACHINE

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
QUARTER_MS = 900_000  # every zone's offset is a multiple of 15 minutes
HOURLY = ""  # the totals per UTC hour
DAILY = "*"  # the totals per day of the report zone
MACHINE_CELL = "machine"  # a dimension cell's traffic for every machine class
# a hit's own dimensions, each a column (or derived from one); "" is the totals' cell
DIMENSIONS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "browser",
    "os",
    "device",
    "link",
)
PARAM_PREFIX = "param:"
MAX_VALUE_CHARS = 200  # a dimension value is cut to this (a url, a referrer host)
DIM_TYPES = ("string", "integer", "boolean")  # declared params that are dimensions
SUM_TYPES = ("number", "integer")  # declared params that are summed

_I = {name: COLUMNS.index(name) for name in COLUMNS}
TS, KIND, EVENT, CID, UID, URL, REF = (
    _I[c] for c in ("ts", "kind", "event", "cid", "uid", "url", "ref")
)
UTM = tuple(_I[c] for c in DIMENSIONS[:5])
REFERER, BROWSER, OS, DEVICE = (_I[c] for c in ("referer", "browser", "os", "device"))
PARAMS, METHOD, TRAFFIC = (_I[c] for c in ("params", "method", "traffic"))
VISITOR = _I["visitor"]
# a hit without a uid counts as its daily visitor hash (salts.py), marked apart from uids
VISITOR_MARK = "\x1fv:"

# (slot, cid, kind, event, traffic, dim, value)
Key = tuple[int, str, str, str, str, str, str]
KEY_COLUMNS = ("slot", "cid", "kind", "event", "traffic", "dim", "value")


@dataclass(frozen=True)
class Spec:
    """What the rollups keep: the event parameters that are dimensions (``dims[event]``) and
    those summed (``sums[event]``), from the event registry (PIXEL_EVENT_SCHEMAS), and the
    zone of the daily cells (PIXEL_REPORT_ZONE)."""

    dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    zone: str = "UTC"

    @classmethod
    def from_registry(cls, registry: Registry | None, zone: str = "UTC") -> Spec:
        if registry is None:
            return cls(zone=zone)
        dims: dict[str, tuple[str, ...]] = {}
        sums: dict[str, tuple[str, ...]] = {}
        for name, schema in registry.events.items():
            declared = {**schema.required, **schema.optional}
            dims[name] = tuple(sorted(p for p, t in declared.items() if t in DIM_TYPES))
            sums[name] = tuple(sorted(p for p, t in declared.items() if t in SUM_TYPES))
        return cls(
            {k: v for k, v in dims.items() if v},
            {k: v for k, v in sums.items() if v},
            zone,
        )

    def dimensions(self) -> tuple[str, ...]:
        """Every dim a cell can have."""
        return (HOURLY, DAILY, *DIMENSIONS, *self.param_dimensions())

    def param_dimensions(self) -> tuple[str, ...]:
        """Every ``param:<name>`` dimension, sorted."""
        names = {p for params in self.dims.values() for p in params}
        return tuple(PARAM_PREFIX + p for p in sorted(names))

    def summed(self) -> tuple[str, ...]:
        """Every summed parameter, sorted."""
        return tuple(sorted({p for params in self.sums.values() for p in params}))


@dataclass(slots=True)
class Cell:
    n: int = 0
    uids: set[str] = field(default_factory=set)
    sums: dict[str, list[float]] = field(default_factory=dict)  # param -> [total, count]


def referrer(ref: str | None, referer: str | None, kind: str) -> str:
    """The referring site's host, ``www.`` dropped: the page's ``ref`` (the tracker's
    document.referrer), else, for a click, the Referer header (the page the link was on; a
    pixel's Referer is its own page, not a referrer)."""
    source = ref or (referer if kind == "click" else None)
    if not source:
        return ""
    host = host_of(source).lower()
    return host[4:] if host.startswith("www.") else host


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)[:MAX_VALUE_CHARS]


class ProxyMemory:
    """The proxy-repeat rule over hits given in stored order (rebuilds, raw reports): keeps
    the times of the mail_proxy GETs seen per (cid, kind, uid)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], list[int]] = defaultdict(list)

    def repeat(self, row: Sequence[Any], offset: int = 0) -> bool:
        """Whether ``row`` is a repeat of one given before; remembers it if it is a fetch."""
        if not candidate(row, offset):
            return False
        ts = int(row[offset + TS])
        times = self._seen[(row[offset + CID] or "", row[offset + KIND], row[offset + UID])]
        found = any(ts - PROXY_REPEAT_MS < t <= ts for t in times)
        times.append(ts)
        return found


def candidate(row: Sequence[Any], offset: int = 0) -> bool:
    """Whether a hit could be a proxy repeat: a mail_proxy GET with a uid."""
    return (
        row[offset + TRAFFIC] == PROXY
        and row[offset + UID] is not None
        and row[offset + METHOD] != "HEAD"
    )


# what a hit's cells depend on besides its time: hits alike in all of these (and in their
# hour) add to the same cells, so a batch is grouped by them first and each group expanded
# into its cells once. The last three only where they matter (a click's target and page, an
# event's parameters), else None: a page view's own URL would split the groups for nothing.
BASE_SIGNATURE = ("kind", "event", "cid", "traffic", *DIMENSIONS[:5], "ref", "browser", "os")
SIGNATURE = (*BASE_SIGNATURE, "device", "url", "referer", "params")
_S = {name: n for n, name in enumerate(SIGNATURE, start=2)}  # 0, 1: the hour's, the day's slot
S_KIND, S_EVENT, S_CID, S_TRAFFIC = (_S[c] for c in ("kind", "event", "cid", "traffic"))
S_UTM = tuple(_S[c] for c in DIMENSIONS[:5])
S_REF, S_REFERER, S_BROWSER, S_OS, S_DEVICE, S_URL, S_PARAMS = (
    _S[c] for c in ("ref", "referer", "browser", "os", "device", "url", "params")
)
_BASE = {
    offset: itemgetter(*(offset + COLUMNS.index(c) for c in (*BASE_SIGNATURE, "device")))
    for offset in (0, 1)
}


def dimensions(
    sig: Sequence[Any], spec: Spec
) -> tuple[list[tuple[str, str]], list[tuple[str, float]]]:
    """The cells a hit of signature ``sig`` adds to, as ``(dim, value)`` (the totals' first),
    and the summed parameters it carries, as ``(param, number)``."""
    kind = sig[S_KIND]
    event = sig[S_EVENT] or ""
    values = [sig[i] or "" for i in S_UTM]
    values.append(referrer(sig[S_REF], sig[S_REFERER], kind))
    values.append(sig[S_BROWSER] or "")
    values.append(sig[S_OS] or "")
    values.append(sig[S_DEVICE] or "")
    values.append(_text(sig[S_URL]) if kind == "click" else "")
    pairs = [(HOURLY, ""), (DAILY, ""), *zip(DIMENSIONS, values, strict=True)]
    sums: list[tuple[str, float]] = []
    if event and (event in spec.dims or event in spec.sums):
        params = params_of(sig[S_PARAMS])
        for name in spec.dims.get(event, ()):
            pairs.append((PARAM_PREFIX + name, _text(params.get(name))))
        for name in spec.sums.get(event, ()):
            number = params.get(name)
            if (
                isinstance(number, int | float)
                and not isinstance(number, bool)
                and math.isfinite(number)
            ):
                sums.append((name, float(number)))
    return pairs, [(name, number) for name, number in sums]


class Slots:
    """The hour's and the day's slot (UTC minutes of their start) of a time: the hour in UTC,
    the day in ``zone`` (buckets.py's days, DST included), cached per quarter hour."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self._days: dict[int, int] = {}

    def __call__(self, ts: int) -> tuple[int, int]:
        quarter = ts // QUARTER_MS
        day = self._days.get(quarter)
        if day is None:
            from .buckets import boundaries

            if len(self._days) > 10_000:
                self._days.clear()
            start = boundaries(ts, ts + 1, "day", self.zone)[0]
            day = self._days[quarter] = start // MINUTE_MS
        return ts // HOUR_MS * 60, day


class Accumulator:
    """Cells of hits added one by one (rows in hits.COLUMNS order, from ``offset`` 0 or 1);
    ``slots(ts)`` gives a hit's (hourly, daily) slot: :class:`Slots` for the rollups, a
    report's bucket for raw reports. ``keep``, given a hit's ``{dim: value}``, leaves out the
    hits it refuses."""

    def __init__(
        self,
        spec: Spec,
        slots: Callable[[int], tuple[int, int]] | None = None,
        keep: Callable[[dict[str, str]], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.slots = slots or Slots(spec.zone)
        self.keep = keep
        self.groups: dict[tuple[Any, ...], list[Any]] = {}  # signature -> [n, uids]

    def add(self, row: Sequence[Any], offset: int = 0) -> None:
        """Count ``row`` (a hit that counts: callers leave out HEADs and proxy repeats)."""
        kind = row[offset + KIND]
        if kind == "click":
            tail = (row[offset + URL], row[offset + REFERER], None)
        elif kind == "event":
            tail = (None, None, row[offset + PARAMS])
        else:
            tail = (None, None, None)
        sig = (*self.slots(row[offset + TS]), *_BASE[offset](row), *tail)
        entry = self.groups.get(sig)
        if entry is None:
            entry = self.groups[sig] = [0, set()]
        entry[0] += 1
        uid = row[offset + UID]
        if uid is not None:
            entry[1].add(uid)
        elif row[offset + VISITOR] is not None:
            entry[1].add(VISITOR_MARK + row[offset + VISITOR])

    def cells(self) -> dict[Key, Cell]:
        """The cells of every hit added."""
        cells: dict[Key, Cell] = {}
        for sig, (n, uids) in self.groups.items():
            pairs, sums = dimensions(sig, self.spec)
            if self.keep is not None and not self.keep(dict(pairs)):
                continue
            cid, kind, event = sig[S_CID] or "", sig[S_KIND], sig[S_EVENT] or ""
            traffic = sig[S_TRAFFIC] or ""
            person = MACHINE_CELL if traffic in MACHINE else ""
            for dim, value in pairs:
                if dim == HOURLY:
                    key = (sig[0], cid, kind, event, traffic, dim, value)
                elif dim == DAILY:
                    key = (sig[1], cid, kind, event, traffic, dim, value)
                else:
                    key = (sig[1], cid, kind, event, person, dim, value[:MAX_VALUE_CHARS])
                cell = cells.get(key)
                if cell is None:
                    cell = cells[key] = Cell()
                cell.n += n
                cell.uids |= uids
                for name, number in sums:
                    total = cell.sums.setdefault(name, [0.0, 0])
                    total[0] += number * n
                    total[1] += n
        return cells


def params_of(text: str | None) -> dict[str, Any]:
    """A hit's params JSON as a dict ({} for none, or for anything else)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def counted(spec: Spec, rows: Iterable[Sequence[Any]], repeats: Iterable[bool]) -> Accumulator:
    """The cells of a batch's new rows (COLUMNS order, in stored order), ``repeats`` saying
    which repeat a fetch stored before the batch; the others are judged against the batch's
    earlier rows."""
    memory: ProxyMemory | None = None
    acc = Accumulator(spec)
    for row, stored in zip(rows, repeats, strict=True):
        if row[METHOD] == "HEAD":
            continue
        if row[TRAFFIC] == PROXY:  # the rare rows that may repeat: remembered even if so
            memory = memory or ProxyMemory()
            if memory.repeat(row) or stored:
                continue
        acc.add(row)
    return acc


def counting(rows: Iterable[Sequence[Any]], spec: Spec, offset: int = 0) -> Accumulator:
    """The cells of ``rows`` given in stored order, by the rules above (a rebuild)."""
    memory = ProxyMemory()
    acc = Accumulator(spec)
    for row in rows:
        if row[offset + METHOD] == "HEAD" or memory.repeat(row, offset):
            continue
        acc.add(row, offset)
    return acc


def key_of(values: Sequence[Any]) -> Key:
    slot, cid, kind, event, traffic, dim, value = values
    return (int(slot), cid, kind, event, traffic, dim, value)


@dataclass(frozen=True)
class Recount:
    """Cells to recompute from the stored hits: campaign ``cid``'s hits of ``kind`` from
    ``span`` (ms); the hourly cells of ``hours`` (slots) and the daily ones of ``days``."""

    cid: str
    kind: str
    span: tuple[int, int]
    hours: tuple[int, ...]
    days: tuple[int, ...]


def after(cells: dict[Key, Cell], hour: int, day: int) -> dict[Key, Cell]:
    """The ``cells`` at or after hourly slot ``hour`` and daily slot ``day`` (a rebuild under a
    purge's horizon: retention.py; the cells before it stay as they are)."""
    if not hour and not day:
        return cells
    return {k: c for k, c in cells.items() if k[0] >= (hour if k[5] == HOURLY else day)}


def recounts(
    spec: Spec, hits: Iterable[tuple[int, str | None, str]], since: int = 0
) -> list[Recount]:
    """What to recompute when the hits given as ``(ts, cid, kind)`` change class: the days
    (report zone) of their campaign and kind, and of the moment PROXY_REPEAT_MS later (a
    repeat there may change); their hours are inside them. Hits before ``since`` (a purge's
    horizon, retention.py: a day start) are left out: their cells stay as they are."""
    slots = Slots(spec.zone)
    days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for ts, cid, kind in hits:
        if ts < since:
            continue
        for moment in (ts, ts + PROXY_REPEAT_MS):
            days[(cid or "", kind)].add(slots(moment)[1])
    out = []
    for (cid, kind), starts in sorted(days.items()):
        for day in sorted(starts):
            span = _day_span(day, spec.zone)
            hours = tuple(range(span[0] // HOUR_MS * 60, span[1] // MINUTE_MS, 60))
            out.append(Recount(cid, kind, span, hours, (day,)))
    return out


def _day_span(day: int, zone: str) -> tuple[int, int]:
    """The day that begins at slot ``day``, in ms, widened to whole UTC hours (the hourly
    cells it touches)."""
    from .buckets import boundaries

    start = day * MINUTE_MS
    end = boundaries(start, start + 1, "day", zone)[1]
    return start // HOUR_MS * HOUR_MS, -(-end // HOUR_MS) * HOUR_MS


# the key columns a report may filter on or group by (besides hour and dim)
SELECTABLE = ("cid", "kind", "event", "traffic", "value")


@dataclass(frozen=True)
class CellQuery:
    """What a report reads from the rollups: the cells of one dim in ``[slots[0],
    slots[1])``, with key columns equal to ``equals``, machine classes left out unless
    ``machines``; summed per slot, per ``by`` (key columns) and per kind."""

    dim: str
    slots: tuple[int, int]
    equals: tuple[tuple[str, str], ...] = ()
    machines: bool = False
    by: tuple[str, ...] = ()
    sketches: bool = True


@dataclass
class CellAnswer:
    """A store's answer to a CellQuery: rows of ``(slot, *by, kind, n)``, of ``(slot, *by,
    kind, param, total, count)`` and, if asked, of ``(slot, *by, kind, sketch)``."""

    counts: Sequence[Sequence[Any]]
    sums: Sequence[Sequence[Any]]
    sketches: Sequence[Sequence[Any]]


def answer(cells: Mapping[Key, Cell], query: CellQuery) -> CellAnswer:
    """``query`` answered from cells in memory (the memory store, raw reports), as a store
    answers it from its tables; a sketch row carries the cell's uids themselves (exact)."""
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    sums: dict[tuple[Any, ...], list[float]] = {}
    uids: list[tuple[Any, ...]] = []
    equals = query.equals
    first, last = query.slots
    for key, cell in cells.items():
        slot, cid, kind, event, traffic, dim, value = key
        if dim != query.dim or not first <= slot < last:
            continue
        if not query.machines and (traffic in MACHINE or traffic == MACHINE_CELL):
            continue
        columns = {"cid": cid, "kind": kind, "event": event, "traffic": traffic, "value": value}
        if any(columns[name] != wanted for name, wanted in equals):
            continue
        group = (slot, *(columns[name] for name in query.by), kind)
        counts[group] += cell.n
        for param, (total, n) in cell.sums.items():
            entry = sums.setdefault((*group, param), [0.0, 0])
            entry[0] += total
            entry[1] += n
        if query.sketches and cell.uids:
            uids.append((*group, frozenset(cell.uids)))
    return CellAnswer(
        [(*group, n) for group, n in counts.items()],
        [(*group, total, n) for group, (total, n) in sums.items()],
        uids,
    )


def recounted(spec: Spec, recount: Recount, rows: Iterable[Sequence[Any]]) -> dict[Key, Cell]:
    """The cells ``recount`` names, from its campaign's and kind's stored hits (COLUMNS
    order, stored order) from PROXY_REPEAT_MS before its span (they decide repeats in it)."""
    memory = ProxyMemory()
    acc = Accumulator(spec)
    start = recount.span[0]
    for row in rows:
        if row[METHOD] == "HEAD" or memory.repeat(row) or row[TS] < start:
            continue
        acc.add(row)
    hours, days = set(recount.hours), set(recount.days)
    return {
        key: cell
        for key, cell in acc.cells().items()
        if (key[0] in hours if key[5] == HOURLY else key[0] in days)
    }
