"""The bench's event scenarios (bench/eventload.py, runner, targets), without servers or wrk:
the bodies pass pixel_server's own checks with unique eids, the zero-loss count scales with
events per request, and the event targets judge like the others."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pixel_server.events import Event, Rules, check_event, read_batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import eventload  # bench/ is not a package: found on sys.path
from loadgen import Wrk, WrkRun
from runner import answered_window
from scenarios import BY_NAME, CONNECTIONS, EVENTS_PATH, NAIVE_TARGET
from targets import targets

EVENT_SCENARIOS = [name for name, sc in BY_NAME.items() if sc.events]


def test_the_event_scenarios_exist() -> None:
    assert EVENT_SCENARIOS == ["events-20", "events-beacon"]
    assert BY_NAME["events-20"].events_per_request == 20
    assert BY_NAME["events-beacon"].events_per_request == 1
    assert BY_NAME["events-beacon"].headers["Content-Type"].startswith("text/plain")
    assert BY_NAME["events-20"].headers["Content-Type"] == "application/json"
    assert not set(EVENT_SCENARIOS) & set(NAIVE_TARGET)  # the naive app has no /e


@pytest.mark.parametrize("name", EVENT_SCENARIOS)
def test_bodies_pass_the_servers_checks(name: str) -> None:
    sc = BY_NAME[name]
    body = eventload.fill(eventload.body_template(sc), "123456789012000000000042")
    media = sc.content_type.split(";")[0]
    batch = read_batch(body, media, Rules())
    assert batch.plain  # no escape: the bench measures the path real tracker bodies take
    checked = [check_event(item, Rules(), plain=batch.plain) for item in batch.items]
    assert len(checked) == sc.events_per_request
    assert all(isinstance(e, Event) and not e.flags for e in checked), checked
    eids = [item["eid"] for item in json.loads(body)]
    assert len(set(eids)) == len(eids)
    for item in json.loads(body):
        assert 3 <= len(item["params"]) <= 5
        kinds = {type(v) for v in item["params"].values()}
        assert {str, bool} <= kinds
        assert kinds & {int, float}


def test_two_requests_share_no_eid() -> None:
    template = eventload.body_template(BY_NAME["events-20"])
    first, second = (
        {e["eid"] for e in json.loads(eventload.fill(template, unique))}
        for unique in ("1234560001010000000001", "1234560001010000000002")
    )
    assert not first & second


def test_each_wrk_invocation_gets_a_new_nonce() -> None:
    wrk = Wrk({"taskset": "taskset", "wrk": "wrk"}, "123456")
    sc = BY_NAME["events-20"]
    runs = [wrk.command(sc, [20001], EVENTS_PATH, 3, None) for _ in range(2)]
    assert [cmd[-1] for cmd in runs] == ["1234560001", "1234560002"]
    assert all("Content-Type: application/json" in cmd for cmd in runs)
    assert all(cmd[cmd.index("-s") + 1].endswith("events.lua") for cmd in runs)


def wrk_run(requests: int, non2xx: int = 0, timeouts: int = 0) -> WrkRun:
    return WrkRun(
        cmd=[],
        duration_s=1,
        requests=requests,
        non2xx=non2xx,
        rps=float(requests),
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": timeouts},
        latency_ms={},
    )


def test_answered_and_window_count_events() -> None:
    runs = [wrk_run(100, non2xx=3), wrk_run(1000, timeouts=2)]
    assert answered_window(runs, 20, 20) == ((97 + 1000) * 20 + 20, (2 * CONNECTIONS + 2) * 20)
    assert answered_window(runs, 1, 1) == (97 + 1000 + 1, 2 * CONNECTIONS + 2)


def summary_row(name: str, rps: float) -> dict[str, Any]:
    sc = BY_NAME[name]
    eps = rps * sc.events_per_request if sc.events else None
    return {"name": name, "rps": rps, "eps": eps, "cpu_us_per_req": 1.0, "zero_loss": "OK"}


def verdicts(rows: dict[str, float]) -> dict[str, tuple[str, str | None]]:
    summary = {name: summary_row(name, rps) for name, rps in rows.items()}
    return {t["target"]: (t["result"], t.get("missing")) for t in targets(summary)}


EPS_TARGET = "events-20 >= 40,000 events/s (server on core 1)"
BEACON_TARGET = "events-beacon >= 0.7\u00d7 pixel"


def test_event_targets_pass_and_fail() -> None:
    passing = verdicts({"events-20": 2_000, "events-beacon": 7_000, "pixel": 10_000})
    assert passing[EPS_TARGET] == ("PASS", None)  # 2,000 requests x 20 events
    assert passing[BEACON_TARGET] == ("PASS", None)
    failing = verdicts({"events-20": 1_999, "events-beacon": 6_999, "pixel": 10_000})
    assert failing[EPS_TARGET] == ("FAIL", None)
    assert failing[BEACON_TARGET] == ("FAIL", None)


def test_the_beacon_ratio_needs_pixel_in_the_run() -> None:
    alone = verdicts({"events-20": 2_500, "events-beacon": 7_000})
    assert alone[BEACON_TARGET] == ("n/a", "needs pixel in the run")
    assert alone[EPS_TARGET] == ("PASS", None)
    assert verdicts({"pixel": 10_000})[BEACON_TARGET] == ("n/a", None)
