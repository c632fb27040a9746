"""One scenario run end to end (start, check, warm-up, measured run, stop, count) and the
rounds over all selected scenarios, with a progress line per run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen import Wrk, WrkRun, corrected_delay
from measure import tree_peak_rss_mb, zero_loss
from probe import check_response, request_path, wait_ready
from report import US, fmt
from scenarios import CONNECTIONS, Scenario
from servers import BUSY_WARN_PCT, StartError, build_server, free_port, running, tail, wait_quiet

OTHER_WARN_PCT = 25.0  # busy CPU during a run not charged to the server or wrk


@dataclass
class Run:
    scenario: str
    round: int
    port: int = 0
    server_cmd: list[str] = field(default_factory=list)
    busy_before_pct: dict[str, float] = field(default_factory=dict)
    waited_for_quiet_s: float = 0.0
    check: dict[str, Any] = field(default_factory=dict)
    probes_recorded: int = 0
    warmup: WrkRun | None = None
    measured: WrkRun | None = None
    paced_formula_delay_ms: float | None = None
    paced_delay_ms: float | None = None
    paced_target_rps: float | None = None
    peak_rss_mb: float | None = None
    processes: int | None = None
    stop: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    answered: int | None = None
    excess: int | None = None
    window: int | None = None
    zero_loss: str = "n/a"
    error: str | None = None

    @property
    def server_cpu_s(self) -> float | None:
        m = self.measured
        return None if m is None else m.server_user_s + m.server_sys_s

    @property
    def cpu_us_per_req(self) -> float | None:
        m, cpu = self.measured, self.server_cpu_s
        return None if m is None or cpu is None or m.requests == 0 else cpu / m.requests * 1e6

    @property
    def server_cpu_pct(self) -> float | None:
        m, cpu = self.measured, self.server_cpu_s
        return None if m is None or cpu is None else 100 * cpu / m.wall_s

    @property
    def wrk_cpu_pct(self) -> float | None:
        m = self.measured
        return None if m is None else 100 * m.wrk_cpu_s / m.wall_s

    @property
    def other_cpu_pct(self) -> float | None:
        """Busy CPU (all cores) not charged to the server or wrk: softirq, others' load."""
        m, srv, wrk = self.measured, self.server_cpu_pct, self.wrk_cpu_pct
        if m is None or srv is None or wrk is None:
            return None
        return max(sum(m.core_busy_pct.values()) - srv - wrk, 0.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server_cpu_s"] = self.server_cpu_s
        data["cpu_us_per_req"] = self.cpu_us_per_req
        data["server_cpu_pct"] = self.server_cpu_pct
        data["wrk_cpu_pct"] = self.wrk_cpu_pct
        data["other_cpu_pct"] = self.other_cpu_pct
        return data


@dataclass
class Options:
    duration: int
    warmup: int
    tools: dict[str, str]
    work: Path
    nonce: str
    quiet_wait: float


class Bench:
    """Runs scenarios one at a time, each on a fresh server in its own work directory."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.load = Wrk(opts.tools, opts.nonce)

    def wrk(
        self, sc: Scenario, port: int, path: str, duration: int, pid: int, delay_ms: float | None
    ) -> WrkRun:
        return self.load.run(sc, port, path, duration, pid, delay_ms)

    def run(self, sc: Scenario, round_no: int, pixel_rps: float | None) -> Run:
        result = Run(scenario=sc.name, round=round_no)
        for attempt in range(3):
            work = self.opts.work / f"{sc.name}-r{round_no}-a{attempt}"
            work.mkdir(parents=True)
            try:
                self._run_once(sc, result, work, pixel_rps)
            except StartError as exc:
                print(f"  {sc.name}: {exc}; retrying on another port", flush=True)
                print(tail(work / "server.log"), flush=True)
                result = Run(scenario=sc.name, round=round_no)
                continue
            return result
        raise RuntimeError(f"{sc.name}: server would not start (3 attempts)")

    def _run_once(self, sc: Scenario, res: Run, work: Path, pixel_rps: float | None) -> None:
        port = free_port()
        server = build_server(sc, self.opts.tools, port, work)
        path = request_path(sc, server.env)
        res.port, res.server_cmd = port, server.cmd
        res.busy_before_pct, res.waited_for_quiet_s = wait_quiet(self.opts.quiet_wait)
        with running(server, work / "server.log") as srv:
            wait_ready(server, srv.proc, port)
            res.check = check_response(sc, port, path)
            res.probes_recorded = 1
            time.sleep(0.5)
            delay = None
            if sc.paced and pixel_rps:
                res.paced_target_rps = 0.5 * pixel_rps
                delay = CONNECTIONS * 1000 / res.paced_target_rps
                res.paced_formula_delay_ms = round(delay, 3)
            res.warmup = self.wrk(sc, port, path, self.opts.warmup, srv.pid, delay)
            if sc.paced and delay is not None:
                delay = corrected_delay(delay, res.warmup.rps)
            elif sc.paced:  # no `pixel` in this run: half of this (saturated) warm-up's rps
                res.paced_target_rps = 0.5 * res.warmup.rps
                delay = CONNECTIONS * 1000 / res.paced_target_rps
                res.paced_formula_delay_ms = round(delay, 3)
            res.paced_delay_ms = None if delay is None else round(delay, 3)
            time.sleep(1.0)
            res.measured = self.wrk(sc, port, path, self.opts.duration, srv.pid, delay)
            res.peak_rss_mb, res.processes = tree_peak_rss_mb(srv.pid)
            ended = srv.proc.poll()
            res.stop = srv.stop()
        problems = []
        if ended is not None:
            problems.append(
                f"the server ended during the run (exit {ended}): stopped by someone else?"
            )
        connect_errors = sum(r.socket_errors.get("connect", 0) for r in (res.warmup, res.measured))
        if connect_errors:
            problems.append(f"wrk could not connect {connect_errors} times")
        if problems:
            res.error = "; ".join(problems)
        runs = [r for r in (res.warmup, res.measured) if r is not None]
        res.answered = sum(r.ok for r in runs) + res.probes_recorded
        res.rows = server.count()
        if res.rows is None:  # an anchor: it stores nothing
            return
        res.excess = res.rows - res.answered
        res.window = CONNECTIONS * len(runs) + sum(r.uncounted_errors for r in runs)
        res.zero_loss = zero_loss(res.rows, res.answered, res.window)


def run_all(
    bench: Bench, scenarios: list[Scenario], repeat: int, say: Callable[[str], None]
) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {sc.name: [] for sc in scenarios}
    for round_no in range(1, repeat + 1):
        pixel_rps: float | None = None
        for sc in scenarios:
            if sc.paced and pixel_rps is None:
                say(f"  {sc.name}: no `pixel` run yet, half of its own warm-up rps is the load")
            try:
                run = bench.run(sc, round_no, pixel_rps)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # report, go on with the other scenarios
                run = Run(scenario=sc.name, round=round_no, error=f"{type(exc).__name__}: {exc}")
            results[sc.name].append(run)
            if sc.name == "pixel" and run.measured is not None:
                pixel_rps = run.measured.rps
            say(progress_line(sc, run, round_no, repeat))
    return results


def progress_line(sc: Scenario, run: Run, round_no: int, repeat: int) -> str:
    prefix = f"  [{round_no}/{repeat}] {sc.name:<18}"
    if run.error or run.measured is None:
        return f"{prefix} ERROR {run.error}"
    m = run.measured
    busy = max(run.busy_before_pct.values(), default=0.0)
    warn = ""
    if busy > BUSY_WARN_PCT:
        warn += f"  [a core was {busy:.0f}% busy before start]"
    elif run.waited_for_quiet_s >= 1:
        warn += f"  [waited {run.waited_for_quiet_s:.0f} s for idle cores]"
    other = run.other_cpu_pct
    stored = (
        "stores nothing"
        if run.excess is None
        else f"stored-answered {run.excess:+d} {run.zero_loss}"
    )
    if other is not None and other > OTHER_WARN_PCT:
        warn += f"  [other CPU {other:.0f}% during the run]"
    return (
        f"{prefix} {m.rps:>9,.0f} req/s  p99 {fmt(m.latency_ms.get('p99'), 2)} ms  "
        f"srv {fmt(run.server_cpu_pct)}%  wrk {fmt(run.wrk_cpu_pct)}%  "
        f"{fmt(run.cpu_us_per_req, 1)} {US}/req  {stored}  exit {run.stop.get('exit_code')}{warn}"
    )
