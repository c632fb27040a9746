"""The pixel endpoints: the contract's headers, HEAD, bad input, signed opens."""

from __future__ import annotations

import pytest

from pixel_server.responses import GIF

from conftest import CHROME_UA, Harness

pytestmark = pytest.mark.both_stores

CONTRACT_HEADERS = {
    "content-type": "image/gif",
    "content-length": "43",
    "cache-control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "pragma": "no-cache",
    "expires": "0",
    "x-content-type-options": "nosniff",
    "x-robots-tag": "noindex",
}


def test_gif_is_the_43_byte_transparent_gif89a() -> None:
    """The body is nginx's empty_gif: 43 bytes of GIF89a."""
    assert len(GIF) == 43
    assert GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    assert GIF.endswith(b";")


async def test_pixel_answers_the_gif_with_every_contract_header(harness: Harness) -> None:
    """GET /p.gif returns 200, the GIF and each header of the public contract."""
    response = await harness.client.get("/p.gif?cid=spring&utm_source=newsletter")
    assert response.status_code == 200
    assert response.content == GIF
    for name, value in CONTRACT_HEADERS.items():
        assert response.headers[name] == value


async def test_head_gets_the_same_headers_and_no_body(harness: Harness) -> None:
    """HEAD /p.gif has the GET headers (Content-Length 43) and an empty body, and is recorded."""
    response = await harness.client.head("/p.gif?cid=head")
    assert response.status_code == 200
    assert response.content == b""
    for name, value in CONTRACT_HEADERS.items():
        assert response.headers[name] == value
    [hit] = await harness.hits(cid="head")
    assert hit["method"] == "HEAD"


async def test_pixel_hit_records_ids_utm_extras_and_parsed_agent(harness: Harness) -> None:
    """A view stores the well-known ids, UTM columns, other params as JSON and the parsed UA."""
    query = (
        "cid=spring&uid=r-1&sid=s-9&e=signup&url=https%3A%2F%2Fshop.example%2F&ref=x"
        "&utm_source=nl&utm_medium=email&utm_campaign=c&utm_term=t&utm_content=k&utm_id=7"
        "&color=blue"
    )
    headers = {"user-agent": CHROME_UA, "referer": "https://shop.example/a"}
    await harness.client.get(f"/p.gif?{query}", headers=headers)
    [hit] = await harness.hits()
    assert hit["kind"] == "view"
    assert (hit["cid"], hit["uid"], hit["sid"], hit["event"]) == ("spring", "r-1", "s-9", "signup")
    assert hit["url"] == "https://shop.example/"
    assert [hit[k] for k in ("utm_source", "utm_medium", "utm_campaign")] == ["nl", "email", "c"]
    assert [hit[k] for k in ("utm_term", "utm_content", "utm_id")] == ["t", "k", "7"]
    assert hit["params"] == {"color": "blue"}
    assert hit["referer"] == "https://shop.example/a"
    assert (hit["browser"], hit["os"], hit["device"], hit["is_bot"]) == (
        "Chrome",
        "Windows",
        "desktop",
        False,
    )
    assert (hit["dnt"], hit["gpc"]) == (False, False)  # honoured: tests/test_privacy.py
    assert hit["ip"] == "203.0.113.0"
    assert hit["flags"] == []


async def test_bot_user_agent_is_flagged_not_dropped(harness: Harness) -> None:
    """A crawler's hit is stored with is_bot and device 'bot'."""
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    await harness.client.get("/p.gif?cid=bots", headers={"user-agent": ua})
    [hit] = await harness.hits(cid="bots")
    assert hit["is_bot"] is True
    assert hit["device"] == "bot"


@pytest.mark.parametrize(
    ("query", "flag"),
    [
        ("cid=%ff%fe", "invalid_utf8"),
        ("cid=a%00b", "control_chars"),
        ("cid=a%0d%0aSet-Cookie:x=1", "control_chars"),
        ("cid=%1b[31mred", "control_chars"),
        ("cid=first&cid=second", "repeated_param"),
        ("cid=" + "x" * 3000, "value_truncated"),
        ("&".join(f"p{i}=1" for i in range(60)), "too_many_params"),
        ("cid=a&pad=" + "y" * 9000, "query_truncated"),
    ],
)
async def test_bad_query_still_gets_the_gif_and_is_flagged(
    harness: Harness, query: str, flag: str
) -> None:
    """Malformed or oversized queries answer the GIF; the stored hit names the problem."""
    response = await harness.client.get(f"/p.gif?{query}")
    assert response.status_code == 200
    assert response.content == GIF
    [hit] = await harness.hits()
    assert flag in hit["flags"]
    for value in (hit["cid"], *hit["params"].values()):
        assert value is None or not any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


async def test_repeated_parameter_keeps_its_first_value(harness: Harness) -> None:
    """``cid=a&cid=b`` stores cid 'a': appending a parameter cannot re-point a hit."""
    await harness.client.get("/p.gif?cid=a&cid=b")
    [hit] = await harness.hits()
    assert hit["cid"] == "a"


async def test_malformed_percent_escape_is_kept_literally(harness: Harness) -> None:
    """``%zz%`` is not an escape; it is stored as written."""
    await harness.client.get("/p.gif?cid=%zz%")
    [hit] = await harness.hits()
    assert hit["cid"] == "%zz%"


async def test_duplicate_eid_is_stored_once(harness: Harness) -> None:
    """Two hits with one event id make one row; the second counts as a duplicate."""
    for _ in range(2):
        response = await harness.client.get("/p.gif?cid=d&eid=evt-1")
        assert response.status_code == 200
    rows = await harness.hits(cid="d")
    assert len(rows) == 1
    assert harness.metric("pixel_hits_duplicate_total", kind="view") == 1


async def test_post_to_pixel_is_405_with_allow(harness: Harness) -> None:
    """Only GET and HEAD are pixel methods; others get 405 and an Allow header."""
    response = await harness.client.post("/p.gif")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_signed_pixel_records_an_open_with_the_token_ids(harness: Harness) -> None:
    """/p/<token>.gif stores kind 'open' with the ids signed into the token."""
    token = harness.rt.pixel_tokens.dumps({"cid": "spring", "uid": "r-1042", "list": "vip"})
    response = await harness.client.get(f"/p/{token}.gif")
    assert response.status_code == 200
    assert response.content == GIF
    [hit] = await harness.hits()
    assert (hit["kind"], hit["cid"], hit["uid"]) == ("open", "spring", "r-1042")
    assert hit["params"] == {"list": "vip"}


async def test_signed_pixel_ignores_query_parameters(harness: Harness) -> None:
    """Query parameters on a signed pixel cannot override or add ids."""
    token = harness.rt.pixel_tokens.dumps({"cid": "spring", "uid": "r-1"})
    await harness.client.get(f"/p/{token}.gif?uid=someone-else&utm_source=spam")
    [hit] = await harness.hits()
    assert hit["uid"] == "r-1"
    assert hit["utm_source"] is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"),
        lambda t: t.replace(".", ".x", 1),
        lambda t: "zz" + t[2:],
        lambda t: t + "é",
        lambda t: "k1.e30.invalidsignature",
        lambda t: "x" * 5000,
    ],
)
async def test_forged_pixel_token_gets_the_gif_but_no_open(
    harness: Harness, mutate: object
) -> None:
    """A tampered, foreign or junk token still answers the GIF and is only counted."""
    token = harness.rt.pixel_tokens.dumps({"cid": "spring", "uid": "r-1"})
    assert callable(mutate)
    response = await harness.client.get(f"/p/{mutate(token)}.gif")
    assert response.status_code == 200
    assert response.content == GIF
    assert await harness.hits() == []
    invalid = sum(
        harness.metric("pixel_tokens_invalid_total", token="pixel", reason=reason)
        for reason in ("malformed", "unknown_key", "bad_signature", "too_long", "bad_payload")
    )
    assert invalid == 1


async def test_link_token_is_not_accepted_as_a_pixel(harness: Harness) -> None:
    """A redirect token (other salt) is refused by the pixel: contexts are separated."""
    token = harness.rt.link_tokens.dumps({"u": "https://example.com/", "cid": "c"})
    await harness.client.get(f"/p/{token}.gif")
    assert await harness.hits() == []
    assert harness.metric("pixel_tokens_invalid_total", token="pixel", reason="bad_signature") == 1


@pytest.mark.parametrize("path", ["/p/.gif", "/p/a/b.gif", "/r/", "/r/a/b", "/p.gif/", "/p.gifx"])
async def test_near_miss_tracking_paths_are_404(harness: Harness, path: str) -> None:
    """The fast dispatch matches exactly what the Starlette routes match; the rest is 404."""
    response = await harness.client.get(path)
    assert response.status_code == 404
    assert await harness.hits() == []
