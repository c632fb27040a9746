"""What a run costs and what it stored: /proc CPU and RSS accounting, the zero-loss count.

CPU is read for a server's whole process tree (threads and reaped children included), per
core busy time from ``/proc/stat``; the zero-loss check compares what a server stored (rows
or access-log lines) with what wrk saw answered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(user, sys) CPU seconds used so far by the tree, all threads and reaped children included.

    ``/proc/<pid>/stat`` of a process already sums all of its threads: the live ones of
    ``/proc/<pid>/task/*/stat`` plus the ones that have exited, so it is read per process.
    Its cutime/cstime add children that have exited and been reaped (a worker that ends
    during a run moves its CPU time to its parent there), so the sum only grows.
    """
    user = system = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def tree_peak_rss_mb(root: int) -> tuple[float, int]:
    """(max VmHWM over the tree in MiB, number of processes)."""
    peak, pids = 0, process_tree(root)
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return round(peak / 1024, 1), len(pids)


def core_ticks() -> dict[str, tuple[int, int, int]]:
    """Per core: (total, idle incl. iowait, steal) jiffies."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d", line):
            name, *values = line.split()
            nums = [int(v) for v in values[:8]]
            ticks[name] = (sum(nums), nums[3] + nums[4], nums[7])
    return ticks


def core_busy(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> tuple[dict[str, float], dict[str, float]]:
    busy, steal = {}, {}
    for name, (total, idle, stolen) in after.items():
        t0, i0, s0 = before.get(name, (0, 0, 0))
        span = max(total - t0, 1)
        busy[name] = round(100 * (1 - (idle - i0) / span), 1)
        steal[name] = round(100 * (stolen - s0) / span, 1)
    return busy, steal


def busy_now(seconds: float = 0.5) -> dict[str, float]:
    before = core_ticks()
    time.sleep(seconds)
    return core_busy(before, core_ticks())[0]


def count_records(records: Path, kind: str) -> int:
    """Hits a server stored: lines of an access log (``kind`` "log lines") or rows of ``hits``."""
    if not records.exists():
        return 0
    if kind == "log lines":
        with records.open("rb") as fh:
            return sum(1 for _ in fh)
    con = sqlite3.connect(records)
    try:
        return int(con.execute("SELECT count(*) FROM hits").fetchone()[0])
    finally:
        con.close()


def zero_loss(stored: int, answered: int, window: int) -> str:
    """OK: stored - answered in 0..window (wrk drops requests in flight at its end, and the
    server may have stored them); LOSS: fewer stored than answered; CHECK: more than could
    have been in flight."""
    excess = stored - answered
    if excess < 0:
        return "LOSS"
    if excess <= window:
        return "OK"
    return "CHECK"
