"""The audit (audit.py) on both stores: each check's figure on known hits, thresholds
crossed and not, the API's answer and its key, the real console script's exit codes (0 all
pass, 1 a threshold crossed, 2 a bad config), invalid tokens counted by a real server and
flushed to the store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server import refused
from pixel_server.audit import AuditConfig, AuditConfigError, _config, load_config, run
from pixel_server.config import Settings
from pixel_server.eventschema import EventSchema, Registry
from pixel_server.hits import Hit
from pixel_server.store import Store

from conftest import API_TOKEN, Harness, run_cli, running, start_server, store_cli_env

pytestmark = pytest.mark.both_stores

DAY = 86_400_000
NOW = int(time.time() * 1000)
TODAY = NOW - NOW % DAY
REGISTRY = Registry({"purchase_completed": EventSchema({"total_value": "number"}, {})})
EXTRA = {4: {"coupon": "x"}}  # an undeclared param on the fourth event
CONFIG = {
    "expect": {"spring": ["uid", "utm_source"]},
    "thresholds": {"missing_parameters": 0.1, "machine_share": 0.5, "unknown_events": 0},
    "drops": {"days": 1, "history_days": 7, "min_daily": 5},
}


async def known_hits(store: Store) -> None:
    """spring: 10 hits, 2 without utm_source, 1 without uid; 4 Apple MPP opens of 14 hits;
    events: session s1 numbered 1, 2, 4 (3 lost), one retried (a duplicate), an event the
    registry does not know and one with an undeclared param; autumn: 10 hits a day for
    seven days, then none yesterday (stopped)."""
    hits = [
        Hit(ts=NOW - 1000 * i, kind="view", cid="spring", uid=None if i == 0 else f"u{i}",
            utm_source=None if i in (1, 2) else "news", traffic="human")
        for i in range(10)
    ] + [
        Hit(ts=NOW - 500 * i, kind="open", cid="mpp", uid=f"u{i}", traffic="apple_mpp")
        for i in range(4)
    ]  # fmt: skip
    await store.write(hits)
    events = [
        Hit(ts=NOW - 60_000 + n, kind="event", event="purchase_completed", eid=f"e{n}",
            sid="s1", seq=n, params=json.dumps({"total_value": 3, **EXTRA.get(n, {})}),
            traffic="human")
        for n in (1, 2, 4)
    ] + [
        Hit(ts=NOW - 30_000, kind="event", event="video_started", eid="v1", traffic="human"),
        Hit(ts=NOW - 60_000, kind="event", event="purchase_completed", eid="e1", sid="s1", seq=1,
            traffic="human"),
    ]  # fmt: skip
    outcomes = await store.write_events(events)
    assert outcomes == [True, True, True, True, False]
    history = [
        Hit(ts=TODAY - day * DAY + 3_600_000 + i, kind="view", cid="autumn", traffic="human")
        for day in range(2, 9)
        for i in range(10)
    ]
    await store.write(history)


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """run_cli's env for the store of ``env`` (its PIXEL_DB default unset for PostgreSQL)."""
    return {**env, "PIXEL_DB": ""} if "PIXEL_DATABASE_URL" in env else env


def by_name(audit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in audit["checks"]}


async def test_each_check_counts_what_it_says(harness: Harness) -> None:
    store = harness.rt.store
    assert store is not None
    await known_hits(store)
    await store.add_rejects(NOW // DAY, {("pixel", "bad_signature"): 3, ("link", "expired"): 1})
    audit = await run(store, (NOW - 9 * DAY, NOW + 1), None, _config(CONFIG), REGISTRY, "UTC")
    checks = by_name(audit.as_dict())
    assert checks["duplicates"]["duplicates"] == 1
    assert checks["sequence_gaps"]["lost"] == 1
    assert checks["sequence_gaps"]["sent"] == 4
    assert checks["missing_parameters"]["hits"] == 3
    assert checks["missing_parameters"]["expected"] == 10
    assert checks["missing_parameters"]["top"] == {"spring: utm_source": 2, "spring: uid": 1}
    assert checks["missing_parameters"]["ok"] is False  # 30% > 10%
    assert checks["unknown_events"]["top"] == {"video_started": 1}
    assert checks["unknown_events"]["ok"] is False
    assert checks["unknown_parameters"]["top"] == {"purchase_completed.coupon": 1}
    assert checks["unknown_parameters"]["ok"] is True  # no threshold: reported only
    assert checks["invalid_tokens"]["value"] == 4
    assert checks["machine_share"]["machines"] == 4
    assert checks["machine_share"]["ok"] is True
    assert checks["traffic_drops"]["campaigns"] == {"autumn": "stopped (median 10 a day before)"}
    assert audit.ok is False
    quiet = _config({"thresholds": dict.fromkeys(AuditConfig().thresholds)})
    assert (await run(store, (NOW - 9 * DAY, NOW + 1), None, quiet, REGISTRY, "UTC")).ok


async def test_one_campaigns_audit(harness: Harness) -> None:
    store = harness.rt.store
    assert store is not None
    await known_hits(store)
    audit = await run(store, (NOW - DAY, NOW + 1), "spring", _config(CONFIG), None, "UTC")
    checks = by_name(audit.as_dict())
    assert checks["machine_share"]["hits"] == 10
    assert checks["traffic_drops"]["value"] == 0
    assert checks["unknown_events"]["value"] == 0  # no registry: nothing is unknown


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"expect": {"spring": "uid"}},
        {"thresholds": {"bogus": 1}},
        {"thresholds": {"duplicates": 2}},
        {"thresholds": {"duplicates": -1}},
        {"drops": {"days": 0}},
        {"drops": {"fraction": 1.5}},
        {"drops": {"colour": 1}},
    ],
)
def test_a_bad_config_is_one_line(document: Any) -> None:
    with pytest.raises(AuditConfigError):
        _config(document)


def test_a_config_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text("{nope")
    with pytest.raises(AuditConfigError, match=r"audit\.json: not JSON"):
        load_config(str(path))


async def test_the_api_answers_the_audit_behind_a_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(CONFIG))
    async with running(make_settings(audit_config=str(path))) as h:
        assert h.rt.store is not None
        await known_hits(h.rt.store)
        assert (await h.client.get("/api/audit")).status_code == 401
        answer = await h.client.get("/api/audit", params={"since": "9d"}, headers=h.auth)
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is False
        assert by_name(body)["missing_parameters"]["hits"] == 3
        for since in ("yesterday", "2000-01-01", "1900-01-01"):
            bad = await h.client.get("/api/audit", params={"since": since}, headers=h.auth)
            assert bad.status_code == 400, since


def test_the_console_script_exits_0_1_and_2(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    import asyncio

    settings = make_settings()

    async def fill() -> None:
        async with running(settings) as h:
            assert h.rt.store is not None
            await known_hits(h.rt.store)

    asyncio.run(fill())
    env = cli_env(store_cli_env(settings))
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(CONFIG))
    lax = tmp_path / "lax.json"
    lax.write_text(json.dumps({"thresholds": dict.fromkeys(AuditConfig().thresholds)}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"thresholds": {"duplicates": "high"}}')
    failed = run_cli("audit", "--since", "9d", "--config", str(strict), env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "FAIL" in failed.stdout
    assert "audit: FAILED" in failed.stdout
    passed = run_cli("audit", "--since", "9d", "--config", str(lax), "--format", "json",
                     env=env, cwd=tmp_path)  # fmt: skip
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["ok"] is True
    bad = run_cli("audit", "--config", str(broken), env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "broken.json" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_invalid_tokens_seen_by_a_real_server_reach_the_audit(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    server = start_server(tmp_path, env=store_env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/p/k1.forged.gif").status_code == 200  # still the GIF
            assert client.get("/r/k1.forged").status_code == 400
    finally:
        assert server.stop() == 0  # a stop flushes the counts
    env = cli_env(store_env or {"PIXEL_DB": str(server.db)})
    done = run_cli("audit", "--format", "json", env=env, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    check = by_name(json.loads(done.stdout))["invalid_tokens"]
    assert check["value"] == 2, check
    assert sum(check["top"].values()) == 2
    assert refused.FLUSH_S > 0
    assert API_TOKEN
