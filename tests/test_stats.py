"""Stats (stats.py) through a real app on both stores: one definition of every metric —
the API's, the CLI's and the campaign totals' figures agree on the same hits; the rollups
and the raw hits give the same answer; sums and averages of declared event parameters;
buckets in the reporting zone; filters and groups; CSV; every bad parameter a clear 400."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_campaigns import CHROME, send_campaign

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.stats import parse_request, plan, run

from conftest import SECRET, Harness, running, store_cli_env

pytestmark = pytest.mark.both_stores

DAY = 86_400_000
NOW = int(time.time() * 1000)
SPAN = {"since": str(NOW - 2 * DAY), "until": str(NOW + 3_600_000)}
PEOPLE = ("opens", "unique_opens", "clicks", "unique_clicks", "ctor")
SCHEMAS = {
    "events": {
        "purchase_completed": {
            "required": {"order_id": "string", "total_value": "number"},
            "optional": {"plan": "string"},
        }
    }
}


def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    for name, value in store_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    if settings.event_schemas:
        monkeypatch.setenv("PIXEL_EVENT_SCHEMAS", settings.event_schemas)
    result = CliRunner().invoke(main, ["stats", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def stats(h: Harness, **params: str) -> dict[str, Any]:
    answer = await h.client.get("/api/stats", params=params, headers=h.auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def test_the_api_the_cli_and_the_campaign_totals_agree(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spring campaign of test_campaigns: Chrome's open, Gmail's (fetched twice, one
    open), an MPP open and a scanner's click (machines), a HEAD (nothing)."""
    settings = make_settings()

    async def through_the_api() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with running(settings) as h:
            await send_campaign(h, settings)
            totals = await h.client.get("/api/campaigns/spring", params=SPAN, headers=h.auth)
            body = await stats(h, cid="spring", **SPAN)
            machines = await stats(h, cid="spring", machines="1", group="traffic", **SPAN)
            return totals.json(), body, machines

    totals, body, machines = asyncio.run(through_the_api())
    assert body["source"] == "rollups"
    assert {m: body["totals"][m] for m in PEOPLE} == {m: totals["totals"][m] for m in PEOPLE}
    assert body["totals"]["opens"] == 2
    assert body["totals"]["clicks"] == 3
    assert body["totals"]["hits"] == 5
    assert body["totals"]["uniques"] == 3
    assert sum(point["opens"] for point in body["series"]) == 2
    by_class = {row["traffic"]: row for row in machines["breakdown"]}
    assert by_class["apple_mpp"]["opens"] == 1
    assert by_class["link_scanner"]["clicks"] == 1
    assert "probe" not in by_class  # a HEAD never counts, even among machines
    from_cli = json.loads(cli(settings, monkeypatch, "--filter", "cid=spring",
                              "--since", SPAN["since"], "--until", SPAN["until"],
                              "--format", "json"))  # fmt: skip
    assert from_cli["totals"] == body["totals"]
    assert from_cli["series"] == body["series"]


async def test_rollups_and_raw_hits_give_the_same_report(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with running(settings) as h:
        await send_campaign(h, settings)
        store = h.rt.store
        assert store is not None
        for params in (
            {"cid": "spring"},
            {"group": "utm_source"},
            {"group": "browser", "machines": "1"},
            {"group": "link", "cid": "spring"},
            {"group": "cid", "kind": "click"},
        ):
            query = parse_request({**SPAN, **params}.items(), NOW, store.spec)
            assert plan(query, store.spec) is not None
            fast = (await run(store, query)).as_dict()
            slow = (await run(_RawOnly(store), query)).as_dict()
            assert fast["source"] == "rollups"
            assert slow["source"] == "hits"
            for key in ("totals", "series", "breakdown", "rows"):
                assert fast[key] == slow[key], (params, key)


class _RawOnly:
    """A store whose rollups say they are incomplete: reports read the hits."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def rollups_complete(self) -> bool:
        return False


def test_sums_and_averages_of_a_declared_parameter_per_utm_source(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = tmp_path / "schemas.json"
    schemas.write_text(json.dumps(SCHEMAS))
    settings = make_settings(event_schemas=str(schemas))
    purchases = [("news", 30.0, "pro"), ("news", 12.5, "free"), ("ads", 100.0, "pro")]

    async def send() -> tuple[dict[str, Any], str]:
        async with running(settings) as h:
            for n, (source, value, plan_name) in enumerate(purchases):
                event = {
                    "name": "purchase_completed",
                    "eid": f"order-{n}",
                    "cid": "spring",
                    "utm_source": source,
                    "params": {"order_id": f"o{n}", "total_value": value, "plan": plan_name},
                }
                answer = await h.client.post("/e", json=[event], headers={"user-agent": CHROME})
                assert answer.status_code == 200, answer.text
                assert answer.json()["results"][0]["status"] == "accepted", answer.text
            metrics = "events,sum:total_value,avg:total_value"
            body = await stats(h, group="utm_source", metrics=metrics, **SPAN)
            by_plan = await stats(h, group="param:plan", metrics="sum:total_value", **SPAN)
            answer = await h.client.get(
                "/api/stats.csv",
                params={"group": "utm_source", "table": "breakdown", **SPAN},
                headers=h.auth,
            )
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/csv")
            assert by_plan["source"] == "rollups"
            assert {r["param:plan"]: r["sum:total_value"] for r in by_plan["breakdown"]} == {
                "pro": 130,
                "free": 12.5,
            }
            return body, answer.text

    body, text = asyncio.run(send())
    assert body["totals"] == {"events": 3, "sum:total_value": 142.5, "avg:total_value": 47.5}
    rows = {row["utm_source"]: row for row in body["breakdown"]}
    assert rows["news"]["sum:total_value"] == 42.5
    assert rows["news"]["avg:total_value"] == 21.25
    assert rows["ads"]["events"] == 1
    table = list(csv.DictReader(io.StringIO(text)))
    assert {row["utm_source"]: row["sum:total_value"] for row in table} == {
        "news": "42.5",
        "ads": "100",
    }
    from_cli = json.loads(cli(settings, monkeypatch, "--group", "utm_source",
                              "--metrics", "events,sum:total_value,avg:total_value",
                              "--since", SPAN["since"], "--until", SPAN["until"],
                              "--format", "json"))  # fmt: skip
    assert from_cli["breakdown"] == body["breakdown"]


async def test_buckets_follow_the_reporting_zone(make_settings: Callable[..., Settings]) -> None:
    """Hits at 22:30 and 23:30 UTC on 2026-11-10: one day in UTC, two in Berlin (UTC+1)."""
    settings = make_settings()
    base = 1_794_268_800_000  # 2026-11-10T00:00:00Z
    hits = [Hit(ts=base + 22 * 3_600_000 + m, kind="view", cid="z", traffic="human")
            for m in (1_800_000, 5_400_000)]  # fmt: skip
    async with running(settings) as h:
        assert h.rt.store is not None
        await h.rt.store.write(hits)
        span = {"since": "2026-11-10", "until": "2026-11-12", "interval": "day", "cid": "z"}
        utc = await stats(h, **span)
        berlin = await stats(h, zone="Europe/Berlin", **span)
        kolkata = await stats(h, zone="Asia/Kolkata", **span)
    assert [p["views"] for p in utc["series"]] == [2, 0]
    assert [(p["bucket"], p["views"]) for p in berlin["series"]] == [
        ("2026-11-10T00:00:00+01:00", 1),
        ("2026-11-11T00:00:00+01:00", 1),
    ]
    assert (berlin["since"], berlin["until"]) == (
        "2026-11-10T00:00:00+01:00",
        "2026-11-12T00:00:00+01:00",
    )
    assert kolkata["source"] == "hits"  # +05:30: whole UTC hours cannot make its days
    assert sum(p["views"] for p in kolkata["series"]) == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"zone": "Mars/Olympus"}, "zone"),
        ({"zone": "../../etc/passwd"}, "zone"),
        ({"group": "password"}, "group"),
        ({"metrics": "opens,revenue"}, "revenue"),
        ({"interval": "fortnight"}, "interval"),
        ({"machines": "yes"}, "machines"),
        ({"since": "2000-01-01", "interval": "hour"}, "bucket"),
    ],
)
async def test_a_bad_parameter_is_a_clear_400(
    harness: Harness, params: dict[str, str], message: str
) -> None:
    answer = await harness.client.get("/api/stats", params=params, headers=harness.auth)
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


async def test_stats_need_a_read_key(harness: Harness) -> None:
    assert (await harness.client.get("/api/stats")).status_code == 401
    assert (await harness.client.get("/api/stats.csv")).status_code == 401
