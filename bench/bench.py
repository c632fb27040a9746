"""``make bench``: pixel_server side by side with its baselines, in one run, on loopback.

Every scenario gets a fresh server pinned to core 1 (``taskset -c 1``; children and threads
inherit it) and ``wrk -t1 -c64 --latency`` pinned to core 0. Per scenario: ``os.sync()``,
start, wait until ready, check the response bytes, a discarded warm-up, the measured run,
then stop the server (SIGQUIT for nginx, SIGTERM otherwise; the process group is killed if it
has not ended after 20 s) and count what it stored. Baselines run in the same invocation, so
the ratios compare like with like on whatever this machine is doing right now.

Outputs: a table on stdout, ``bench/results/latest.json`` and ``docs/benchmarks.svg`` (only
for a run of every scenario; a partial run writes ``bench/results/latest.svg``).

Method and scenarios: docs/benchmarks.md. Adding a scenario is one entry in ``SCENARIOS``
(bench/scenarios.py). The modules next to this file: scenarios, eventload (the bodies of the
event scenarios), wrapping (the wrap step), servers, loadgen, measure, probe, runner, summary,
targets, report, chart, machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python bench/bench.py`): make the sibling modules importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import bigdb
import pg
import stats10m
import wrapping
from chart import render_svg
from eventload import body_template
from machine import ensure_tools, machine_info
from report import header_text, report, write_json
from runner import Bench, Options, run_all
from scenarios import (
    BY_NAME,
    CONNECTIONS,
    EVENTS_PATH,
    HEADERS,
    PIXEL_PATH,
    ROOT,
    SCENARIOS,
    SERVER_CPUS,
    WRK_CPUS,
)
from summary import add_ratios, summarize
from targets import informative, targets

RESULTS_DIR = ROOT / "bench" / "results"
DOCS_CHART = ROOT / "docs" / "benchmarks.svg"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description="pixel_server vs nginx and a naive app, side by side on loopback.",
    )
    p.add_argument("--duration", type=int, default=10, help="measured seconds (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up seconds, discarded (3)")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios (default all): {', '.join(BY_NAME)}, {bigdb.NAME}"
        f" (reads on a {bigdb.TOTAL_HITS:,}-hit database, no wrk), {wrapping.NAME} (wrapped"
        f" emails per second, bench/wrapping.py, no wrk), {stats10m.NAME} (reports over"
        f" {stats10m.TOTAL_HITS:,} hits on SQLite and PostgreSQL, bench/stats10m.py, no wrk)",
    )
    p.add_argument(
        "--stats-hits",
        type=int,
        default=stats10m.TOTAL_HITS,
        help=f"hits in the {stats10m.NAME} databases (default {stats10m.TOTAL_HITS:,})",
    )
    p.add_argument(
        "--export-hits",
        type=int,
        default=bigdb.TOTAL_HITS,
        help=f"hits in the {bigdb.NAME} database (default {bigdb.TOTAL_HITS:,})",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds over all scenarios; report medians (1)"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each server start, wait up to this many seconds for the cores to be"
        " idle (other load on the machine); 0 = do not wait (30)",
    )
    p.add_argument("--chart", type=Path, help="where to write the SVG chart")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.duration < 1 or args.warmup < 1 or args.repeat < 1:
        p.error("--duration, --warmup and --repeat must be at least 1")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    steps = (bigdb.NAME, wrapping.NAME, stats10m.NAME)
    unknown = [n for n in names if n not in BY_NAME and n not in steps]
    if unknown:
        p.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join((*BY_NAME, *steps))}"
        )
    args.scenarios = [sc for sc in SCENARIOS if not names or sc.name in names]
    args.named = set(names)
    args.reads = not names or bigdb.NAME in names
    args.wrap = not names or wrapping.NAME in names
    args.stats = not names or stats10m.NAME in names
    if args.stats and args.stats_hits < 10_000:
        p.error("--stats-hits must be at least 10,000")
    if args.reads and args.export_hits < bigdb.minimum_hits():
        p.error(f"--export-hits must be at least {bigdb.minimum_hits():,}")
    return args


def check_postgres(args: argparse.Namespace) -> dict[str, object] | None:
    """The PostgreSQL scenarios need the machine's PostgreSQL (bench/pg.py). Without it they
    are left out of a run that did not name them, with a line saying so; named, the bench
    stops. Returns the server's version and settings for the report."""
    wanted = [sc for sc in args.scenarios if sc.postgres]
    if not wanted:
        return None
    reason = pg.unavailable_reason()
    if reason is None:
        return {"version": pg.server_version(), "url": pg.ADMIN_URL, "settings": pg.settings()}
    names = ", ".join(sc.name for sc in wanted)
    where = f"PostgreSQL at {pg.ADMIN_URL} (PIXEL_BENCH_POSTGRES): {reason}"
    if args.named & {sc.name for sc in wanted}:
        sys.exit(f"bench: {names} need {where}")
    print(f"bench: leaving out {names}: no {where}", flush=True)
    args.scenarios = [sc for sc in args.scenarios if not sc.postgres]
    return None


def interrupted(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP end the bench like Ctrl-C: the `finally` blocks stop the servers."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench: needs at least 2 CPUs (wrk on core 0, the server on core 1)")
    tools = ensure_tools()
    postgres = check_postgres(args)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta = machine_info(tools)
    meta["started_utc"] = started
    if postgres:
        meta["postgresql"] = postgres
    meta["command"] = " ".join(["bench/bench.py", *(sys.argv[1:] if argv is None else argv)])
    meta["settings"] = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "connections": CONNECTIONS,
        "wrk_cpus": WRK_CPUS,
        "server_cpus": SERVER_CPUS,
        "scenarios": [sc.name for sc in args.scenarios],
        "request_path": PIXEL_PATH,
        "headers": HEADERS,
        "event_posts": {
            sc.name: {
                "path": EVENTS_PATH,
                "headers": sc.headers,
                "events_per_request": sc.events_per_request,
                "body_template": body_template(sc),
            }
            for sc in args.scenarios
            if sc.events
        },
    }
    print(header_text(meta), flush=True)
    print(flush=True)

    work = Path(tempfile.mkdtemp(prefix="pixel-bench-"))
    opts = Options(
        duration=args.duration,
        warmup=args.warmup,
        tools=tools,
        work=work,
        nonce=str(100_000 + secrets.randbelow(900_000)),
        quiet_wait=args.quiet_wait,
    )
    t0 = time.monotonic()
    reads: dict[str, Any] | None = None
    wrapped: dict[str, Any] | None = None
    reports: dict[str, Any] | None = None
    try:
        results = run_all(Bench(opts), args.scenarios, args.repeat, lambda s: print(s, flush=True))
        if args.reads:
            reads = bigdb.run(work, args.export_hits, lambda s: print(s, flush=True))
        if args.wrap:
            wrapped = wrapping.run(work, lambda s: print(s, flush=True))
        if args.stats:
            reports = stats10m.run(work, args.stats_hits, lambda s: print(s, flush=True))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not args.scenarios:  # only steps without wrk (reads, wrap): no wrk table, no chart
        print(f"\n{header_text(meta)}")
        for name, step, shown in (
            (bigdb.NAME, reads, bigdb.report),
            (wrapping.NAME, wrapped, wrapping.report),
            (stats10m.NAME, reports, stats10m.report),
        ):
            if step is not None:
                print(f"\n{shown(step)}")
                out = RESULTS_DIR / f"{name}.json"
                write_json(out, {"meta": meta, name: step})
                print(f"wrote {out.relative_to(ROOT)}")
        print(f"\ndone in {meta['elapsed_s']:.0f} s")
        return 0

    summary = {sc.name: summarize(sc, results[sc.name]) for sc in args.scenarios}
    add_ratios(summary)
    tgts = targets(summary)
    info = informative(summary)
    text = report(summary, tgts, info)
    print()
    print(header_text(meta))
    print()
    print(text)
    if reads is not None:
        print(f"\n{bigdb.report(reads)}")
    if wrapped is not None:
        print(f"\n{wrapping.report(wrapped)}")
    if reports is not None:
        print(f"\n{stats10m.report(reports)}")

    full = [sc.name for sc in args.scenarios] == [sc.name for sc in SCENARIOS]
    chart = args.chart or (DOCS_CHART if full else RESULTS_DIR / "latest.svg")
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_text(render_svg(summary, meta))
    out = RESULTS_DIR / "latest.json"
    payload = {
        "meta": meta,
        "summary": summary,
        "targets": tgts,
        "informative": info,
        "runs": {name: [r.to_json() for r in runs] for name, runs in results.items()},
        "table": text,
        bigdb.NAME: reads,
        wrapping.NAME: wrapped,
        stats10m.NAME: reports,
    }
    write_json(out, payload)
    print(f"\nwrote {out.relative_to(ROOT)} and {display(chart)} in {meta['elapsed_s']:.0f} s")
    broken = [s["name"] for s in summary.values() if s["zero_loss"] in ("LOSS", "ERROR")]
    if broken:
        print(f"bench: errors or lost hits in {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        sys.exit(f"bench: interrupted ({exc or 'SIGINT'}); every started server was stopped")
