"""The performance targets of issue 3, each a PASS/FAIL over one invocation's summary.

Every target is evaluated for pixel_server on uvicorn (the default) and, where the scenario
has a granian twin (``pixel`` -> ``pixel-granian``), again on granian: against the same nginx
or naive baseline, or against the granian twin of a pixel_server reference
(``redirect-granian >= 0.8x pixel-granian``). Informative ratios (no target) follow.

The event targets (issue 8): ``events-20`` stores at least ``EVENT_RATE_TARGETS`` events/s
with the server on one core, and a one-event beacon gets at least 0.7x the pixel's req/s.
A ratio whose reference was not in the run is "n/a", with the reference it needs.
"""

from __future__ import annotations

from typing import Any

from report import DIV, X
from scenarios import BY_NAME, NAIVE_TARGET, granian_twin
from summary import ratio

# (scenario, reference, at least this many times the reference's req/s, as written, suffix)
RATIO_TARGETS: list[tuple[str, str, float, str, str]] = [
    ("pixel", "nginx-log", 0.20, "0.20", ""),
    ("pixel", "nginx-log", 0.30, "0.30", " (stretch)"),
    ("pixel-close", "nginx-log-close", 0.40, "0.40", ""),
    ("unique-ua", "pixel", 0.5, "0.5", ""),
    ("redirect", "pixel", 0.8, "0.8", ""),
    ("events-beacon", "pixel", 0.7, "0.7", ""),
    *(
        (name, BY_NAME[name].naive_ref, 5.0, "5", "")
        for name in NAIVE_TARGET
        if BY_NAME[name].http_server == "uvicorn"  # the granian twins follow each
    ),
]
P99_HALF_MS = 5.0
# (event scenario, at least this many events stored per second): issue 8; the server is on one
# core (SERVER_CPUS), as in `pixel`
EVENT_RATE_TARGETS: list[tuple[str, float]] = [("events-20", 40_000.0)]
EPS = "events/s"
# (scenario on PostgreSQL, the same load on SQLite, at most this many times its pixel_server
# CPU per request, as written): issue 7 section 5
CPU_TARGETS: list[tuple[str, str, float, str]] = [
    ("pixel-pg", "pixel", 1.2, "1.2"),
    ("pixel-pg-2", "pixel-2workers", 1.2, "1.2"),
]


def variants(name: str, ref: str) -> list[tuple[str, str, str]]:
    """(http server, scenario, reference): uvicorn, then granian if ``name`` has a twin."""
    out = [("uvicorn", name, ref)]
    twin = granian_twin(name)
    if twin is not None:
        ref_twin = granian_twin(ref) if BY_NAME[ref].kind == "pixel_server" else ref
        out.append(("granian", twin, ref_twin or ref))
    return out


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def rps(name: str) -> float | None:
        s = summary.get(name)
        return None if s is None else s["rps"]

    out: list[dict[str, Any]] = []

    def add(
        label: str,
        server: str,
        value: float | None,
        limit: float,
        unit: str,
        above: bool = True,
        missing: str | None = None,
    ) -> None:
        if value is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if (value >= limit if above else value <= limit) else "FAIL"
        target: dict[str, Any] = {
            "target": label,
            "server": server,
            "value": value,
            "limit": limit,
            "unit": unit,
            "result": verdict,
        }
        if value is None and missing:
            target["missing"] = missing
        out.append(target)

    for name, ref, limit, written, suffix in RATIO_TARGETS:
        for server, subject, against in variants(name, ref):
            label = f"{subject} >= {written}{X} {against}{suffix}"
            add(
                label,
                server,
                ratio(rps(subject), rps(against)),
                limit,
                X,
                missing=needs(summary, subject, against),
            )
    for name, limit in EVENT_RATE_TARGETS:
        s = summary.get(name)
        label = f"{name} >= {limit:,.0f} {EPS} (server on core {BY_NAME[name].server_cpus})"
        add(label, "uvicorn", None if s is None else s["eps"], limit, EPS)
    for name, ref, limit, written in CPU_TARGETS:
        a, b = summary.get(name), summary.get(ref)
        add(
            f"{name} pixel_server CPU/req <= {written}{X} {ref}'s (PostgreSQL vs SQLite)",
            "uvicorn",
            None if a is None or b is None else ratio(a["cpu_us_per_req"], b["cpu_us_per_req"]),
            limit,
            X,
            above=False,
        )
    half = summary.get("pixel-p99-at-half")
    add(
        f"p99 at half load <= {P99_HALF_MS:g} ms",
        "uvicorn",
        None if half is None else half["p99_ms"],
        P99_HALF_MS,
        "ms",
        above=False,
    )
    checked = [s for s in summary.values() if s["zero_loss"] != "n/a"]
    bad = [s["name"] for s in checked if s["zero_loss"] != "OK"]
    out.append(
        {
            "target": "stored = answered (within the in-flight window) everywhere",
            "server": "all",
            "value": f"{len(checked) - len(bad)}/{len(checked)} OK"
            + (f"; not OK: {', '.join(bad)}" if bad else ""),
            "limit": None,
            "unit": "",
            "result": "n/a" if not checked else ("PASS" if not bad else "FAIL"),
        }
    )
    return out


def needs(summary: dict[str, dict[str, Any]], subject: str, reference: str) -> str | None:
    """Why a ratio target measured on one side only cannot be judged."""
    if subject in summary and reference not in summary:
        return f"needs {reference} in the run"
    return None


# (label, scenario, reference): informative ratios printed under the targets
INFORMATIVE: list[tuple[str, str, str]] = [
    (f"pixel {DIV} raw-asgi: share of uvicorn's own ceiling reached", "pixel", "raw-asgi"),
    (
        f"pixel-granian {DIV} raw-asgi-granian: share of granian's own ceiling reached",
        "pixel-granian",
        "raw-asgi-granian",
    ),
    (f"raw-asgi {DIV} nginx-log: uvicorn's ceiling", "raw-asgi", "nginx-log"),
    (f"raw-asgi-granian {DIV} nginx-log: granian's ceiling", "raw-asgi-granian", "nginx-log"),
    (f"pixel-sync-normal {DIV} pixel: what fsync per commit costs", "pixel-sync-normal", "pixel"),
]


def informative(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """req/s and CPU-per-request ratios of INFORMATIVE that were measured in this run."""
    out = []
    for label, name, ref in INFORMATIVE:
        a, b = summary.get(name), summary.get(ref)
        if a is None or b is None:
            continue
        out.append(
            {
                "ratio": label,
                "rps": ratio(a["rps"], b["rps"]),
                "cpu": ratio(b["cpu_us_per_req"], a["cpu_us_per_req"]),
            }
        )
    return out
