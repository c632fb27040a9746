"""Traffic classes stored with each hit and event (traffic.py), on both stores: decided
from the full client address, which is never stored."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pixel_server.apikeys import new_key
from pixel_server.config import Settings
from pixel_server.traffic import RULES_VERSION

from conftest import running, stored_rows

pytestmark = pytest.mark.both_stores

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
SQL = "SELECT cid, traffic, traffic_reasons, traffic_rules, ip FROM hits ORDER BY id"


async def test_pixels_are_classified_and_the_full_address_is_not_kept(
    make_settings: Callable[..., Settings],
) -> None:
    # the harness's peer is a trusted proxy here, so X-Forwarded-For names the client
    settings = make_settings(trusted_proxies="203.0.113.0/24")
    async with running(settings) as h:
        for cid, method, headers in [
            ("person", "GET", {"user-agent": CHROME, "x-forwarded-for": "198.51.100.23"}),
            ("gmail", "GET", {"user-agent": GMAIL_PROXY, "x-forwarded-for": "198.51.100.24"}),
            ("head", "HEAD", {"user-agent": CHROME, "x-forwarded-for": "198.51.100.25"}),
            ("safelinks", "GET", {"user-agent": CHROME, "x-forwarded-for": "40.107.218.12"}),
            ("prefetch", "GET", {"user-agent": CHROME, "sec-purpose": "prefetch"}),
        ]:
            response = await h.client.request(method, f"/p.gif?cid={cid}", headers=headers)
            assert response.status_code == 200
    rows = stored_rows(settings, SQL)
    assert [row[:4] for row in rows] == [
        ("person", "human", None, RULES_VERSION),
        ("gmail", "mail_proxy", "ua:gmail_image_proxy", RULES_VERSION),
        ("head", "probe", "method:HEAD", RULES_VERSION),
        ("safelinks", "link_scanner", "ip:exchange_online_protection", RULES_VERSION),
        ("prefetch", "prefetch", "header:purpose", RULES_VERSION),
    ]
    assert rows[3][4] == "40.107.218.0"  # anonymised as ever, after the class was decided


async def test_events_browser_and_server_calls(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with running(settings) as h:
        text, key = new_key("t", ["ingest"], now_ms=int(time.time() * 1000))
        assert h.rt.store is not None
        await h.rt.store.add_api_key(key)
        # a browser call: the request's own agent decides (httpx's is an HTTP library)
        browser = [{"name": "a", "cid": "browser", "eid": "b-1"}]
        assert (await h.client.post("/e", json=browser)).status_code == 200
        # a server call: the client's agent and address if told, never the back end's own
        server = [
            {"name": "a", "cid": "told", "eid": "s-1", "ua": CHROME, "ip": "198.51.100.7"},
            {"name": "a", "cid": "untold", "eid": "s-2"},
            {"name": "a", "cid": "scanner", "eid": "s-3", "ip": "40.107.218.12"},
        ]
        auth = {"authorization": f"Bearer {text}"}
        assert (await h.client.post("/e", json=server, headers=auth)).status_code == 200
    rows = stored_rows(settings, SQL)
    assert [row[:3] for row in rows] == [
        ("browser", "probe", "ua:http_library"),
        ("told", "human", None),
        ("untold", "human", "server_call"),
        ("scanner", "link_scanner", "ip:exchange_online_protection"),
    ]


YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
DEVICE_SQL = "SELECT cid, traffic, is_bot, device, browser, os FROM hits ORDER BY id"


async def test_is_bot_follows_the_class_and_a_proxy_open_has_no_device(
    make_settings: Callable[..., Settings],
) -> None:
    # the user-agent parser alone calls Yahoo's proxy a bot, Gmail's a Windows XP desktop and
    # curl or HeadlessChrome people: the traffic class decides is_bot, and a webmail proxy's
    # open is a real open whose device is unknown (the agent describes the proxy)
    settings = make_settings()
    headless = CHROME.replace("Chrome/", "HeadlessChrome/")
    async with running(settings) as h:
        for cid, ua in [
            ("person", CHROME),
            ("gmail", GMAIL_PROXY),
            ("yahoo", YAHOO_PROXY),
            ("curl", "curl/8.5.0"),
            ("headless", headless),
        ]:
            response = await h.client.get(f"/p.gif?cid={cid}", headers={"user-agent": ua})
            assert response.status_code == 200
    assert stored_rows(settings, DEVICE_SQL) == [
        ("person", "human", 0, "desktop", "Chrome", "Windows"),
        ("gmail", "mail_proxy", 0, "unknown", None, None),
        ("yahoo", "mail_proxy", 0, "unknown", None, None),
        ("curl", "probe", 1, "other", "curl", None),
        ("headless", "crawler", 1, "desktop", "HeadlessChrome", "Windows"),
    ]
