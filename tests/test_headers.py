"""Request headers a hit keeps: User-Agent and Referer as UTF-8, X-Forwarded-For over lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pixel_server.config import Settings

from conftest import Harness, running

pytestmark = pytest.mark.both_stores

UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8 \u00e9dition \u65e5\u672c) Chrome/124.0 \U0001f600"
REFERER = "https://b\u00fccher.example/\u00e4rger?q=\u65e5\u672c"


async def test_a_utf8_user_agent_and_referer_are_stored_as_utf8(harness: Harness) -> None:
    """Raw UTF-8 header bytes are stored as the text they encode, not latin-1 mojibake."""
    headers = [(b"user-agent", UA.encode()), (b"referer", REFERER.encode())]
    response = await harness.client.get("/p.gif?cid=utf8", headers=headers)
    assert response.status_code == 200
    [hit] = await harness.hits(cid="utf8")
    assert (hit["ua"], hit["referer"]) == (UA, REFERER)
    assert hit["flags"] == []


async def test_a_header_that_is_not_utf8_is_read_as_latin1_and_flagged(harness: Harness) -> None:
    """Bytes that are not UTF-8 keep one character per byte and flag header_not_utf8."""
    headers = [(b"user-agent", b"Caf\xe9Browser/1.0"), (b"referer", b"https://x.example/\xff")]
    await harness.client.get("/p.gif?cid=latin1", headers=headers)
    [hit] = await harness.hits(cid="latin1")
    assert (hit["ua"], hit["referer"]) == ("Caf\u00e9Browser/1.0", "https://x.example/\u00ff")
    assert hit["flags"] == ["header_not_utf8"]


async def test_c1_controls_in_a_utf8_header_are_still_replaced(harness: Harness) -> None:
    """UTF-8 decoding lets no C1 control through: U+0085 becomes U+FFFD and is flagged."""
    await harness.client.get("/p.gif?cid=c1", headers=[(b"user-agent", "a\u0085b".encode())])
    [hit] = await harness.hits(cid="c1")
    assert hit["ua"] == "a\ufffdb"
    assert hit["flags"] == ["control_chars"]


async def test_the_line_a_trusted_proxy_appends_wins_over_the_clients_own(
    make_settings: Callable[..., Settings],
) -> None:
    """Two X-Forwarded-For lines are one list: the proxy's line (the last) names the client."""
    settings = make_settings(trusted_proxies="203.0.113.77", ip_mode="full")
    async with running(settings) as h:
        headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.5")]
        await h.client.get("/p.gif?cid=xff", headers=headers)
        [hit] = await h.hits(cid="xff")
    assert hit["ip"] == "198.51.100.5"


async def test_a_zone_id_in_forwarded_for_never_reaches_the_stored_ip(
    make_settings: Callable[..., Settings],
) -> None:
    """In full mode a hop like fe80::1%<html> is refused: the proxy's address is stored."""
    settings = make_settings(trusted_proxies="203.0.113.77", ip_mode="full")
    async with running(settings) as h:
        hop = "fe80::1%<img src=x onerror=alert(1)>\u0085".encode()
        await h.client.get("/p.gif?cid=zone", headers=[(b"x-forwarded-for", hop)])
        [hit] = await h.hits(cid="zone")
    assert hit["ip"] == "203.0.113.77"
