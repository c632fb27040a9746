"""Opt-out signals and consent (privacy.py): a withheld hit is answered and counted, and no
identifier of it is stored — searched for in the raw bytes of the SQLite file, its WAL and
the spill journals, and in every row of every PostgreSQL table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pixel_server.config import Settings

from conftest import API_TOKEN, SECRET, Harness, running, store_locked, stored_rows, until
from privacytest import files_of, traces

pytestmark = pytest.mark.both_stores

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
# what a withheld hit may not keep, each a string no other value contains
UID, SID, EMAIL, MSG = "uid-7f3a9c", "sid-4b1e2d", "ann-91c4@mail.example", "msg-5d2e8a"
IDENTIFIERS = (UID, SID, EMAIL, MSG)
SIGNALS: dict[str, tuple[dict[str, str], str]] = {
    "gpc": ({"sec-gpc": "1"}, ""),
    "dnt": ({"dnt": "1"}, ""),
    "consent-denied": ({}, "&consent=denied"),
}


async def send_all(h: Harness, headers: dict[str, str], extra: str) -> None:
    """A pixel, a signed link and two events, each carrying every identifier."""
    headers = {"user-agent": UA, "referer": f"https://shop.example/p?email={EMAIL}", **headers}
    page = f"https%3A%2F%2Fshop.example%2Fa%3Fuid%3D{UID}%26x%3D1"
    query = f"cid=spring&uid={UID}&sid={SID}&email={EMAIL}&color=blue&url={page}{extra}"
    assert (await h.client.get(f"/p.gif?{query}", headers=headers)).status_code == 200
    payload = {"u": "https://shop.example/sale", "cid": "spring", "uid": UID, "s": 1, "m": MSG}
    if extra:
        payload["consent"] = "denied"
    response = await h.client.get(f"/r/{h.rt.link_tokens.dumps(payload)}", headers=headers)
    assert response.status_code == 302
    params: dict[str, Any] = {"email": EMAIL, "value": 12.5}
    if extra:
        params["consent"] = "denied"
    events = [
        {
            "name": "add_to_cart",
            "eid": f"e{i}",
            "cid": "spring",
            "uid": UID,
            "sid": SID,
            "params": params,
        }
        for i in range(2)
    ]
    response = await h.client.post("/e", json=events, headers=headers)
    assert response.json()["accepted"] == 2, response.text


@pytest.mark.parametrize("signal", list(SIGNALS))
async def test_a_withheld_hit_is_counted_and_keeps_no_identifier(
    make_settings: Callable[..., Settings], signal: str
) -> None:
    headers, extra = SIGNALS[signal]
    settings = make_settings()
    async with running(settings) as h:
        await send_all(h, headers, extra)
        rows = await h.hits()
    assert sorted(row["kind"] for row in rows) == ["click", "event", "event", "view"]
    for row in rows:
        assert (row["uid"], row["sid"], row["msg"]) == (None, None, None)
        assert row["cid"] == "spring"
        assert row["visitor"]  # the daily hash stands in for them
        assert row["ip"] == "203.0.113.0"
    view = next(row for row in rows if row["kind"] == "view")
    assert view["params"] == (
        {"color": "blue", "consent": "denied"} if extra else {"color": "blue"}
    )
    assert view["url"] == "https://shop.example/a?x=1"
    assert view["referer"] == "https://shop.example/p"
    assert [r["params"]["value"] for r in rows if r["kind"] == "event"] == [12.5, 12.5]
    for needle in IDENTIFIERS:
        assert traces(settings, needle) == [], needle


async def test_without_a_signal_every_identifier_is_kept(
    make_settings: Callable[..., Settings],
) -> None:
    """The control of the test above: the same requests without a signal (and with email
    addresses kept, PIXEL_REDACT_EMAILS=false) store every identifier, and the search finds
    each."""
    settings = make_settings(redact_emails=False)
    async with running(settings) as h:
        await send_all(h, {}, "")
        rows = await h.hits()
    assert {row["uid"] for row in rows} == {UID}
    for needle in IDENTIFIERS:
        assert traces(settings, needle), needle


async def test_an_email_address_is_kept_by_no_hit_by_default(
    make_settings: Callable[..., Settings],
) -> None:
    """Without a signal the ids are kept, but the address sent in a query parameter, a URL,
    the Referer and an event's parameters is replaced with [email] everywhere (raw bytes of
    the file, its WAL and the journals), and each such hit says so in its flags."""
    settings = make_settings()
    async with running(settings) as h:
        await send_all(h, {}, "")
        rows = await h.hits()
    assert {row["uid"] for row in rows} == {UID}
    assert traces(settings, EMAIL) == []
    for needle in (UID, SID, MSG):
        assert traces(settings, needle), needle
    view = next(row for row in rows if row["kind"] == "view")
    assert view["params"] == {"email": "[email]", "color": "blue"}
    assert view["referer"] == "https://shop.example/p?email=[email]"
    events = [row for row in rows if row["kind"] == "event"]
    assert [e["params"] for e in events] == [{"email": "[email]", "value": 12.5}] * 2
    for row in rows:
        assert "email_redacted" in (row["flags"] or []), row


@pytest.mark.parametrize(
    ("query", "field", "stored"),
    [
        ("uid=ann%40example.com", "uid", None),  # an id that is an address is dropped
        ("sid=x-ann@example.com", "sid", None),
        ("utm_content=ann@example.com", "utm_content", "[email]"),
        ("url=https%3A%2F%2Fa.example%2F%3Fm%3Dann%2540example.com", "url", None),
        ("note=Ann%20%3Cann@example.com%3E", "params", {"note": "Ann <[email]>"}),
        ("utm_content=hero@2x.png", "utm_content", "hero@2x.png"),  # not an address
    ],
)
async def test_each_field_loses_its_address(
    make_settings: Callable[..., Settings], query: str, field: str, stored: Any
) -> None:
    settings = make_settings()
    async with running(settings) as h:
        response = await h.client.get(f"/p.gif?cid=c&{query}", headers={"user-agent": UA})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        [row] = await h.hits()
    if field == "url":
        assert row["url"] == "https://a.example/?m=[email]"
    else:
        assert row[field] == stored
    flagged = "email_redacted" in (row["flags"] or [])
    assert flagged == (stored != "hero@2x.png")
    if field == "uid":
        assert row["visitor"]  # counted by the daily hash instead
    assert traces(settings, "ann@example.com") == []
    assert traces(settings, "ann%40example.com") == []


async def test_record_only_keeps_identifiers_and_the_signals(
    make_settings: Callable[..., Settings],
) -> None:
    """PIXEL_HONOUR_SIGNALS=none and PIXEL_CONSENT=ignore: a lawful-basis setup records the
    signals and keeps what was sent."""
    settings = make_settings(honour_signals="none", consent="ignore")
    async with running(settings) as h:
        headers = {"sec-gpc": "1", "dnt": "1", "user-agent": UA}
        await h.client.get(f"/p.gif?uid={UID}&consent=denied", headers=headers)
        [row] = await h.hits()
    assert (row["uid"], row["gpc"], row["dnt"]) == (UID, True, True)


@pytest.mark.parametrize(
    ("honour", "headers", "withheld"),
    [
        ("gpc", {"sec-gpc": "1"}, True),
        ("gpc", {"dnt": "1"}, False),
        ("dnt", {"sec-gpc": "1"}, False),
        ("dnt", {"dnt": "1"}, True),
        ("gpc,dnt", {"sec-gpc": "0", "dnt": "0"}, False),
    ],
)
async def test_each_signal_is_honoured_only_if_configured(
    make_settings: Callable[..., Settings], honour: str, headers: dict[str, str], withheld: bool
) -> None:
    async with running(make_settings(honour_signals=honour)) as h:
        await h.client.get(f"/p.gif?uid={UID}", headers=headers)
        [row] = await h.hits()
    assert row["uid"] == (None if withheld else UID)


@pytest.mark.parametrize(
    ("consent", "stored"),
    [("&consent=granted", UID), ("", None), ("&consent=denied", None), ("&consent=maybe", None)],
)
async def test_consent_required_keeps_identifiers_only_when_granted(
    make_settings: Callable[..., Settings], consent: str, stored: str | None
) -> None:
    async with running(make_settings(consent="required")) as h:
        await h.client.get(f"/p.gif?uid={UID}{consent}")
        await h.client.post(
            "/e", json={"name": "buy", "uid": UID, "params": {"consent": consent[9:] or None}}
        )
        rows = await h.hits()
    assert [row["uid"] for row in rows] == [stored, stored]


@pytest.mark.parametrize("mode", ["full", "hash"])
async def test_a_withheld_address_is_never_kept_whole(
    make_settings: Callable[..., Settings], mode: str
) -> None:
    """PIXEL_IP_MODE=full and hash keep only the network of a withheld hit."""
    async with running(make_settings(ip_mode=mode)) as h:
        await h.client.get("/p.gif?cid=a", headers={"sec-gpc": "1"})
        await h.client.post("/e", json={"name": "buy"}, headers={"sec-gpc": "1"})
        await h.client.get("/p.gif?cid=b")
        await h.client.post("/e", json={"name": "buy", "cid": "b"})
        rows = {(r["kind"], r["cid"]): r["ip"] for r in await h.hits()}
    assert rows[("view", "a")] == rows[("event", None)] == "203.0.113.0"
    kept = rows[("view", "b")]
    assert rows[("event", "b")] == kept
    if mode == "full":
        assert kept == "203.0.113.77"
    else:
        assert kept.startswith("hash:")
        assert len(kept) == len("hash:") + 16


async def test_a_withheld_hit_never_reaches_the_spill_journal(
    make_settings: Callable[..., Settings],
) -> None:
    """With the store locked, withheld hits are acknowledged from the journal: it holds their
    campaign but no identifier; replayed, they are stored without one."""
    settings = make_settings(busy_timeout=0.2, ack_timeout=30)
    async with running(settings) as h:
        with store_locked(settings):
            sends = [
                h.client.get(f"/p.gif?cid=spilled&uid={UID}&sid={SID}&email={EMAIL}", headers=g)
                for g in ({"sec-gpc": "1"}, {"dnt": "1"})
            ]
            pending = asyncio.gather(*sends)
            await until(
                lambda: any(b"spilled" in p.read_bytes() for p in journals(settings)),
                "the hits did not reach the journal",
            )
            assert {p.name for p in files_of(settings) if b"spilled" in p.read_bytes()}
            for path in journals(settings):
                for needle in IDENTIFIERS:
                    assert needle.encode() not in path.read_bytes()
        assert [r.status_code for r in await pending] == [200, 200]
        await until(
            lambda: len(stored_rows(settings, "SELECT id FROM hits WHERE cid = 'spilled'")) == 2,
            "the journal was not replayed",
        )
    for needle in IDENTIFIERS:
        assert traces(settings, needle) == [], needle


def journals(settings: Settings) -> list[Any]:
    spill = settings.spill_path
    return [] if spill is None or not spill.exists() else list(spill.iterdir())


def test_the_server_log_holds_no_identifier_nor_secret(
    server_factory: Callable[..., Any],
) -> None:
    """A real server at debug level: hits with identifiers, a refused event, a wrong key, an
    erasure and a purge leave neither the identifiers nor a secret in its log."""
    server = server_factory(env={"PIXEL_LOG_LEVEL": "debug", "PIXEL_RETAIN_DAYS": "400"})
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get(f"/p.gif?cid=spring&uid={UID}&email={EMAIL}", headers={"sec-gpc": "1"})
        client.get(f"/p.gif?cid=spring&uid={UID}&sid={SID}")
        client.post("/e", json=[{"name": "Bad Name", "uid": UID}, {"name": "ok", "uid": UID}])
        client.get("/api/hits", headers={"authorization": "Bearer pxk_wrongwrongwr_" + "x" * 43})
        assert client.delete(f"/api/subjects/{UID}", headers=auth).status_code == 200
    assert server.stop() == 0
    text = server.log.read_text()
    assert "serving" in text  # the control: this is the server's log
    for needle in (*IDENTIFIERS, SECRET, API_TOKEN):
        assert needle not in text, needle


async def test_an_event_loses_its_addresses(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with running(settings) as h:
        event = {
            "name": "signup",
            "uid": "ann@example.com",
            "params": {"to": "Ann <ann@example.com>", "back": "/u?e=ann%40example.com", "n": 3},
        }
        response = await h.client.post("/e", json=[event], headers={"user-agent": UA})
        assert response.json()["accepted"] == 1, response.text
        [row] = await h.hits()
    assert row["uid"] is None
    assert row["visitor"]
    assert row["params"] == {"to": "Ann <[email]>", "back": "/u?e=[email]", "n": 3}
    assert "email_redacted" in row["flags"]
    assert traces(settings, "ann@example.com") == []
