"""Rollups: the hits pre-counted per UTC hour, so a report over millions of hits reads
thousands of rows. Pure: what a hit contributes, and how contributions add up; the stores
keep the cells (``rollups`` and ``rollup_sums`` tables) and add each batch's in the
transaction that stores its hits, so a rollup never disagrees with what was acknowledged.

A **cell** is keyed by ``(hour, cid, kind, event, traffic, dim, value)``: every counted hit
adds to the cell of dimension ``""`` (the totals, value ``""``) and to one cell per
:data:`DIMENSIONS` entry (value ``""`` when the hit has none), plus one per declared event
parameter (``param:<name>``, the event registry's string, integer and boolean parameters).
A cell holds:

* ``n``: the counted hits;
* a HyperLogLog sketch of their ``uid`` values (sketch.py; hits without a uid are not in it,
  the totals.py definition of unique opens and clicks);
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .eventschema import Registry
from .hits import COLUMNS
from .revocations import host_of
from .totals import PROXY, PROXY_REPEAT_MS

HOUR_MS = 3_600_000
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

# (hour, cid, kind, event, traffic, dim, value)
Key = tuple[int, str, str, str, str, str, str]
KEY_COLUMNS = ("hour", "cid", "kind", "event", "traffic", "dim", "value")


@dataclass(frozen=True)
class Spec:
    """Which event parameters the rollups keep: from the event registry (PIXEL_EVENT_SCHEMAS).
    ``dims[event]``: the parameters that are dimensions; ``sums[event]``: those summed."""

    dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_registry(cls, registry: Registry | None) -> Spec:
        if registry is None:
            return cls()
        dims: dict[str, tuple[str, ...]] = {}
        sums: dict[str, tuple[str, ...]] = {}
        for name, schema in registry.events.items():
            declared = {**schema.required, **schema.optional}
            dims[name] = tuple(sorted(p for p, t in declared.items() if t in DIM_TYPES))
            sums[name] = tuple(sorted(p for p, t in declared.items() if t in SUM_TYPES))
        return cls(
            {k: v for k, v in dims.items() if v},
            {k: v for k, v in sums.items() if v},
        )

    def param_dimensions(self) -> tuple[str, ...]:
        """Every ``param:<name>`` dimension, sorted."""
        names = {p for params in self.dims.values() for p in params}
        return tuple(PARAM_PREFIX + p for p in sorted(names))

    def summed(self) -> tuple[str, ...]:
        """Every summed parameter, sorted."""
        return tuple(sorted({p for params in self.sums.values() for p in params}))


@dataclass
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


def dimensions(
    row: Sequence[Any], spec: Spec, offset: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[str, float]]]:
    """The cells a hit adds to, as ``(dim, value)`` (the totals' ``("", "")`` first), and the
    summed parameters it carries, as ``(param, number)``."""
    get = row.__getitem__
    kind = get(offset + KIND)
    event = get(offset + EVENT) or ""
    values = [get(offset + i) or "" for i in UTM]
    values.append(referrer(get(offset + REF), get(offset + REFERER), kind))
    values.append(get(offset + BROWSER) or "")
    values.append(get(offset + OS) or "")
    values.append(get(offset + DEVICE) or "")
    values.append(_text(get(offset + URL)) if kind == "click" else "")
    pairs: list[tuple[str, str]] = [("", ""), *zip(DIMENSIONS, values, strict=True)]
    sums: list[tuple[str, float]] = []
    if event and (event in spec.dims or event in spec.sums):
        params = _params(get(offset + PARAMS))
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
    return pairs, sums


def hour_slot(ts: int) -> int:
    return ts // HOUR_MS


class Accumulator:
    """Cells of hits added one by one (rows in hits.COLUMNS order, from ``offset``); a cell's
    time is ``slot(ts)``: its UTC hour (the rollups), or a report's bucket (raw reports)."""

    def __init__(self, spec: Spec, slot: Callable[[int], int] = hour_slot) -> None:
        self.spec = spec
        self.slot = slot
        self.cells: dict[Key, Cell] = {}

    def add(self, row: Sequence[Any], offset: int = 0) -> None:
        """Count ``row`` (a hit that counts: callers leave out HEADs and proxy repeats)."""
        self.add_pairs(row, dimensions(row, self.spec, offset), offset)

    def add_pairs(
        self,
        row: Sequence[Any],
        found: tuple[list[tuple[str, str]], list[tuple[str, float]]],
        offset: int = 0,
    ) -> None:
        """Count ``row`` whose :func:`dimensions` are ``found``."""
        pairs, sums = found
        base = (
            self.slot(int(row[offset + TS])),
            row[offset + CID] or "",
            row[offset + KIND],
            row[offset + EVENT] or "",
            row[offset + TRAFFIC] or "",
        )
        uid = row[offset + UID]
        cells = self.cells
        for dim, value in pairs:
            key = (*base, dim, value[:MAX_VALUE_CHARS])
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            cell.n += 1
            if uid is not None:
                cell.uids.add(uid)
            for name, number in sums:
                total = cell.sums.setdefault(name, [0.0, 0])
                total[0] += number
                total[1] += 1


def _params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
    hour, cid, kind, event, traffic, dim, value = values
    return (int(hour), cid, kind, event, traffic, dim, value)


def hours_of(rows: Iterable[tuple[int, str | None, str]]) -> set[tuple[int, str, str]]:
    """The (hour, cid, kind) of hits given as ``(ts, cid, kind)``, and the hour after, where
    one may decide a repeat (within PROXY_REPEAT_MS of its end): the cells to recompute when
    those hits change class."""
    hours: set[tuple[int, str, str]] = set()
    for ts, cid, kind in rows:
        hours.add((ts // HOUR_MS, cid or "", kind))
        hours.add(((ts + PROXY_REPEAT_MS) // HOUR_MS, cid or "", kind))
    return hours


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# the key columns a report may filter on or group by (besides hour and dim)
SELECTABLE = ("cid", "kind", "event", "traffic", "value")


@dataclass(frozen=True)
class CellQuery:
    """What a report reads from the rollups: the cells of one dimension (``""``: totals) in
    ``[hours[0], hours[1])``, with key columns equal to ``equals``, machine classes left out
    unless ``machines``; summed per hour, per ``by`` (key columns) and per kind."""

    dim: str
    hours: tuple[int, int]
    equals: tuple[tuple[str, str], ...] = ()
    machines: bool = False
    by: tuple[str, ...] = ()
    sketches: bool = True


@dataclass
class CellAnswer:
    """A store's answer to a CellQuery: rows of ``(hour, *by, kind, n)``, of ``(hour, *by,
    kind, param, total, count)`` and, if asked, of ``(hour, *by, kind, sketch)``."""

    counts: Sequence[Sequence[Any]]
    sums: Sequence[Sequence[Any]]
    sketches: Sequence[Sequence[Any]]


def answer(cells: Mapping[Key, Cell], query: CellQuery) -> CellAnswer:
    """``query`` answered from cells in memory (the memory store, raw reports), as a store
    answers it from its tables; a sketch row carries the cell's uids themselves (exact)."""
    from .traffic import MACHINE

    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    sums: dict[tuple[Any, ...], list[float]] = {}
    uids: list[tuple[Any, ...]] = []
    equals = query.equals
    first, last = query.hours
    for key, cell in cells.items():
        hour, cid, kind, event, traffic, dim, value = key
        if dim != query.dim or not first <= hour < last:
            continue
        if not query.machines and traffic in MACHINE:
            continue
        columns = {"cid": cid, "kind": kind, "event": event, "traffic": traffic, "value": value}
        if any(columns[name] != wanted for name, wanted in equals):
            continue
        group = (hour, *(columns[name] for name in query.by), kind)
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
