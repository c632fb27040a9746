"""The loss report through POST /e, on SQLite and on PostgreSQL: GET /api/loss, `pixel-server
loss` and the /metrics gauges agree on what was sent, lost, repeated and retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from conftest import Harness, store_cli_env, store_locked, until

pytestmark = pytest.mark.both_stores


def numbered(sid: str, seqs: list[int], cid: str = "spring") -> list[dict[str, Any]]:
    return [
        {"name": "step", "eid": f"{sid}-{seq}-{i}", "sid": sid, "seq": seq, "cid": cid}
        for i, seq in enumerate(seqs)
    ]


async def send(h: Harness, events: list[dict[str, Any]]) -> None:
    response = await h.client.post("/e", json=events)
    assert response.status_code == 200, response.text


async def traffic(h: Harness) -> None:
    """Three sessions today: a whole one, one with 2 and 4 lost, one retried (duplicates)."""
    await send(h, numbered("whole", [1, 2, 3]))
    await send(h, numbered("gaps", [1, 3, 5]))
    retried = numbered("retry", [1, 2], cid="autumn")
    await send(h, retried)
    await send(h, retried)  # the same eids again: duplicates, stored once


async def test_the_api_reports_loss_per_day_and_campaign(harness: Harness) -> None:
    """GET /api/loss: rows per day and campaign and a total, behind a read token."""
    await traffic(harness)
    assert (await harness.client.get("/api/loss")).status_code == 401
    response = await harness.client.get("/api/loss", headers=harness.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    by_cid = {row["cid"]: row for row in body["days"]}
    assert set(by_cid) == {"autumn", "spring"}
    assert {k: by_cid["spring"][k] for k in ("sessions", "sent", "received", "lost")} == {
        "sessions": 2,
        "sent": 8,
        "received": 6,
        "lost": 2,
    }
    assert by_cid["spring"]["loss_rate"] == 0.25
    assert (by_cid["autumn"]["duplicates"], by_cid["autumn"]["lost"]) == (2, 0)
    assert body["total"]["sent"] == 10
    assert body["total"]["duplicates"] == 2
    one = await harness.client.get("/api/loss", params={"cid": "autumn"}, headers=harness.auth)
    assert [row["cid"] for row in one.json()["days"]] == ["autumn"]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "soon"},
        {"until": "99999999999w"},
        {"limit": "5"},
        [("cid", "a"), ("cid", "b")],
    ],
)
async def test_a_bad_loss_request_is_a_400(harness: Harness, query: Any) -> None:
    response = await harness.client.get("/api/loss", params=query, headers=harness.auth)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


async def test_metrics_carry_the_recent_loss(harness: Harness) -> None:
    """/metrics shows the report of the sessions begun since yesterday, read in the
    background."""
    await traffic(harness)
    lines: list[str] = []

    async def read() -> bool:  # the first scrape starts the read; a later one shows it
        lines[:] = (await harness.client.get("/metrics")).text.splitlines()
        return 'pixel_loss_report_events{count="sent"} 10.0' in lines

    await until(read, "the loss gauges read")
    assert 'pixel_loss_report_events{count="lost"} 2.0' in lines
    assert 'pixel_loss_report_events{count="duplicates"} 2.0' in lines


def cli(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    return subprocess.run(
        [sys.executable, "-m", "pixel_server", "loss", *args],
        env={**env, **store_cli_env(h.rt.settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_cli_shows_the_same_report(harness: Harness) -> None:
    """`pixel-server loss`: a table and a total line; --json is the API's JSON; a bad
    --since is one line, exit 2."""
    await traffic(harness)
    table = cli(harness, "--since", "1d")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "day",
        "cid",
        "sessions",
        "sent",
        "received",
        "lost",
        "loss",
        "repeated",
        "duplicates",
    ]
    spring = next(line.split() for line in lines if " spring " in line)
    assert spring[2:7] == ["2", "8", "6", "2", "25.00%"]
    assert lines[-1] == "total: 10 sent, 2 lost (20.00%), 0 repeated, 2 duplicates suppressed"
    as_json = cli(harness, "--json", "--cid", "spring")
    assert json.loads(as_json.stdout)["total"]["lost"] == 2
    bad = cli(harness, "--since", "soon")
    assert bad.returncode == 2
    [line] = bad.stderr.splitlines()
    assert line.startswith("Error: since: 'soon' is not a time")


async def test_a_scrape_does_not_wait_for_a_locked_store(harness: Harness) -> None:
    """While another program holds the store's locks (on PostgreSQL that blocks reads too),
    /metrics still answers at once, with the values read last."""
    with store_locked(harness.rt.settings):
        started = time.monotonic()
        response = await harness.client.get("/metrics")
        # a scrape takes milliseconds; waiting for the read would take READ_TIMEOUT (60 s),
        # so 30 s tells the two apart on any machine, however busy
        assert time.monotonic() - started < 30
        assert response.status_code == 200
        assert "pixel_events_total" in response.text


async def test_a_span_that_ends_before_it_begins_is_empty(harness: Harness) -> None:
    """since after until reports nothing, as /api/hits answers such a span."""
    await traffic(harness)
    params = {"since": "1d", "until": "2d"}
    response = await harness.client.get("/api/loss", params=params, headers=harness.auth)
    assert response.status_code == 200
    assert response.json()["days"] == []
