"""The load: wrk's command line (headers, pinning, the Lua scripts), its run and its output.

``paced.lua`` holds each connection for a delay before each request (``pixel-p99-at-half``);
``unique_ua.lua`` sends a never-seen User-Agent on every request (``unique-ua``);
``ports.lua`` gives each wrk thread its own instance's port (``pixel-pg-2``: ``-t2``, 32
connections to each instance, one latency histogram over both); ``events.lua`` POSTs the body
of eventload.py with never-sent eids (the event scenarios).

wrk counts an answer with a status above 399 as "Non-2xx or 3xx"; ``WrkRun.ok`` is the rest.
``POST /e`` answers 200 only once the batch is committed, and anything else it answers is a
4xx or a 503, so every event post not stored is out of ``ok``; a 200 whose events were not
all ``accepted`` (rejected, duplicate) shows up in the zero-loss check instead, as fewer rows
than answered requests x events per request.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventload import body_template
from measure import core_busy, core_ticks, tree_cpu_seconds
from scenarios import BENCH_DIR, CONNECTIONS, Scenario

# scripts that make every request unique: each invocation gets its own nonce
NONCE_SCRIPTS = ("unique_ua.lua", "events.lua")


class Meter(Protocol):
    """Extra CPU accounting around a wrk run (PostgreSQL's backends, bench/pg.py)."""

    def start(self) -> None: ...

    def stop(self) -> dict[str, Any]: ...


@dataclass
class WrkRun:
    cmd: list[str]
    duration_s: int
    requests: int
    non2xx: int
    rps: float
    socket_errors: dict[str, int]
    latency_ms: dict[str, float | None]
    wall_s: float = 0.0
    server_user_s: float = 0.0
    server_sys_s: float = 0.0
    wrk_cpu_s: float = 0.0
    core_busy_pct: dict[str, float] = field(default_factory=dict)
    core_steal_pct: dict[str, float] = field(default_factory=dict)
    pg_backend_s: float | None = None  # PostgreSQL scenarios: CPU of pixel_server's backends
    pg_background_s: float | None = None  # ... and of the cluster's background processes
    pg_backends: list[int] = field(default_factory=list)
    pg_backends_gone: list[int] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Responses wrk counted as 2xx/3xx (status below 400)."""
        return self.requests - self.non2xx

    @property
    def uncounted_errors(self) -> int:
        """Requests wrk gave up on after sending: the server may still have answered them."""
        return sum(self.socket_errors.get(k, 0) for k in ("read", "write", "timeout"))


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(out: str, cmd: list[str], duration: int) -> WrkRun:
    done = re.search(r"(\d+) requests in ", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done is None or rps is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    names = ("connect", "read", "write", "timeout")
    latency: dict[str, float | None] = {}
    for pct in ("50", "75", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)\s*$", out, re.MULTILINE)
        latency[f"p{pct}"] = to_ms(found.group(1)) if found else None
    stats = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    latency["avg"] = to_ms(stats.group(1)) if stats else None
    latency["max"] = to_ms(stats.group(3)) if stats else None
    return WrkRun(
        cmd=cmd,
        duration_s=duration,
        requests=int(done.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        rps=float(rps.group(1)),
        socket_errors=dict(zip(names, map(int, errors.groups()), strict=True)) if errors else {},
        latency_ms=latency,
    )


class Wrk:
    """Runs wrk against one server; counts invocations so each run of a NONCE_SCRIPTS script
    (unique-ua, the event scenarios) gets a new nonce."""

    def __init__(self, tools: dict[str, str], nonce: str) -> None:
        self.tools = tools
        self.nonce = nonce
        self.invocation = 0

    def command(
        self, sc: Scenario, ports: Sequence[int], path: str, duration: int, delay_ms: float | None
    ) -> list[str]:
        """wrk's command line; with several ports, one thread per port (ports.lua)."""
        tools = self.tools
        cmd = [tools["taskset"], "-c", sc.wrk_cpus] if sc.wrk_cpus else []
        threads = len(ports)
        cmd += [tools["wrk"], f"-t{threads}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"]
        for name, value in sc.headers.items():
            cmd += ["-H", f"{name}: {value}"]
        if sc.close:
            cmd += ["-H", "Connection: close"]
        script_args: list[str] = []
        if sc.script in NONCE_SCRIPTS:
            self.invocation += 1
            script_args = [f"{self.nonce}{self.invocation:04d}"]
        elif sc.script == "paced.lua" and delay_ms is not None:
            script_args = [f"{delay_ms:.3f}"]
        if sc.script and script_args:
            cmd += ["-s", str(BENCH_DIR / sc.script)]
        elif threads > 1:
            cmd += ["-s", str(BENCH_DIR / "ports.lua")]
        cmd.append(f"http://127.0.0.1:{ports[0]}{path}")
        if script_args:
            cmd += ["--", *script_args]
        return cmd

    def run(
        self,
        sc: Scenario,
        ports: Sequence[int],
        path: str,
        duration: int,
        pids: Sequence[int],
        delay_ms: float | None,
        meter: Meter | None = None,
    ) -> WrkRun:
        """One wrk run, with the CPU of the server trees ``pids``, of wrk, of every core and
        (``meter``) of PostgreSQL."""
        cmd = self.command(sc, ports, path, duration, delay_ms)
        env = dict(os.environ, BENCH_PORTS=",".join(map(str, ports)))
        if sc.events:
            env["BENCH_EVENT_BODY"] = body_template(sc)
        if meter is not None:
            meter.start()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cores0, (u0, s0), t0 = core_ticks(), trees_cpu_seconds(pids), time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=duration + 60, env=env
        )
        t1, (u1, s1), cores1 = time.monotonic(), trees_cpu_seconds(pids), core_ticks()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg = meter.stop() if meter is not None else {}
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        run = parse_wrk(proc.stdout, cmd, duration)
        for name, value in pg.items():
            setattr(run, name, value)
        run.wall_s = t1 - t0
        run.server_user_s, run.server_sys_s = u1 - u0, s1 - s0
        run.wrk_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        run.core_busy_pct, run.core_steal_pct = core_busy(cores0, cores1)
        return run


def trees_cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """(user, sys) CPU seconds of several server trees (the instances of a scenario)."""
    user = system = 0.0
    for pid in pids:
        u, s = tree_cpu_seconds(pid)
        user, system = user + u, system + s
    return user, system


def corrected_delay(delay_ms: float, achieved_rps: float) -> float:
    """The per-connection delay that makes up for the response time, from a paced warm-up.

    A connection sends every ``delay + response time`` ms, so the formula delay alone offers
    less than the target. The warm-up at the formula delay shows that time; take it off
    (but never below 0.7x the formula delay, in case the warm-up hit a stall).
    """
    if achieved_rps <= 0:
        return delay_ms
    cycle_ms = CONNECTIONS * 1000 / achieved_rps
    overhead_ms = max(cycle_ms - delay_ms, 0.0)
    return max(delay_ms - overhead_ms, 0.7 * delay_ms)
