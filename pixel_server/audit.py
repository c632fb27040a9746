"""``pixel-server audit`` and ``GET /api/audit``: is tracking working? Checks over a span,
each with its figure, its threshold and whether it passed; the audit fails (exit status 1,
``"ok": false``) when any threshold is crossed, so it can run from cron or CI.

Checks (docs/audit.md):

* ``duplicates`` — events answered duplicate (a retry, stored once) / events stored;
* ``sequence_gaps`` — events lost between tracker and server (gaps in ``seq``) / sent;
* ``missing_parameters`` — hits missing a parameter their campaign is expected to carry
  (``expect`` in the config: ``{"spring": ["uid", "utm_source"], "*": ["utm_source"]}``);
* ``unknown_parameters``, ``unknown_events`` — event parameters and names the event registry
  does not declare (only with PIXEL_EVENT_SCHEMAS);
* ``schema_violations`` — events stored flagged ``schema_violation`` or ``unknown_event``;
* ``invalid_tokens`` — pixels and links refused for a forged, tampered or expired token;
* ``machine_share`` — hits of machine classes / all hits;
* ``traffic_drops`` — campaigns whose traffic stopped, or fell below ``(1 - fraction)`` of
  the median of their own previous ``history_days`` days (those with at least
  ``min_daily`` hits a day).

The hit-level checks read the span's hits once (a campaign's through its index); the drops
come from the daily report (stats.py, the rollups).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import buckets, jsonfile
from .eventschema import Registry
from .fields import COLUMN_KEYS
from .loss import DAY_MS
from .query import HitQuery
from .rollup import params_of
from .store.base import ROW_KEYS, Store
from .traffic import MACHINE

PAGE = 5000
TOP = 20  # names listed per check
DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "duplicates": 0.05,
    "sequence_gaps": 0.01,
    "missing_parameters": 0.01,
    "unknown_parameters": None,
    "unknown_events": None,
    "schema_violations": 0,
    "invalid_tokens": None,
    "machine_share": None,
    "traffic_drops": 0,
}
SHARES = frozenset(("duplicates", "sequence_gaps", "missing_parameters", "machine_share"))
_I = {name: ROW_KEYS.index(name) for name in ROW_KEYS}
# an expected parameter is present if its column is set, else if the params JSON has it
_COLUMN_OF = {**{key: key for key in COLUMN_KEYS}, "e": "event"}


MAX_SPAN_DAYS = 366


def check_span(span: tuple[int, int]) -> tuple[int, int]:
    """``span`` if an audit can read it: after 1970, at most MAX_SPAN_DAYS; else QueryError."""
    from .query import QueryError

    since, until = span
    if since < 0 or until <= since:
        raise QueryError("the span must begin after 1970 and end after it begins")
    if until - since > MAX_SPAN_DAYS * DAY_MS:
        raise QueryError(f"an audit covers at most {MAX_SPAN_DAYS} days")
    return span


class AuditConfigError(ValueError):
    """The audit config cannot be used; the message is one line saying where and why."""


@dataclass(frozen=True)
class Drops:
    days: int = 1  # the recent days compared
    history_days: int = 14  # with the median of these before them
    min_daily: int = 20  # campaigns with fewer hits a day than this are not judged
    fraction: float = 0.5  # a drop: below (1 - fraction) of the median


@dataclass(frozen=True)
class AuditConfig:
    expect: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    thresholds: Mapping[str, float | None] = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    drops: Drops = field(default_factory=Drops)


def load_config(path: str) -> AuditConfig:
    """The config in the file at ``path``; AuditConfigError (one line) if it cannot be used."""
    return jsonfile.load(path, _config, AuditConfigError)


def _config(document: Any) -> AuditConfig:
    if not isinstance(document, dict) or document.keys() - {"expect", "thresholds", "drops"}:
        raise AuditConfigError("an object with expect, thresholds and drops (all optional)")
    expect = document.get("expect", {})
    if not isinstance(expect, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) and p for p in v) for v in expect.values()
    ):
        raise AuditConfigError('expect maps a campaign (or "*") to a list of parameter names')
    given = document.get("thresholds", {})
    if not isinstance(given, dict) or given.keys() - DEFAULT_THRESHOLDS.keys():
        unknown = sorted(set(given) - DEFAULT_THRESHOLDS.keys()) if isinstance(given, dict) else []
        raise AuditConfigError(
            f"thresholds: unknown {unknown[:1]}; known: {', '.join(DEFAULT_THRESHOLDS)}"
        )
    for name, value in given.items():
        number = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if value is not None and not number:
            raise AuditConfigError(f"thresholds.{name} is a number >= 0, or null (report only)")
        if name in SHARES and value is not None and value > 1:
            raise AuditConfigError(f"thresholds.{name} is a share, from 0 to 1")
    drops = document.get("drops", {})
    if not isinstance(drops, dict) or drops.keys() - Drops.__dataclass_fields__.keys():
        raise AuditConfigError("drops has days, history_days, min_daily and fraction")
    try:
        made = Drops(**drops)
    except TypeError:
        raise AuditConfigError("drops has days, history_days, min_daily and fraction") from None
    whole = (made.days, made.history_days, made.min_daily)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in whole):
        raise AuditConfigError("drops.days, history_days and min_daily are whole numbers >= 1")
    if not isinstance(made.fraction, int | float) or not 0 < made.fraction < 1:
        raise AuditConfigError("drops.fraction is above 0 and below 1")
    return AuditConfig(
        {cid: tuple(params) for cid, params in expect.items()},
        {**DEFAULT_THRESHOLDS, **given},
        made,
    )


@dataclass
class Check:
    name: str
    value: float
    threshold: float | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.threshold is None or self.value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        value = round(self.value, 6) if isinstance(self.value, float) else self.value
        return {
            "name": self.name,
            "value": value,
            "threshold": self.threshold,
            "ok": self.ok,
            **self.detail,
        }


@dataclass
class Audit:
    span: tuple[int, int]
    cid: str | None
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        from .export import iso_time

        return {
            "since": iso_time(self.span[0]),
            "until": iso_time(self.span[1]),
            "cid": self.cid,
            "ok": self.ok,
            "checks": [check.as_dict() for check in self.checks],
        }


@dataclass
class _Tally:
    """What one pass over the span's hits counts."""

    hits: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    expected: int = 0  # hits with an expectation
    missing: Counter[str] = field(default_factory=Counter)  # "cid: param"
    missing_hits: int = 0
    unknown_params: Counter[str] = field(default_factory=Counter)
    unknown_events: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)

    def add(
        self, row: Sequence[Any], expect: Mapping[str, tuple[str, ...]], registry: Registry | None
    ) -> None:
        self.hits += 1
        self.classes[row[_I["traffic"]] or "unclassified"] += 1
        flags = row[_I["flags"]] or ""
        for flag in ("schema_violation", "unknown_event"):
            if flag in flags.split(","):
                self.flagged[flag] += 1
        cid = row[_I["cid"]] or ""
        wanted = expect.get(cid, expect.get("*", ()))
        params: dict[str, Any] | None = None
        if wanted:
            self.expected += 1
            absent = []
            for name in wanted:
                column = _COLUMN_OF.get(name)
                if column is not None and column in _I:
                    if row[_I[column]] in (None, ""):
                        absent.append(name)
                    continue
                params = _params(row) if params is None else params
                if params.get(name) in (None, ""):
                    absent.append(name)
            if absent:
                self.missing_hits += 1
                for name in absent:
                    self.missing[f"{cid or '(none)'}: {name}"] += 1
        if row[_I["kind"]] == "event" and registry is not None and registry.events:
            event = row[_I["event"]] or ""
            schema = registry.events.get(event)
            if schema is None:
                self.unknown_events[event] += 1
            else:
                declared = schema.required.keys() | schema.optional.keys()
                params = _params(row) if params is None else params
                for key in params.keys() - declared:
                    self.unknown_params[f"{event}.{key}"] += 1


def _params(row: Sequence[Any]) -> dict[str, Any]:
    return params_of(row[_I["params"]])


def _top(counts: Counter[str]) -> dict[str, int]:
    return dict(counts.most_common(TOP))


async def run(
    store: Store,
    span: tuple[int, int],
    cid: str | None,
    config: AuditConfig,
    registry: Registry | None,
    zone: str,
) -> Audit:
    """The audit of ``span`` (ms), one campaign's or every one's."""
    tally = _Tally()
    page = HitQuery(
        since_ms=span[0],
        until_ms=span[1],
        equals={"cid": cid} if cid else {},
        limit=PAGE,
        oldest_first=True,
    )
    while True:
        rows = await store.query_rows(page)
        for row in rows:
            tally.add(row, config.expect, registry)
        if len(rows) < PAGE:
            break
        page = page.after_key(rows[-1][1], rows[-1][0])
    days = (span[0] // DAY_MS, -(-span[1] // DAY_MS))
    loss = await store.loss_report((days[0] * DAY_MS, days[1] * DAY_MS), cid)
    sent = sum(row.sent for row in loss)
    stored = sum(row.received for row in loss)
    duplicates = sum(row.duplicates for row in loss)
    lost = sum(row.lost for row in loss)
    refused = await store.rejects(days)
    reasons: Counter[str] = Counter()
    for _, kind, reason, n in refused:
        reasons[f"{kind}: {reason}"] += n
    machines = sum(n for name, n in tally.classes.items() if name in MACHINE)
    t = config.thresholds
    checks = [
        Check("duplicates", _share(duplicates, stored + duplicates), t["duplicates"],
              {"duplicates": duplicates, "events": stored}),
        Check("sequence_gaps", _share(lost, sent), t["sequence_gaps"],
              {"lost": lost, "sent": sent}),
        Check("missing_parameters", _share(tally.missing_hits, tally.expected),
              t["missing_parameters"],
              {"hits": tally.missing_hits, "expected": tally.expected, "top": _top(tally.missing)}),
        Check("unknown_parameters", tally.unknown_params.total(), t["unknown_parameters"],
              {"top": _top(tally.unknown_params)}),
        Check("unknown_events", tally.unknown_events.total(), t["unknown_events"],
              {"top": _top(tally.unknown_events)}),
        Check("schema_violations", tally.flagged.total(), t["schema_violations"],
              {"flags": dict(tally.flagged)}),
        Check("invalid_tokens", reasons.total(), t["invalid_tokens"], {"top": _top(reasons)}),
        Check("machine_share", _share(machines, tally.hits), t["machine_share"],
              {"machines": machines, "hits": tally.hits, "classes": _top(tally.classes)}),
        await _drops(store, span, cid, config, zone, t["traffic_drops"]),
    ]  # fmt: skip
    return Audit(span, cid, checks)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


async def _drops(
    store: Store,
    span: tuple[int, int],
    cid: str | None,
    config: AuditConfig,
    zone: str,
    threshold: float | None,
) -> Check:
    """Campaigns whose last ``days`` complete days (in ``zone``) stopped or dropped against
    the median of the ``history_days`` before them."""
    from .stats import parse_request
    from .stats import run as report

    d = config.drops
    today = buckets.boundaries(span[1] - 1, span[1], "day", zone)[0]
    since = today - (d.days + d.history_days) * DAY_MS - DAY_MS  # a DST day: one more
    pairs = [
        ("since", str(since)),
        ("until", str(today)),
        ("interval", "day"),
        ("zone", zone),
        ("group", "cid"),
        ("metrics", "hits"),
    ]
    if cid:
        pairs.append(("cid", cid))
    found = await report(store, parse_request(pairs, span[1], store.spec, zone))
    starts = [p["start_ms"] for p in found.series][-(d.days + d.history_days) :]
    per: dict[str, dict[int, int]] = {}
    for row in found.rows:
        start = next(p["start_ms"] for p in found.series if p["bucket"] == row["bucket"])
        per.setdefault(row["cid"] or "", {})[start] = row["hits"]
    flagged: dict[str, str] = {}
    for campaign, days in sorted(per.items()):
        history = [days.get(s, 0) for s in starts[: d.history_days]]
        recent = [days.get(s, 0) for s in starts[d.history_days :]]
        median = statistics.median(history) if history else 0
        if median < d.min_daily or not recent:
            continue
        mean = sum(recent) / len(recent)
        if sum(recent) == 0:
            flagged[campaign or "(none)"] = f"stopped (median {median:g} a day before)"
        elif mean < (1 - d.fraction) * median:
            flagged[campaign or "(none)"] = f"dropped to {mean:g} a day from a median of {median:g}"
    return Check("traffic_drops", len(flagged), threshold, {"campaigns": flagged})
