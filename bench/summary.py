"""Per-scenario figures over its runs (medians, sums, the zero-loss verdict) and the ratios
to the baselines measured in the same invocation."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scenarios import BY_NAME, SERVER_CPUS, Scenario

if TYPE_CHECKING:  # runner imports report, which imports this module
    from runner import Run


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(sc: Scenario, runs: list[Run]) -> dict[str, Any]:
    good = [r for r in runs if r.measured is not None and r.error is None]
    statuses = [r.zero_loss for r in runs]
    if any(r.error for r in runs) or not good:
        zero = "ERROR"
    elif "LOSS" in statuses:
        zero = "LOSS"
    elif "CHECK" in statuses:
        zero = "CHECK"
    else:
        zero = "OK" if all(s == "OK" for s in statuses) else "n/a"
    measured = [r.measured for r in good if r.measured is not None]
    return {
        "name": sc.name,
        "title": sc.title,
        "baseline": sc.baseline,
        "kind": sc.kind,
        "frontend": sc.frontend,
        "mode": sc.mode,
        "note": sc.note,
        "runs": len(good),
        "rps": median([m.rps for m in measured]),
        "events": sc.events,
        "events_per_request": sc.events_per_request,
        "eps": median([m.rps * sc.events_per_request for m in measured]) if sc.events else None,
        "p50_ms": median([m.latency_ms.get("p50") for m in measured]),
        "p99_ms": median([m.latency_ms.get("p99") for m in measured]),
        "non2xx": sum(m.non2xx for m in measured),
        "socket_errors": sum(sum(m.socket_errors.values()) for m in measured),
        "cpu_us_per_req": median([r.cpu_us_per_req for r in good]),
        "cpu_us_per_event": (
            median([per_event(r.cpu_us_per_req, sc) for r in good]) if sc.events else None
        ),
        "server_cpu_pct": median([r.server_cpu_pct for r in good]),
        "server_user_pct": median([100 * m.server_user_s / m.wall_s for m in measured]),
        "server_sys_pct": median([100 * m.server_sys_s / m.wall_s for m in measured]),
        "wrk_cpu_pct": median([r.wrk_cpu_pct for r in good]),
        "other_cpu_pct": median([r.other_cpu_pct for r in good]),
        "peak_rss_mb": max((r.peak_rss_mb or 0 for r in good), default=None),
        "processes": max((r.processes or 0 for r in good), default=None),
        "rows": sum(r.rows or 0 for r in good) if sc.stores else None,
        "answered": sum(r.answered or 0 for r in good),
        "excess": sum(r.excess or 0 for r in good) if sc.stores else None,
        "window": sum(r.window or 0 for r in good) if sc.stores else None,
        "wrk_invocations": 2 * len(good),
        "zero_loss": zero,
        "records": None if not sc.stores else "log lines" if sc.server == "nginx" else "rows",
        "paced_target_rps": median([r.paced_target_rps for r in good]),
        "store": sc.store if sc.kind == "pixel_server" else None,
        "instances": sc.instances,
        "batch_mean": median([r.batch_mean for r in good]),
        "pg_backend_us_per_req": median([r.pg_backend_us_per_req for r in good]),
        "pg_background_us_per_req": median([r.pg_background_us_per_req for r in good]),
        "pg_cpu_pct": median([r.pg_cpu_pct for r in good]),
        "exit_codes": sorted({r.stop.get("exit_code") for r in good}, key=str),
        "errors": [r.error for r in runs if r.error],
    }


def per_event(value: float | None, sc: Scenario) -> float | None:
    return None if value is None else value / sc.events_per_request


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def raw_ref(sc: Scenario) -> str | None:
    """The anchor on the same HTTP server, for pixel_server at saturation with keep-alive
    (not for event posts: the anchor answers a GET without a body)."""
    skip = sc.kind != "pixel_server" or sc.close or sc.paced or sc.events
    if skip or sc.server_cpus != SERVER_CPUS:
        return None
    return "raw-asgi-granian" if sc.http_server == "granian" else "raw-asgi"


def add_ratios(summary: dict[str, dict[str, Any]]) -> None:
    """x_nginx, x_naive, x_raw (req/s) and nginx_cpu_ratio, raw_cpu_share (CPU per request).
    None for the event scenarios: the baselines serve a GIF, not a POST of events."""
    for name, s in summary.items():
        sc = BY_NAME[name]
        nginx, naive = summary.get(sc.nginx_ref), summary.get(sc.naive_ref)
        if sc.events:
            nginx = naive = None
        ref = raw_ref(sc)
        raw = None if ref is None else summary.get(ref)
        paced = sc.paced
        s["x_nginx"] = None if paced or nginx is None else ratio(s["rps"], nginx["rps"])
        s["x_naive"] = (
            None
            if paced or naive is None or sc.server in ("nginx", "raw")
            else ratio(s["rps"], naive["rps"])
        )
        s["raw_ref"] = ref if raw is not None else None
        s["x_raw"] = None if raw is None else ratio(s["rps"], raw["rps"])
        s["raw_cpu_share"] = (
            None if raw is None else ratio(raw["cpu_us_per_req"], s["cpu_us_per_req"])
        )
        s["nginx_cpu_ratio"] = (
            None if nginx is None else ratio(nginx["cpu_us_per_req"], s["cpu_us_per_req"])
        )
