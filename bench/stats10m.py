"""The ``stats-10m`` step: reports over ten million stored hits, on SQLite and PostgreSQL.

It generates 10M hits of 30 days (50 campaigns, one of them big; 400k recipients; opens,
clicks, views and purchase events with a value; people, Gmail's proxy, Apple MPP, scanners
and bots), loads them into each store with the real schema (bulk: SQLite ``executemany``
with the indexes made after, PostgreSQL ``COPY``), builds the rollups with ``pixel-server
rollups rebuild``'s own code (timed: the rebuild rate), then times the reports through
stats.run (what the API, the CLI and the dashboard call), each ``REPEATS`` times:

* ``campaign-daily``: 30 days by day, one big campaign, every metric (uniques and CTOR
  from the sketches, revenue) — the issue's target: under 200 ms;
* ``all-campaigns``: 30 days by day grouped by campaign, counts only;
* ``campaign-by-source``: the big campaign's 30 days grouped by utm_source, every metric;
* ``overview``: 30 days, grouped by campaign, every metric, no series needed (the
  dashboard's overview).

Run alone with ``make bench BENCH_ARGS="--only stats-10m"`` (``--stats-hits N`` to scale;
PostgreSQL from PIXEL_BENCH_POSTGRES, skipped with a note if it cannot be reached).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bigdb
import pg

from pixel_server import stats
from pixel_server.eventschema import EventSchema, Registry
from pixel_server.hits import Hit
from pixel_server.rollup import Spec
from pixel_server.store import Store
from pixel_server.store.postgres import PostgresStore
from pixel_server.store.sqlite import SQLiteStore

NAME = "stats-10m"
TOTAL_HITS = 10_000_000
DAYS = 30
DAY_MS = 86_400_000
END_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
START_MS = END_MS - DAYS * DAY_MS
CAMPAIGNS = 50
BIG = "spring-sale-2026"
RECIPIENTS = 400_000
TARGET_MS = 200.0
REPEATS = 7
SPEC = Spec.from_registry(
    Registry({"purchase_completed": EventSchema({"total_value": "number"}, {"plan": "string"})})
)
SOURCES = ("newsletter", "newsletter", "newsletter", "google", "facebook", "partner", "x", "")
BROWSERS = (
    ("Chrome", "Windows", "desktop"),
    ("Chrome", "Android", "mobile"),
    ("Mobile Safari", "iOS", "mobile"),
    ("Safari", "Mac OS X", "desktop"),
    ("Firefox", "Windows", "desktop"),
    ("Edge", "Windows", "desktop"),
    ("Samsung Internet", "Android", "mobile"),
    ("Chrome", "Mac OS X", "desktop"),
)
TRAFFIC = ("human",) * 15 + ("mail_proxy",) * 2 + ("apple_mpp", "link_scanner", "crawler")
QUERIES = {
    "campaign-daily": {"cid": BIG, "interval": "day"},
    "all-campaigns": {"group": "cid", "interval": "day", "metrics": "hits,opens,clicks"},
    "campaign-by-source": {"cid": BIG, "group": "utm_source", "interval": "day"},
    "overview": {"group": "cid", "interval": "month"},
}


def rows(total: int, seed: int = 10) -> Iterator[tuple[Any, ...]]:
    """``total`` hits in COLUMNS order, oldest first; a third of the email hits in the big
    campaign."""
    rng = random.Random(seed)  # noqa: S311 - reproducible bench data, not a secret
    campaigns = [f"newsletter-2026-{n:02}" for n in range(CAMPAIGNS - 1)]
    for i in range(total):
        ts = START_MS + i * (DAYS * DAY_MS) // total + rng.randrange(1000)
        browser, os_name, device = BROWSERS[rng.randrange(len(BROWSERS))]
        traffic = TRAFFIC[rng.randrange(len(TRAFFIC))]
        roll = rng.random()
        if roll < 0.3:  # a site view, no recipient
            hit = Hit(ts=ts, kind="view", url=f"https://shop.example/p/{i % 3000}")
            hit.ref = "https://www.google.com/" if rng.random() < 0.4 else None
            hit.utm_source = SOURCES[rng.randrange(len(SOURCES))] or None
        else:
            cid = BIG if rng.random() < 0.33 else campaigns[rng.randrange(len(campaigns))]
            kind = "open" if roll < 0.75 else "click" if roll < 0.93 else "event"
            hit = Hit(ts=ts, kind=kind, cid=cid, uid=f"r-{rng.randrange(RECIPIENTS)}")
            hit.utm_source, hit.utm_medium, hit.utm_campaign = "newsletter", "email", cid
            if kind == "click":
                hit.url = f"https://shop.example/{cid}/{rng.randrange(30)}"
            elif kind == "event":
                hit.event = "purchase_completed"
                value = round(rng.uniform(5, 250), 2)
                hit.params = json.dumps({"total_value": value, "plan": rng.choice("ab")})
        hit.browser, hit.os, hit.device, hit.traffic = browser, os_name, device, traffic
        hit.method = "GET"
        yield hit.row()


def timed(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """REPEATS runs of one report: the fastest and the median wall time, its source."""
    pairs = {"since": str(START_MS), "until": str(END_MS), **params}
    query = stats.parse_request(pairs.items(), END_MS, store.spec)

    async def once() -> tuple[float, str, int]:
        started = time.perf_counter()
        report = await stats.run(store, query)
        return (time.perf_counter() - started) * 1000, report.source, len(report.series)

    runs = [asyncio.get_event_loop().run_until_complete(once()) for _ in range(REPEATS)]
    walls = sorted(ms for ms, _, _ in runs)
    return {
        "best_ms": round(walls[0], 1),
        "median_ms": round(statistics.median(walls), 1),
        "source": runs[0][1],
        "buckets": runs[0][2],
    }


def measure(store: Store, say: Callable[[str], None], label: str) -> dict[str, Any]:
    loop = asyncio.get_event_loop()
    started = time.perf_counter()
    rebuilt = loop.run_until_complete(store.rebuild_rollups())
    rebuild_s = time.perf_counter() - started
    say(f"  {label}: rollups rebuilt from {rebuilt:,} hits in {rebuild_s:.0f} s")
    figures: dict[str, Any] = {"rebuild_s": round(rebuild_s, 1), "hits": rebuilt}
    for name, params in QUERIES.items():
        figures[name] = timed(store, params)
        say(f"  {label} {name}: {figures[name]}")
    return figures


def sqlite_figures(work: Path, total: int, say: Callable[[str], None]) -> dict[str, Any]:
    path = work / "stats10m.db"
    say(f"{NAME}: loading {total:,} hits into SQLite")
    load_s = bigdb.build(path, total, rows(total))
    store = SQLiteStore(str(path), spec=SPEC)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(store.open())
        figures = measure(store, say, "sqlite")
        loop.run_until_complete(store.aclose())
    finally:
        loop.close()
    figures["load_s"] = round(load_s, 1)
    figures["file_mib"] = round(path.stat().st_size / 2**20)
    path.unlink()
    return figures


def postgres_figures(total: int, say: Callable[[str], None]) -> dict[str, Any]:
    reason = pg.unavailable_reason()
    if reason is not None:
        say(f"{NAME}: PostgreSQL skipped: {reason}")
        return {"skipped": reason}
    database = pg.Database.create()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        say(f"{NAME}: loading {total:,} hits into PostgreSQL ({database.name})")
        started = time.perf_counter()
        loop.run_until_complete(pg.copy_hits(database.url, rows(total), (START_MS, END_MS), SPEC))
        load_s = time.perf_counter() - started
        store = PostgresStore(database.url, spec=SPEC)
        loop.run_until_complete(store.open())
        figures = measure(store, say, "postgresql")
        loop.run_until_complete(store.aclose())
        figures["load_s"] = round(load_s, 1)
        return figures
    finally:
        loop.close()
        database.drop()


def run(work: Path, total: int, say: Callable[[str], None]) -> dict[str, Any]:
    return {
        "hits": total,
        "target_ms": TARGET_MS,
        "sqlite": sqlite_figures(work, total, say),
        "postgresql": postgres_figures(total, say),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{NAME}: reports over {result['hits']:,} hits, {DAYS} days (stats.run, best / median"
        f" of {REPEATS}; target {result['target_ms']:.0f} ms for campaign-daily)"
    ]
    for store in ("sqlite", "postgresql"):
        figures = result[store]
        if "skipped" in figures:
            lines.append(f"  {store}: skipped ({figures['skipped']})")
            continue
        lines.append(
            f"  {store}: load {figures['load_s']:.0f} s, rollups rebuild"
            f" {figures['rebuild_s']:.0f} s ({figures['hits'] / figures['rebuild_s']:,.0f} hits/s)"
        )
        for name in QUERIES:
            q = figures[name]
            verdict = ""
            if name == "campaign-daily":
                verdict = "  ok" if q["median_ms"] < result["target_ms"] else "  FAIL"
            lines.append(
                f"    {name:<20} {q['best_ms']:>8.1f} {q['median_ms']:>8.1f} ms"
                f"  from {q['source']}{verdict}"
            )
    return "\n".join(lines)
