"""Stats: counts, uniques, sums and averages over a time range, bucketed in a reporting time
zone, grouped by one dimension, filtered on any — for ``GET /api/stats``, ``pixel-server
stats`` and the dashboard, which all call :func:`run`: one definition of every metric.

The metrics (docs/stats.md), over the hits that count by totals.py's rules (no HEAD, no
mail-proxy repeat; machine classes only with ``machines=1``):

* ``hits`` every counted hit; ``views``, ``opens``, ``clicks``, ``events`` those of each kind;
* ``uniques`` the distinct visitors among them (a hit's uid, else its daily visitor hash:
  salts.py); ``unique_opens``, ``unique_clicks`` among the opens, the clicks (with a uid on
  each, totals.py's unique opens and clicks);
* ``ctor`` unique clickers / (unique openers + recipients who clicked without an open) =
  ``|C| / |O or C|``, totals.py's click-to-open rate; None when nobody opened or clicked;
* ``sum:<p>``, ``avg:<p>`` the sum and the mean of a numeric event parameter declared in the
  event registry (``sum:total_value`` is revenue), over the hits that carry it.

Where the answer comes from (``source``): the rollups (rollup.py) when they can give it —
whole UTC hours make every bucket (not in a zone with a half-hour offset), the filters and
the group touch at most one of the rollups' dimensions besides campaign, kind, event and
class, and the rollups are complete; uniques there are HyperLogLog estimates (sketch.py).
Otherwise the stored hits themselves are read and counted by the same code (rollup.py's
Accumulator), uniques exact: slower, never different by definition.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import datasketches

from . import buckets, series
from .export import neutralise
from .fields import KINDS
from .query import HitQuery, QueryError, parse_time, single_params
from .rollup import (
    DAILY,
    HOUR_MS,
    HOURLY,
    METHOD,
    MINUTE_MS,
    Accumulator,
    CellAnswer,
    CellQuery,
    ProxyMemory,
    Spec,
    answer,
)
from .rollup import DIMENSIONS as CELL_DIMENSIONS
from .sketch import Union
from .store.base import Store
from .totals import DEFINITIONS_VERSION

KEY_DIMENSIONS = ("kind", "event", "cid", "traffic")  # a rollup cell's own key columns
BASE_METRICS = (
    "hits",
    "views",
    "opens",
    "clicks",
    "events",
    "uniques",
    "unique_opens",
    "unique_clicks",
    "ctor",
)
KIND_METRICS = {"views": "view", "opens": "open", "clicks": "click", "events": "event"}
UNIQUE_METRICS = frozenset(("uniques", "unique_opens", "unique_clicks", "ctor"))
SERIES_PARAMS = ("outliers", "threshold", "window", "smooth", "smooth_window", "alpha")
PARAMS = ("since", "until", "interval", "zone", "group", "machines", "metrics", *SERIES_PARAMS)
DEFAULT_SINCE = "30d"
TABLES = ("series", "breakdown", "rows")
MAX_GROUPS = 1000  # the breakdown's largest groups kept (rows follow them)
PAGE = 5000  # raw reports read the hits this many at a time
# filters that the hit log's own indexes serve (query.py's names), for raw reports
HIT_FILTERS = {"kind": "kind", "event": "e", "cid": "cid", "traffic": "traffic"} | {
    name: name for name in CELL_DIMENSIONS[:5]
}


def dimension_names(spec: Spec) -> tuple[str, ...]:
    """Every dimension a report may group by or filter on."""
    return (*KEY_DIMENSIONS, *CELL_DIMENSIONS, *spec.param_dimensions())


def metric_names(spec: Spec) -> tuple[str, ...]:
    """Every metric, the default set of a report."""
    summed = spec.summed()
    return (*BASE_METRICS, *(f"sum:{p}" for p in summed), *(f"avg:{p}" for p in summed))


@dataclass(frozen=True)
class StatsQuery:
    span: tuple[int, int]  # ms, widened to whole buckets
    interval: str
    zone: str
    boundaries: tuple[int, ...]  # bucket i is [boundaries[i], boundaries[i + 1])
    group: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    machines: bool = False
    metrics: tuple[str, ...] = BASE_METRICS
    options: series.SeriesOptions = field(default_factory=series.SeriesOptions)


def parse_request(
    pairs: Iterable[tuple[str, str]], now_ms: int, spec: Spec, default_zone: str = "UTC"
) -> StatsQuery:
    """A report from request parameters (the API's query string, the CLI's options, a
    dashboard URL): PARAMS and ``<dimension>=<value>`` filters; QueryError otherwise."""
    names = dimension_names(spec)
    params = single_params(pairs, (*PARAMS, *names), "parameter")
    try:
        zone = buckets.parse_zone(params.get("zone") or default_zone)
    except ValueError as exc:
        raise QueryError(f"zone: {exc}") from None
    since = local_time(params.get("since") or DEFAULT_SINCE, now_ms, "since", zone)
    until = local_time(params.get("until"), now_ms, "until", zone)
    since = 0 if since is None else since
    until = now_ms if until is None else until
    until = max(until, since + 1)  # as the campaign totals: an empty span, one bucket
    interval = params.get("interval") or buckets.auto_interval(since, until)
    if interval not in buckets.INTERVALS:
        raise QueryError(f"interval is one of {', '.join(buckets.INTERVALS)}")
    try:
        bounds = tuple(buckets.boundaries(since, until, interval, zone))
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    group = params.get("group") or None
    if group is not None and group not in names:
        raise QueryError(f"group: one of {', '.join(names)}")
    machines = params.get("machines", "")
    if machines not in ("", "0", "1"):
        raise QueryError("machines: give 1 (count machine classes too) or 0")
    known = metric_names(spec)
    wanted = tuple(m for m in (params.get("metrics") or "").split(",") if m) or known
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise QueryError(f"metrics: {unknown[0]!r} is not one of {', '.join(known)}")
    options = series.parse_options({k: v for k, v in params.items() if k in SERIES_PARAMS})
    filters = tuple(sorted((k, v) for k, v in params.items() if k in names))
    for name, value in filters:
        if name == "kind" and value not in ("", *KINDS):
            raise QueryError(f"kind must be one of {', '.join(KINDS)}")
    return StatsQuery(
        span=(bounds[0], bounds[-1]),
        interval=interval,
        zone=zone,
        boundaries=bounds,
        group=group,
        filters=filters,
        machines=machines == "1",
        metrics=tuple(dict.fromkeys(wanted)),
        options=options,
    )


def local_time(raw: str | None, now_ms: int, name: str, zone: str) -> int | None:
    """query.parse_time, but a date or time without an offset (``2026-11-10``,
    ``2026-11-10T08:00``) is the report zone's: a day in Berlin begins at its midnight."""
    if raw:
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None and not raw.strip().isdigit():
            return int(moment.replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)
    return parse_time(raw, now_ms, name)


def plan(query: StatsQuery, spec: Spec) -> CellQuery | None:
    """The rollup read that answers ``query``, or None when only the hits can: the daily
    cells (report zone) for days, weeks and months in that zone, the hourly totals for
    buckets of whole UTC hours; the dimensions' cells know people from machines, not the
    class."""
    cell_dims = {d for d, _ in query.filters if d not in KEY_DIMENSIONS}
    if query.group is not None and query.group not in KEY_DIMENSIONS:
        cell_dims.add(query.group)
    daily = query.zone == spec.zone and query.interval != "hour"
    if len(cell_dims) > 1:
        return None
    if cell_dims:
        by_class = query.group == "traffic" or any(d == "traffic" for d, _ in query.filters)
        if not daily or by_class:
            return None
        dim = cell_dims.pop()
    elif daily:
        dim = DAILY
    elif all(b % HOUR_MS == 0 for b in query.boundaries):
        dim = HOURLY
    else:
        return None
    equals = tuple(
        (name if name in KEY_DIMENSIONS else "value", value) for name, value in query.filters
    )
    return CellQuery(
        dim=dim,
        slots=(query.span[0] // MINUTE_MS, -(-query.span[1] // MINUTE_MS)),
        equals=equals,
        machines=query.machines,
        by=_by(query),
        sketches=bool(UNIQUE_METRICS & set(query.metrics)),
    )


def _by(query: StatsQuery) -> tuple[str, ...]:
    if query.group is None or query.group == "kind":
        return ()
    return (query.group if query.group in KEY_DIMENSIONS else "value",)


class Uniques:
    """Distinct uids: exact while only uid sets were added, else a HyperLogLog union."""

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.union: Union | None = None

    def add(self, item: Any) -> None:
        if isinstance(item, frozenset | set):
            self.exact |= item
        else:
            self.sketch(datasketches.hll_sketch.deserialize(bytes(item)))

    def sketch(self, sketch: Any) -> None:
        if self.union is None:
            self.union = Union()
        self.union.add_sketch(sketch)

    def merge(self, other: Uniques) -> None:
        self.exact |= other.exact
        if other.union is not None:
            self.sketch(other.union.result())

    def count(self) -> int:
        if self.union is None:
            return len(self.exact)
        self.union.add_uids(self.exact)
        self.exact = set()
        return self.union.estimate()


@dataclass
class Tally:
    """The counts behind one row of a report."""

    kinds: Counter[str] = field(default_factory=Counter)
    sums: dict[str, list[float]] = field(default_factory=dict)
    uniques: dict[str, Uniques] = field(default_factory=dict)

    def figures(self, metrics: Sequence[str]) -> dict[str, Any]:
        """Each of ``metrics`` by the module's definitions."""
        every: Uniques | None = None
        opened: Uniques | None = None
        if {"uniques", "ctor"} & set(metrics):
            every, opened = Uniques(), Uniques()
            for kind, entry in self.uniques.items():
                every.merge(entry)
                if kind in ("open", "click"):
                    opened.merge(entry)
        out: dict[str, Any] = {}
        for metric in metrics:
            out[metric] = self._figure(metric, every, opened)
        return out

    def _figure(self, metric: str, every: Uniques | None, opened: Uniques | None) -> Any:
        if metric == "hits":
            return self.kinds.total()
        if metric in KIND_METRICS:
            return self.kinds[KIND_METRICS[metric]]
        if metric == "uniques":
            return every.count() if every else 0
        if metric in ("unique_opens", "unique_clicks"):
            entry = self.uniques.get("open" if metric == "unique_opens" else "click")
            return entry.count() if entry else 0
        if metric == "ctor":
            clicks = self.uniques.get("click")
            both = opened.count() if opened else 0
            return round(min(1.0, clicks.count() / both), 4) if clicks and both else None
        how, _, param = metric.partition(":")
        total, n = self.sums.get(param, (0.0, 0))
        if how == "sum":
            return _number(total)
        return _number(total / n) if n else None


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 6)


@dataclass
class Stats:
    """A report, as the API, the CLI and the dashboard show it."""

    query: StatsQuery
    source: str  # "rollups" or "hits"
    totals: dict[str, Any]
    series: list[dict[str, Any]]
    breakdown: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        q = self.query
        return {
            "definitions": DEFINITIONS_VERSION,
            "source": self.source,
            "since": buckets.label(q.span[0], q.zone),
            "until": buckets.label(q.span[1], q.zone),
            "interval": q.interval,
            "zone": q.zone,
            "group": [q.group] if q.group else [],
            "filters": dict(q.filters),
            "machines": q.machines,
            "metrics": list(q.metrics),
            "totals": self.totals,
            "series": self.series,
            "breakdown": self.breakdown,
            "rows": self.rows,
        }

    def csv(self, table: str = "series") -> str:
        """One of TABLES as CSV (formula-like cells defused, as exports do)."""
        if table not in TABLES:
            raise QueryError(f"table is one of {', '.join(TABLES)}")
        records: list[dict[str, Any]] = getattr(self, table)
        group = [self.query.group] if self.query.group else []
        columns = {
            "series": ["bucket", *self.query.metrics],
            "breakdown": [*group, *self.query.metrics],
            "rows": ["bucket", *group, *self.query.metrics],
        }[table]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow([_cell(record.get(column)) for column in columns])
        return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return neutralise(value)


async def run(store: Store, query: StatsQuery) -> Stats:
    """The report ``query`` asks for, from the rollups when they can answer it."""
    spec = store.spec
    bounds = query.boundaries
    cells = plan(query, spec)
    if cells is not None and await store.rollups_complete():
        found = await store.rollup_cells(cells)
        return _report(query, "rollups", found, lambda slot: _bucket(bounds, slot * MINUTE_MS))
    found = await _from_hits(store, query, spec)
    return _report(query, "hits", found, lambda index: index)


def _bucket(bounds: Sequence[int], ts: int) -> int:
    return buckets.bucket_index(list(bounds), ts)


async def _from_hits(store: Store, query: StatsQuery, spec: Spec) -> CellAnswer:
    """The cells of ``query`` counted from the stored hits (oldest first): the same rules
    as the rollups, each cell's time its bucket's index."""
    bounds = list(query.boundaries)
    equals = {HIT_FILTERS[d]: v for d, v in query.filters if d in HIT_FILTERS and v}
    others = [(d, v) for d, v in query.filters if d not in KEY_DIMENSIONS]

    def keep(values: dict[str, str]) -> bool:
        return all(values.get(d, "") == v for d, v in others)

    def slots(ts: int) -> tuple[int, int]:
        index = buckets.bucket_index(bounds, ts)
        return index, index

    acc = Accumulator(spec, slots, keep=keep if others else None)
    memory = ProxyMemory()
    page = HitQuery(
        since_ms=query.span[0],
        until_ms=query.span[1],
        equals=equals,
        limit=PAGE,
        oldest_first=True,
    )
    while True:
        rows = await store.query_rows(page)
        for row in rows:
            if row[1 + METHOD] == "HEAD" or memory.repeat(row, 1):
                continue
            acc.add(row, 1)
        if len(rows) < PAGE:
            break
        page = page.after_key(rows[-1][1], rows[-1][0])
    group_dim = query.group if query.group and query.group not in KEY_DIMENSIONS else None
    keys = tuple((d, v) for d, v in query.filters if d in KEY_DIMENSIONS)
    if group_dim:
        keys += tuple(("value", v) for d, v in query.filters if d == group_dim)
    cell_query = CellQuery(
        dim=group_dim or HOURLY,
        slots=(0, len(bounds) - 1),
        equals=keys,
        machines=query.machines,
        by=_by(query),
        sketches=bool(UNIQUE_METRICS & set(query.metrics)),
    )
    return answer(acc.cells(), cell_query)


def _report(
    query: StatsQuery, source: str, found: CellAnswer, to_bucket: Callable[[int], int]
) -> Stats:
    grouped = query.group is not None
    width = 1 + len(_by(query))  # (time, *by) before the kind
    total = Tally()
    per_bucket: dict[int, Tally] = {}
    per_group: dict[str, Tally] = {}
    per_row: dict[tuple[int, str], Tally] = {}

    def targets(row: Sequence[Any]) -> list[Tally]:
        index = to_bucket(int(row[0]))
        chosen = [total, per_bucket.setdefault(index, Tally())]
        if grouped:
            value = str(row[1])  # the group's column: the kind itself, or the one of `by`
            chosen.append(per_group.setdefault(value, Tally()))
            chosen.append(per_row.setdefault((index, value), Tally()))
        return chosen

    for row in found.counts:
        kind, n = row[width], int(row[width + 1])
        for tally in targets(row):
            tally.kinds[kind] += n
    for row in found.sums:
        param, amount, n = row[width + 1], float(row[width + 2]), int(row[width + 3])
        for tally in targets(row):
            entry = tally.sums.setdefault(param, [0.0, 0])
            entry[0] += amount
            entry[1] += n
    for row in found.sketches:
        kind, item = row[width], row[width + 1]
        if isinstance(item, frozenset):
            for tally in targets(row):
                tally.uniques.setdefault(kind, Uniques()).add(item)
            continue
        sketch = datasketches.hll_sketch.deserialize(bytes(item))
        for tally in targets(row):
            tally.uniques.setdefault(kind, Uniques()).sketch(sketch)
    metrics = query.metrics
    bounds = query.boundaries
    points = []
    for index in range(len(bounds) - 1):
        tally = per_bucket.get(index) or Tally()
        points.append(
            {
                "bucket": buckets.label(bounds[index], query.zone),
                "start_ms": bounds[index],
                **tally.figures(metrics),
            }
        )
    _decorate(points, metrics, query.options)
    breakdown: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    if grouped:
        assert query.group is not None
        ranked = sorted(per_group.items(), key=lambda item: (-item[1].kinds.total(), item[0]))
        kept = ranked[:MAX_GROUPS]
        for value, tally in kept:
            breakdown.append({query.group: _shown(value), **tally.figures(metrics)})
        kept_values = {value for value, _ in kept}
        for (index, value), tally in sorted(per_row.items()):
            if value in kept_values:
                rows.append(
                    {
                        "bucket": buckets.label(bounds[index], query.zone),
                        query.group: _shown(value),
                        **tally.figures(metrics),
                    }
                )
    return Stats(query, source, total.figures(metrics), points, breakdown, rows)


def _shown(value: str) -> str | None:
    return value or None  # "" is a hit without this dimension: null, "(none)" in tables


def _decorate(
    points: list[dict[str, Any]], metrics: Sequence[str], options: series.SeriesOptions
) -> None:
    """Add outlier flags and smoothed values to the series, as ``options`` ask."""
    if options.outliers is None and options.smooth is None:
        return
    for point in points:
        if options.outliers is not None:
            point["outlier"] = []
        if options.smooth is not None:
            point["smoothed"] = {}
    for metric in metrics:
        values = [_float(point[metric]) for point in points]
        if options.outliers is not None:
            for point, flagged in zip(points, series.flags(values, options), strict=True):
                if flagged:
                    point["outlier"].append(metric)
        smoothed = series.smoothed(values, options)
        if smoothed is not None:
            for point, value in zip(points, smoothed, strict=True):
                point["smoothed"][metric] = None if value is None else round(value, 4)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
