"""What a run prints and saves: the header (machine, versions, load), the tables, the ratio
lines, the targets table and ``bench/results/latest.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenarios import BY_NAME, CONNECTIONS, SCENARIOS, SERVER_CPUS, WRK_CPUS
from summary import ratio

X = "\u00d7"  # multiplication sign, for ratios
US = "\u00b5s"  # microseconds
DIV = "\u00f7"  # division sign


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def report(
    summary: dict[str, dict[str, Any]], tgts: list[dict[str, Any]], info: list[dict[str, Any]]
) -> str:
    order = [s for s in (summary.get(sc.name) for sc in SCENARIOS) if s is not None]
    parts = [
        "Throughput and latency (median of the measured runs)",
        "",
        perf_table(order),
        "",
        "Server CPU, memory and the zero-loss check (stored vs answered)",
        "",
        cpu_table(order),
    ]
    events = events_table(order)
    if events:
        parts += ["", "Events: POST /e, per request and per event", "", events]
    pg = pg_table(order)
    if pg:
        parts += [
            "",
            "PostgreSQL: the database's CPU beside pixel_server's (per request)",
            "",
            pg,
        ]
    split = split_table(order, summary)
    if split:
        parts += [
            "",
            "CPU per request: the HTTP server's own floor vs pixel_server's code",
            "",
            split,
        ]
    extra = ratio_lines(summary)
    if extra:
        parts += ["", "Ratios", "", *extra]
    parts += [
        "",
        "Targets",
        "",
        table(
            ["target", "http server", "value", "result"],
            [[t["target"], t["server"], target_value(t), t["result"]] for t in tgts],
            set(),
        ),
    ]
    if info:
        rows = [[i["ratio"], fmt(i["rps"], 3), fmt(i["cpu"], 3)] for i in info]
        parts += [
            "",
            "Informative (no target)",
            "",
            table(["ratio", "req/s", f"CPU (reference {US} {DIV} this)"], rows, {1, 2}),
        ]
    notes = [f"- {s['name']}: {s['note']}" for s in order if s["note"]]
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


def perf_table(order: list[dict[str, Any]]) -> str:
    rows = [
        [
            s["name"],
            s["kind"],
            s["frontend"],
            s["mode"],
            fmt(s["rps"]),
            fmt(s["x_nginx"], 3),
            fmt(s["x_naive"], 1),
            fmt(s["x_raw"], 3),
            fmt(s["p50_ms"], 2),
            fmt(s["p99_ms"], 2),
            str(s["non2xx"]),
            str(s["socket_errors"]),
        ]
        for s in order
    ]
    headers = [
        "scenario",
        "kind",
        "http server",
        "connections",
        "req/s",
        f"{X} nginx (same mode)",
        f"{X} naive (same mode)",
        f"{X} raw-asgi (same server)",
        "p50 ms",
        "p99 ms",
        "non-2xx/3xx",
        "socket errors",
    ]
    return table(headers, rows, set(range(4, 12)))


def cpu_table(order: list[dict[str, Any]]) -> str:
    rows = []
    for s in order:
        stores = s["records"] is not None
        unit = "lines" if s["records"] == "log lines" else "rows"
        rows.append(
            [
                s["name"],
                fmt(s["cpu_us_per_req"], 1),
                fmt(s["nginx_cpu_ratio"], 3),
                f"{fmt(s['server_cpu_pct'])} ({fmt(s['server_user_pct'])}/"
                f"{fmt(s['server_sys_pct'])})",
                fmt(s["wrk_cpu_pct"]),
                fmt(s["other_cpu_pct"]),
                fmt(s["peak_rss_mb"], 1),
                f"{fmt(s['rows'])} {unit}" if stores else "(stores nothing)",
                fmt(s["answered"]),
                f"{s['excess']:+,d}" if stores else "-",
                f"0..{s['window']:,d}" if stores else "-",
                s["zero_loss"],
            ]
        )
    headers = [
        "scenario",
        f"CPU {US}/req",
        f"nginx {US} {DIV} this",
        "server CPU % (usr/sys)",
        "wrk CPU %",
        "other CPU %",
        "peak RSS MiB",
        "stored",
        "answered",
        "excess",
        "allowed",
        "zero-loss",
    ]
    return table(headers, rows, set(range(1, 11)))


def events_table(order: list[dict[str, Any]]) -> str:
    """The event scenarios: requests and events per second, CPU per request and per event."""
    rows = [
        [
            s["name"],
            BY_NAME[s["name"]].content_type,
            str(s["events_per_request"]),
            fmt(s["rps"]),
            fmt(s["eps"]),
            fmt(s["p50_ms"], 2),
            fmt(s["p99_ms"], 2),
            fmt(s["cpu_us_per_req"], 1),
            fmt(s["cpu_us_per_event"], 1),
            str(s["non2xx"]),
            s["zero_loss"],
        ]
        for s in order
        if s["events"]
    ]
    if not rows:
        return ""
    headers = [
        "scenario",
        "Content-Type",
        "events/request",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        f"CPU {US}/req",
        f"CPU {US}/event",
        "non-2xx/3xx",
        "zero-loss",
    ]
    return table(headers, rows, set(range(2, 10)))


PG_REFERENCES = ("pixel", "pixel-2workers")  # the same loads on SQLite


def pg_table(order: list[dict[str, Any]]) -> str:
    """The PostgreSQL rows beside the SQLite rows of the same load: pixel_server's CPU, the
    backends' and the cluster's background processes' CPU, and the writer's batch size."""
    if not any(s["store"] == "postgresql" for s in order):
        return ""
    rows = []
    for s in order:
        if s["store"] != "postgresql" and s["name"] not in PG_REFERENCES:
            continue
        own, pg = s["cpu_us_per_req"], s["pg_backend_us_per_req"]
        rows.append(
            [
                s["name"],
                s["store"],
                str(s["instances"]),
                fmt(s["rps"]),
                fmt(s["p99_ms"], 2),
                fmt(own, 1),
                fmt(pg, 1),
                fmt(s["pg_cpu_pct"]),
                fmt(s["pg_background_us_per_req"], 1),
                fmt(None if own is None or pg is None else own + pg, 1),
                fmt(s["batch_mean"], 1),
                s["zero_loss"],
            ]
        )
    headers = [
        "scenario",
        "store",
        "instances",
        "req/s",
        "p99 ms",
        f"pixel_server {US}/req",
        f"PostgreSQL backends {US}/req",
        "backends CPU %",
        f"PG background {US}/req",
        f"server + backends {US}/req",
        "hits/batch",
        "zero-loss",
    ]
    return table(headers, rows, set(range(2, 11)))


def split_table(order: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> str:
    """Per pixel_server row with an anchor: the anchor's CPU per request (server + kernel, the
    least any app pays on that server) and the rest, which is pixel_server's own code."""
    rows = []
    for s in order:
        ref = s.get("raw_ref")
        if ref is None or s["cpu_us_per_req"] is None:
            continue
        floor = summary[ref]["cpu_us_per_req"]
        if floor is None:
            continue
        own = s["cpu_us_per_req"] - floor
        rows.append(
            [
                s["name"],
                fmt(s["cpu_us_per_req"], 1),
                ref,
                fmt(floor, 1),
                fmt(own, 1),
                fmt(100 * own / s["cpu_us_per_req"]),
            ]
        )
    if not rows:
        return ""
    headers = [
        "scenario",
        f"CPU {US}/req",
        "anchor (same server)",
        f"anchor {US}/req",
        f"pixel_server's own {US}/req",
        "own %",
    ]
    return table(headers, rows, {1, 3, 4, 5})


def target_value(t: dict[str, Any]) -> str:
    value = t["value"]
    if isinstance(value, str) or value is None:
        return value or t.get("missing") or "not measured"
    if t["unit"] == "ms":
        return f"{value:.2f} ms"
    if t["unit"] != X:
        return f"{value:,.0f} {t['unit']}"
    return f"{value:.3f}{X}"


RATIO_LINES = (
    ("redirect", "pixel"),
    ("signed-pixel", "pixel"),
    ("unique-ua", "pixel"),
    ("pixel-2workers", "pixel"),
    ("pixel-close", "pixel"),
    ("pixel-granian", "pixel"),
    ("pixel-close-granian", "pixel-close"),
    ("redirect-granian", "redirect"),
    ("redirect-granian", "pixel-granian"),
    ("pixel-sync-normal", "pixel"),
    ("pixel-pg", "pixel"),
    ("pixel-pg-2", "pixel-pg"),
    ("pixel-pg-2", "pixel-2workers"),
    ("naive-shared", "naive"),
    ("pixel", "naive-shared"),
)


def ratio_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    def rps(name: str) -> float | None:
        s = summary.get(name)
        return None if s is None else s["rps"]

    lines = []
    for name, ref in RATIO_LINES:
        r = ratio(rps(name), rps(ref))
        if r is not None:
            lines.append(f"- {name} {DIV} {ref} (req/s): {r:.3f}")
    half = summary.get("pixel-p99-at-half")
    if half is not None and half["rps"] is not None:
        target = half["paced_target_rps"]
        lines.append(
            f"- pixel-p99-at-half: offered {fmt(target)} req/s (half of pixel), got "
            f"{fmt(half['rps'])} req/s; p50 {fmt(half['p50_ms'], 2)} ms, "
            f"p99 {fmt(half['p99_ms'], 2)} ms"
        )
    return lines


def header_text(meta: dict[str, Any]) -> str:
    m, v, g, a = meta["machine"], meta["versions"], meta["git"], meta["settings"]
    modified = " (pixel_server/ has uncommitted changes)" if g["pixel_server_modified"] else ""
    return "\n".join(
        [
            f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
            f"Linux {m['kernel']}, {m['os']}",
            f"versions: {v['nginx']}; {v['wrk']}; Python {v['python']}; "
            f"uvicorn {v['uvicorn']}; starlette {v['starlette']}; SQLite {v['sqlite']}; "
            f"aiosqlite {v['aiosqlite']}; uvloop {v['uvloop']}; httptools {v['httptools']}; "
            f"granian {v['granian']}; asyncpg {v['asyncpg']}; "
            f"pixel-server {v['pixel-server']}",
            *postgres_line(meta),
            f"code: commit {g['commit']}{modified}",
            f"load: wrk -t1 -c{CONNECTIONS} --latency on core {WRK_CPUS}, server on core "
            f"{SERVER_CPUS}; warm-up {a['warmup_s']} s (discarded), measured {a['duration_s']} s,"
            f" {a['repeat']} run(s) per scenario (median); started {meta['started_utc']}",
            f"command: {meta['command']}",
        ]
    )


def postgres_line(meta: dict[str, Any]) -> list[str]:
    pg = meta.get("postgresql")
    if not pg:
        return []
    conf = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
    return [f"postgresql: {pg['version']} at {pg['url']} ({conf}); a fresh database per run"]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
