"""One scenario run end to end (start, check, warm-up, measured run, stop, count) and the
rounds over all selected scenarios, with a progress line per run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen import Wrk, WrkRun, corrected_delay
from measure import tree_peak_rss_mb, zero_loss
from pg import Database, PgMeter
from probe import batch_totals, check_response, request_path, wait_ready
from report import US, fmt
from scenarios import CONNECTIONS, Scenario
from servers import BUSY_WARN_PCT, StartError, build_server, free_port, running, tail, wait_quiet

OTHER_WARN_PCT = 25.0  # busy CPU during a run not charged to the server or wrk


@dataclass
class Run:
    scenario: str
    round: int
    port: int = 0
    ports: list[int] = field(default_factory=list)
    server_cmd: list[str] = field(default_factory=list)
    busy_before_pct: dict[str, float] = field(default_factory=dict)
    waited_for_quiet_s: float = 0.0
    check: dict[str, Any] = field(default_factory=dict)
    probes_recorded: int = 0  # records the checked requests stored (events for /e)
    warmup: WrkRun | None = None
    measured: WrkRun | None = None
    paced_formula_delay_ms: float | None = None
    paced_delay_ms: float | None = None
    paced_target_rps: float | None = None
    peak_rss_mb: float | None = None
    processes: int | None = None
    stop: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    # records the answers vouch for: requests wrk saw answered x events per request, + probes
    answered: int | None = None
    excess: int | None = None
    window: int | None = None
    zero_loss: str = "n/a"
    error: str | None = None
    batch_mean: float | None = None  # hits per writer batch during the measured run

    def _pg_us(self, seconds: float | None) -> float | None:
        m = self.measured
        return (
            None if m is None or seconds is None or m.requests == 0 else seconds / m.requests * 1e6
        )

    @property
    def pg_backend_us_per_req(self) -> float | None:
        """PostgreSQL backends' CPU per request (PostgreSQL scenarios)."""
        return self._pg_us(None if self.measured is None else self.measured.pg_backend_s)

    @property
    def pg_background_us_per_req(self) -> float | None:
        return self._pg_us(None if self.measured is None else self.measured.pg_background_s)

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
        """Busy CPU (all cores) not charged to the server, wrk or (PostgreSQL scenarios) the
        PostgreSQL processes measured: softirq, others' load."""
        m, srv, wrk = self.measured, self.server_cpu_pct, self.wrk_cpu_pct
        if m is None or srv is None or wrk is None:
            return None
        pg = 100 * ((m.pg_backend_s or 0.0) + (m.pg_background_s or 0.0)) / m.wall_s
        return max(sum(m.core_busy_pct.values()) - srv - wrk - pg, 0.0)

    @property
    def pg_cpu_pct(self) -> float | None:
        """PostgreSQL's backends for this run, % of one core."""
        m = self.measured
        if m is None or m.pg_backend_s is None:
            return None
        return 100 * m.pg_backend_s / m.wall_s

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server_cpu_s"] = self.server_cpu_s
        data["cpu_us_per_req"] = self.cpu_us_per_req
        data["server_cpu_pct"] = self.server_cpu_pct
        data["wrk_cpu_pct"] = self.wrk_cpu_pct
        data["other_cpu_pct"] = self.other_cpu_pct
        data["pg_backend_us_per_req"] = self.pg_backend_us_per_req
        data["pg_background_us_per_req"] = self.pg_background_us_per_req
        data["pg_cpu_pct"] = self.pg_cpu_pct
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
        self,
        sc: Scenario,
        ports: list[int],
        path: str,
        duration: int,
        pids: list[int],
        delay_ms: float | None,
        meter: PgMeter | None = None,
    ) -> WrkRun:
        return self.load.run(sc, ports, path, duration, pids, delay_ms, meter)

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
        database = Database.create() if sc.postgres else None
        try:
            self._measure(sc, res, work, pixel_rps, database)
        finally:
            if database is not None:
                database.drop()

    def _measure(
        self,
        sc: Scenario,
        res: Run,
        work: Path,
        pixel_rps: float | None,
        database: Database | None,
    ) -> None:
        ports = free_ports(sc.instances)
        dirs = [work] if sc.instances == 1 else [work / f"instance{n}" for n in (1, 2)]
        for folder in dirs:
            folder.mkdir(exist_ok=True)
        servers = [
            build_server(sc, self.opts.tools, port, folder, database)
            for port, folder in zip(ports, dirs, strict=True)
        ]
        path = request_path(sc, servers[0].env)
        res.port, res.ports, res.server_cmd = ports[0], ports, servers[0].cmd
        res.busy_before_pct, res.waited_for_quiet_s = wait_quiet(self.opts.quiet_wait)
        with contextlib.ExitStack() as stack:
            handles = [
                stack.enter_context(running(server, folder / "server.log"))
                for server, folder in zip(servers, dirs, strict=True)
            ]
            for server, handle, port in zip(servers, handles, ports, strict=True):
                wait_ready(server, handle.proc, port)
            checks = [check_response(sc, port, path) for port in ports]
            res.check, res.probes_recorded = checks[0], len(checks) * sc.events_per_request
            time.sleep(0.5)
            pids = [handle.pid for handle in handles]
            delay = None
            if sc.paced and pixel_rps:
                res.paced_target_rps = 0.5 * pixel_rps
                delay = CONNECTIONS * 1000 / res.paced_target_rps
                res.paced_formula_delay_ms = round(delay, 3)
            res.warmup = self.wrk(sc, ports, path, self.opts.warmup, pids, delay)
            if sc.paced and delay is not None:
                delay = corrected_delay(delay, res.warmup.rps)
            elif sc.paced:  # no `pixel` in this run: half of this (saturated) warm-up's rps
                res.paced_target_rps = 0.5 * res.warmup.rps
                delay = CONNECTIONS * 1000 / res.paced_target_rps
                res.paced_formula_delay_ms = round(delay, 3)
            res.paced_delay_ms = None if delay is None else round(delay, 3)
            time.sleep(1.0)
            meter = None if database is None else PgMeter(database, sc.pg_cpus)
            before = [batch_totals(port) for port in ports] if sc.kind == "pixel_server" else []
            res.measured = self.wrk(sc, ports, path, self.opts.duration, pids, delay, meter)
            after = [batch_totals(port) for port in ports] if before else []
            res.batch_mean = mean_batch(before, after)
            peaks = [tree_peak_rss_mb(pid) for pid in pids]
            res.peak_rss_mb = max(peak for peak, _ in peaks)
            res.processes = sum(count for _, count in peaks)
            ended = [handle.proc.poll() for handle in handles]
            res.stop = merged_stops([handle.stop() for handle in handles])
        problems = [
            f"the server ended during the run (exit {code}): stopped by someone else?"
            for code in ended
            if code is not None
        ]
        connect_errors = sum(r.socket_errors.get("connect", 0) for r in (res.warmup, res.measured))
        if connect_errors:
            problems.append(f"wrk could not connect {connect_errors} times")
        if res.measured.pg_backends_gone:
            problems.append(
                f"PostgreSQL backends {res.measured.pg_backends_gone} ended during the run:"
                " their CPU is not counted"
            )
        if problems:
            res.error = "; ".join(problems)
        runs = [r for r in (res.warmup, res.measured) if r is not None]
        res.answered, window = answered_window(runs, res.probes_recorded, sc.events_per_request)
        res.rows = servers[0].count()
        if res.rows is None:  # an anchor: it stores nothing
            return
        res.excess, res.window = res.rows - res.answered, window
        res.zero_loss = zero_loss(res.rows, res.answered, res.window)


def answered_window(runs: Sequence[WrkRun], probes_recorded: int, per: int) -> tuple[int, int]:
    """What the answers vouch for: the records of the requests wrk saw answered (``per``
    each: events per request, 1 for a hit) plus the probes'; and how many more may be stored
    (zero_loss's window): a request in flight per connection when each wrk run ended, and
    those wrk gave up on, ``per`` records each."""
    answered = sum(r.ok for r in runs) * per + probes_recorded
    window = (CONNECTIONS * len(runs) + sum(r.uncounted_errors for r in runs)) * per
    return answered, window


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def mean_batch(
    before: list[tuple[float, float] | None], after: list[tuple[float, float] | None]
) -> float | None:
    """Hits per committed batch during the measured run, over all instances."""
    hits = batches = 0.0
    for b, a in zip(before, after, strict=True):
        if a is None or b is None:
            return None
        hits, batches = hits + a[0] - b[0], batches + a[1] - b[1]
    return hits / batches if batches else None


def merged_stops(stops: list[dict[str, Any]]) -> dict[str, Any]:
    """One instance's stop record as it is; several: the first non-zero exit code, and each."""
    if len(stops) == 1:
        return stops[0]
    codes = [s["exit_code"] for s in stops]
    return {
        "exit_code": next((c for c in codes if c != 0), codes[0]),
        "stop_s": max(s["stop_s"] for s in stops),
        "forced_kill": any(s["forced_kill"] for s in stops),
        "leftover_killed": any(s["leftover_killed"] for s in stops),
        "instances": stops,
    }


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
    pg = (
        ""
        if run.pg_backend_us_per_req is None
        else f"  pg {fmt(run.pg_cpu_pct)}% {fmt(run.pg_backend_us_per_req, 1)} {US}/req"
    )
    batch = "" if run.batch_mean is None else f"  batch {run.batch_mean:.1f}"
    if sc.events:
        batch += f"  {m.rps * sc.events_per_request:,.0f} events/s"
    if m.non2xx:
        warn += f"  [{m.non2xx:,d} answers 4xx/5xx]"
    return (
        f"{prefix} {m.rps:>9,.0f} req/s  p99 {fmt(m.latency_ms.get('p99'), 2)} ms  "
        f"srv {fmt(run.server_cpu_pct)}%  wrk {fmt(run.wrk_cpu_pct)}%  "
        f"{fmt(run.cpu_us_per_req, 1)} {US}/req{pg}{batch}  {stored}  "
        f"exit {run.stop.get('exit_code')}{warn}"
    )
