"""The send time and message id in a wrapped email's tokens (payload.py ``s``, ``m``): every
open and click knows its seconds since the send without a lookup, is classified by it
(traffic.py) and stores it (``sent_ts``, ``msg``), on both stores."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pixel_server.cli import main
from pixel_server.config import Settings
from pixel_server.links import LinkError, Minter, Spec, parse_sent, spec_of_item
from pixel_server.payload import build, read_send

from conftest import SECRET, running, stored_rows

# Apple Mail's own agent, and MPP's: AppleWebKit with nothing after it (traffic-patterns.md)
STRIPPED_WEBKIT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)
SQL = "SELECT cid, kind, traffic, traffic_reasons, sent_ts, msg FROM hits ORDER BY id"
NOW = 1_790_000_000


def test_the_payload_carries_the_send_after_the_other_keys() -> None:
    payload = build({"cid": "c"}, target="https://a.example/", sent=NOW, message="m-1")
    assert list(payload) == ["cid", "u", "s", "m"]
    assert read_send(payload) == (NOW, "m-1")
    assert read_send({"cid": "c"}) == (None, None)
    # a signed payload is ours, but an odd value is ignored rather than trusted
    for odd in ({"s": "1"}, {"s": True}, {"s": -5}, {"s": 1.5}, {"m": 3}, {"m": ""}):
        sent, message = read_send(odd)
        assert (sent if "s" in odd else message) is None


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("1789990000", 1_789_990_000),
        (1_789_990_000.9, 1_789_990_000),
        ("2026-09-21T12:00:00Z", 1_789_992_000),
        ("2026-09-21T14:00:00+02:00", 1_789_992_000),
        ("2026-09-21T12:00:00", 1_789_992_000),  # no offset: UTC
    ],
)
def test_send_times_parse(raw: str | float, seconds: int) -> None:
    assert parse_sent(raw, now=NOW) == seconds


@pytest.mark.parametrize(
    "raw", ["yesterday", "", "1789990000000", "12", "nan", "inf", "2027-12-01T00:00Z", True]
)
def test_implausible_send_times_are_refused(raw: str | bool) -> None:
    with pytest.raises(LinkError) as caught:
        parse_sent(raw, now=NOW)
    assert caught.value.code == "bad_sent_at"


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ({"sent_at": ["now"]}, "bad_sent_at"),
        ({"message_id": 7}, "bad_message_id"),
        ({"message_id": "x" * 201}, "bad_message_id"),
        ({"message_id": "a\nb"}, "bad_message_id"),
        ({"message_id": "\ud800"}, "bad_field"),
    ],
)
def test_bad_send_items_are_refused(item: dict[str, object], code: str) -> None:
    with pytest.raises(LinkError) as caught:
        spec_of_item(item, link=True)
    assert caught.value.code == code


@pytest.mark.both_stores
async def test_opens_and_clicks_are_timed_from_the_send(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    now = int(time.time())
    async with running(settings) as h:
        base = "http://testserver"
        limit = settings.max_token_bytes
        pixels = Minter(h.rt.pixel_tokens, base, None, limit)
        links = Minter(h.rt.link_tokens, base, h.rt.target_policy, limit)
        just_sent = Spec({"cid": "fresh"}).sent_as(now, "m-1")
        long_ago = Spec({"cid": "old"}).sent_as(now - 3600, "m-2")
        ahead = Spec({"cid": "ahead"}).sent_as(now + 3600, None)  # a wrong clock tells nothing
        for spec, ua in [
            (just_sent, STRIPPED_WEBKIT),  # MPP's fetch at delivery
            (long_ago, STRIPPED_WEBKIT),  # a person reading in Apple Mail an hour later
            (ahead, STRIPPED_WEBKIT),
        ]:
            answer = await h.client.get(
                pixels.mint(spec).removeprefix(base), headers={"user-agent": ua}
            )
            assert answer.status_code == 200
        for spec in (just_sent, long_ago):  # a gateway's click at delivery; a person's later
            link = links.mint(spec, "https://shop.example/sale")
            answer = await h.client.get(link.removeprefix(base), headers={"user-agent": CHROME})
            assert answer.status_code == 302
    rows = stored_rows(settings, SQL)
    assert [row[:3] for row in rows] == [
        ("fresh", "open", "apple_mpp"),
        ("old", "open", "human"),
        ("ahead", "open", "human"),
        ("fresh", "click", "link_scanner"),
        ("old", "click", "human"),
    ]
    assert rows[0][3].startswith("ua:stripped_webkit,since_send:")
    assert rows[3][3].startswith("since_send:")
    assert [(row[4], row[5]) for row in rows] == [
        (now * 1000, "m-1"),
        ((now - 3600) * 1000, "m-2"),
        ((now + 3600) * 1000, None),
        (now * 1000, "m-1"),
        ((now - 3600) * 1000, "m-2"),
    ]


@pytest.mark.both_stores
async def test_a_scheduled_wrap_carries_its_send_time(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(public_url="https://t.example.com")
    email = tmp_path / "e.html"
    email.write_text('<html><body><a href="https://shop.example/a">A</a></body></html>')
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    monkeypatch.setenv("PIXEL_PUBLIC_URL", "https://t.example.com")
    args = ["wrap", str(email), "--cid", "c", "--uid", "u-1", "--message-id", "spring-1"]
    scheduled = CliRunner().invoke(main, [*args, "--sent-at", "2026-09-21T12:00:00Z"])
    assert scheduled.exit_code == 0, scheduled.output
    bad = CliRunner().invoke(main, [*args, "--sent-at", "soon"])
    assert bad.exit_code == 2
    assert "--sent-at" in bad.output
    async with running(settings) as h:
        for url in re.findall(r'(?:href|src)="https://t\.example\.com(/[^"]+)"', scheduled.stdout):
            await h.client.get(url, headers={"user-agent": CHROME})
    rows = stored_rows(settings, "SELECT kind, sent_ts, msg FROM hits ORDER BY kind")
    assert rows == [
        ("click", 1_789_992_000_000, "spring-1"),
        ("open", 1_789_992_000_000, "spring-1"),
    ]
    assert json.dumps(rows)  # plain values, no driver types
