"""A campaign's totals through a real app on both stores: GET /api/campaigns/{cid} and
`pixel-server campaign` count people (a human Chrome, Gmail's proxy once per 60 s) and keep
machines (Apple MPP, HEAD, a scanner's click) apart, and give the same numbers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from pixel_server.apikeys import new_key
from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.links import Minter, Spec
from pixel_server.store.memory import MemoryStore
from pixel_server.store.schema import migrate
from pixel_server.store.sql import campaign_groups, campaign_reasons
from pixel_server.totals import PROXY_REPEAT_MS

from conftest import SECRET, Harness, running, store_cli_env

pytestmark = pytest.mark.both_stores

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
MPP = "Mozilla/5.0"  # what Apple Mail Privacy Protection sends (uap-core#509)
SALE = "https://shop.example/sale"
ABOUT = "https://shop.example/about"
BASE = "http://testserver"


async def send_campaign(h: Harness, settings: Settings) -> None:
    """The spring campaign, as recipients and machines answer it (see the module docstring)."""
    now = int(time.time())
    pixels = Minter(h.rt.pixel_tokens, BASE, None, settings.max_token_bytes)
    links = Minter(h.rt.link_tokens, BASE, h.rt.target_policy, settings.max_token_bytes)

    def spec(uid: str, sent: int = now - 3600) -> Spec:
        return Spec({"cid": "spring", "uid": uid}).sent_as(sent, f"m-{uid}")

    async def get(url: str, ua: str, method: str = "GET") -> int:
        answer = await h.client.request(method, url.removeprefix(BASE), headers={"user-agent": ua})
        return answer.status_code

    assert await get(pixels.mint(spec("1")), CHROME) == 200  # a person in Chrome
    assert await get(links.mint(spec("1"), SALE), CHROME) == 302
    assert await get(links.mint(spec("1"), ABOUT), CHROME) == 302
    assert await get(pixels.mint(spec("2")), GMAIL_PROXY) == 200  # a Gmail reader ...
    assert await get(pixels.mint(spec("2")), GMAIL_PROXY) == 200  # ... and the proxy again
    assert await get(pixels.mint(spec("3")), MPP) == 200  # MPP at delivery: no open
    assert await get(links.mint(spec("3"), SALE), CHROME) == 302  # but she clicked
    assert await get(pixels.mint(spec("4")), CHROME, "HEAD") == 200  # a HEAD: nothing
    # a gateway following the link within a second of the send
    assert await get(links.mint(spec("5", now), ABOUT), CHROME) == 302


UNTIL = str(int(time.time() * 1000) + 3_600_000)  # one span for the API and the CLI


def api_report(settings: Settings, **params: str) -> dict[str, Any]:
    """Send the campaign through a real app and read its totals from the API."""

    async def run() -> dict[str, Any]:
        async with running(settings) as h:
            await send_campaign(h, settings)
            answer = await h.client.get(
                "/api/campaigns/spring", params={"until": UNTIL, **params}, headers=h.auth
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["cache-control"] == "no-store"
            body: dict[str, Any] = answer.json()
            return body

    return asyncio.run(run())


def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    for name, value in store_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    result = CliRunner().invoke(main, ["campaign", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_people_are_counted_and_machines_kept_apart(
    make_settings: Callable[..., Settings],
) -> None:
    """Chrome's open and Gmail's (fetched twice, counted once) are the opens; the MPP-hidden
    reader who clicked is an inferred open; HEAD and the scanner's click are not counted."""
    body = api_report(make_settings())
    assert body["cid"] == "spring"
    assert body["totals"] == {
        "opens": 2,
        "unique_opens": 2,
        "inferred_opens": 1,
        "clicks": 3,
        "unique_clicks": 2,
        "ctor": round(2 / 3, 4),
        "views": 0,
        "unique_views": 0,
        "anonymous_opens": 0,
        "anonymous_clicks": 0,
    }
    assert body["proxy_repeats"] == 1
    assert body["head_requests"] == 1
    classes = body["machines"]["classes"]
    assert set(classes) == {"apple_mpp", "link_scanner", "probe"}
    assert classes["apple_mpp"]["opens"] == 1
    assert classes["apple_mpp"]["reasons"] == {"ua:bare_mozilla": 1}
    assert classes["link_scanner"]["clicks"] == 1
    assert classes["link_scanner"]["reasons"] == {"since_send": 1}
    assert classes["probe"] == {
        "opens": 0,
        "clicks": 0,
        "views": 0,
        "head": 1,
        "reasons": {"method:HEAD": 1},
    }
    assert body["links"] == [
        {"url": SALE, "clicks": 2, "unique_clicks": 2, "machine_clicks": 0},
        {"url": ABOUT, "clicks": 1, "unique_clicks": 1, "machine_clicks": 1},
    ]


def test_the_machines_switch_counts_them_in_the_totals(
    make_settings: Callable[..., Settings],
) -> None:
    """machines=1: MPP's open and the scanner's click are in the totals; HEAD still is not."""
    body = api_report(make_settings(), machines="1")
    assert body["machines_included"] is True
    assert (body["totals"]["opens"], body["totals"]["clicks"]) == (3, 4)
    assert body["people"]["opens"] == 2
    # a tie on unique clickers and clicks: by url
    assert body["links"][0] == {"url": ABOUT, "clicks": 2, "unique_clicks": 2, "machine_clicks": 1}


async def test_proxy_repeats_are_told_apart_by_60_seconds_in_the_store(
    make_settings: Callable[..., Settings],
) -> None:
    """The store's SQL folds a mail_proxy fetch within 60 s of the one before, not later
    ones, nor a HEAD, nor hits outside since/until or of another campaign."""
    t = 1_790_000_000_000

    def proxy(ts: int, cid: str = "c", head: bool = False) -> Hit:
        traffic, method = ("probe", "HEAD") if head else ("mail_proxy", "GET")
        return Hit(ts=ts, kind="open", cid=cid, uid="7", traffic=traffic, method=method)

    hits = [
        proxy(t),
        proxy(t + PROXY_REPEAT_MS - 1),
        proxy(t + 2 * PROXY_REPEAT_MS),
        proxy(t + 2 * PROXY_REPEAT_MS + 5, head=True),
        proxy(t + 10 * PROXY_REPEAT_MS),  # after until
        proxy(t, cid="other"),
    ]
    async with running(make_settings()) as h:
        assert h.rt.store is not None
        await h.rt.store.write(hits)
        answer = await h.client.get(
            "/api/campaigns/c",
            params={"since": str(t), "until": str(t + 5 * PROXY_REPEAT_MS)},
            headers=h.auth,
        )
    body = answer.json()
    assert (body["totals"]["opens"], body["proxy_repeats"], body["head_requests"]) == (2, 1, 1)


async def test_an_unknown_campaign_is_zeros_and_bad_input_is_400(
    make_settings: Callable[..., Settings],
) -> None:
    """A campaign without hits answers 200 with zeros; an odd parameter 400 in the one error
    shape; a cid with a slash or a NUL is a campaign like any other."""
    async with running(make_settings()) as h:
        for path in ("/api/campaigns/nobody", "/api/campaigns/a/b", "/api/campaigns/x%00y%0Az"):
            answer = await h.client.get(path, headers=h.auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["totals"]["opens"] == 0
            assert answer.json()["links"] == []
        assert (await h.client.get("/api/campaigns/a/b", headers=h.auth)).json()["cid"] == "a/b"
        for params in ({"machines": "2"}, {"since": "soon"}, {"cid": "x"}):
            answer = await h.client.get("/api/campaigns/c", params=params, headers=h.auth)
            assert answer.status_code == 400
            assert answer.json()["error"]["code"] == "bad_filter"
        assert (await h.client.get("/api/campaigns/", headers=h.auth)).status_code == 400
        long = "x" * (h.rt.limits.max_value_chars + 1)
        assert (await h.client.get(f"/api/campaigns/{long}", headers=h.auth)).status_code == 400


async def test_the_campaign_needs_a_read_token_or_key(
    make_settings: Callable[..., Settings],
) -> None:
    """No token: 401; an ingest-only key: 403; a read key: 200."""
    async with running(make_settings()) as h:
        assert h.rt.store is not None
        assert (await h.client.get("/api/campaigns/c")).status_code == 401
        now = int(time.time() * 1000)
        ingest, ingest_key = new_key("in", ["ingest"], now_ms=now)
        read, read_key = new_key("rd", ["read"], now_ms=now)
        await h.rt.store.add_api_key(ingest_key)
        await h.rt.store.add_api_key(read_key)
        for text, status in ((ingest, 403), (read, 200)):
            auth = {"authorization": f"Bearer {text}"}
            assert (await h.client.get("/api/campaigns/c", headers=auth)).status_code == status


def test_the_cli_gives_the_api_numbers(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pixel-server campaign spring --json` prints the API's body for the same span, with
    and without machines; the table shows the same figures and the links."""
    settings = make_settings()
    body = api_report(settings)
    assert json.loads(cli(settings, monkeypatch, "spring", "--until", UNTIL, "--json")) == body
    with_machines = json.loads(
        cli(settings, monkeypatch, "spring", "--until", UNTIL, "--machines", "--json")
    )
    assert with_machines["totals"]["opens"] == 3
    table = cli(settings, monkeypatch, "spring", "--until", UNTIL)
    lines = table.splitlines()
    assert lines[0].startswith("campaign spring: every hit to ")
    people = next(line for line in lines if line.startswith("people"))
    assert people.split() == ["people", "2", "2", "1", "3", "2", "66.7%", "0"]
    assert any(line.startswith("  apple_mpp") and "ua:bare_mozilla 1" in line for line in lines)
    assert "not counted: 1 proxy repeats, 1 HEAD requests" in table
    assert any(line.startswith(SALE) and line.split()[1:] == ["2", "2", "0"] for line in lines)


def test_the_cli_refuses_bad_input_without_a_traceback(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad time is a usage error (exit 2); an escape sequence in a cid is shown escaped."""
    settings = make_settings()
    api_report(settings)  # creates the store
    for name, value in store_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    bad = CliRunner().invoke(main, ["campaign", "spring", "--since", "soon"])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output
    odd = CliRunner().invoke(main, ["campaign", "\x1b[31mred"])
    assert odd.exit_code == 0, odd.output
    assert "\x1b" not in odd.output
    assert "\\x1b[31mred" in odd.output


async def test_every_store_groups_a_campaign_alike(make_settings: Callable[..., Settings]) -> None:
    """The SQL store's groups and reason counts equal the memory store's (totals.py's own
    grouping) on the same hits: one definition, whichever store answers."""
    t = 1_790_000_000_000
    hits = [
        Hit(ts=t + i * 20_000, kind=kind, cid="c", uid=uid, url=url, traffic=traffic,
            traffic_reasons=reasons, method=method)
        for i, (kind, uid, url, traffic, reasons, method) in enumerate(
            [
                ("open", "1", None, "human", None, "GET"),
                ("open", "2", None, "mail_proxy", "ua:gmail_image_proxy", "GET"),
                ("open", "2", None, "mail_proxy", "ua:gmail_image_proxy", "GET"),
                ("open", "2", None, "mail_proxy", "ua:gmail_image_proxy", "GET"),
                ("open", "2", None, "mail_proxy", "ua:gmail_image_proxy", "GET"),
                ("open", None, None, None, None, "GET"),
                ("view", "3", "https://a.example/page", "human", None, "GET"),
                ("click", "3", SALE, "link_scanner", "since_send:1s", "GET"),
                ("click", "3", SALE, "probe", "method:HEAD", "HEAD"),
                ("click", "4", ABOUT, "human", None, "GET"),
                ("event", "4", None, "human", None, "GET"),  # not a campaign figure
            ]
        )
    ]  # fmt: skip
    memory = MemoryStore()
    await memory.write(hits)
    expected = await memory.campaign_groups("c", (0, t + 10**6))
    async with running(make_settings()) as h:
        assert h.rt.store is not None
        await h.rt.store.write(hits)
        got = await h.rt.store.campaign_groups("c", (0, t + 10**6))
    assert sorted(got.groups, key=repr) == sorted(expected.groups, key=repr)
    assert sorted(got.reasons, key=repr) == sorted(expected.reasons, key=repr)
    assert sum(group.repeat for group in got.groups) == 1  # the 4th fetch is 60 s on


@pytest.mark.sqlite_only("SQLite's query plan")
def test_the_campaign_reads_walk_the_campaign_index() -> None:
    """Both campaign statements search hits by the (cid, ts) index, never scan the table."""
    conn = sqlite3.connect(":memory:")
    migrate(conn)
    for sql, args in (campaign_groups("c", (0, 10)), campaign_reasons("c", (0, 10))):
        plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "SEARCH hits USING INDEX hits_cid_ts" in plan
        assert "SCAN hits" not in plan
