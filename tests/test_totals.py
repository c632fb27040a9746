"""The definitions of campaign totals (totals.py), on crafted rows: who counts, what is
unique, what is inferred, CTOR, links, machines apart."""

from __future__ import annotations

from typing import Any

import pytest

from pixel_server.query import QueryError
from pixel_server.totals import (
    DEFINITIONS_VERSION,
    PROXY_REPEAT_MS,
    TOP_LINKS,
    Campaign,
    campaign_totals,
    figures,
    group_rows,
    parse_request,
    reason_name,
)

T = 1_790_000_000_000
SPAN = (0, T + 10**9)


def row(kind: str, uid: str | None, traffic: str | None = "human", **over: Any) -> dict[str, Any]:
    return {"ts": T, "kind": kind, "uid": uid, "traffic": traffic, "url": None, "method": "GET"} | {
        "traffic_reasons": None,
        **over,
    }


def report(rows: list[dict[str, Any]], machines: bool = False) -> dict[str, Any]:
    reasons = [(r["traffic"], r["traffic_reasons"], 1) for r in rows if r["traffic_reasons"]]
    return campaign_totals("c", SPAN, Campaign(group_rows(rows), reasons), machines).as_dict()


def test_people_are_human_mail_proxy_and_unclassified() -> None:
    """human, mail_proxy and NULL count as people; apple_mpp and other classes do not."""
    rows = [
        row("open", "1"),
        row("open", "2", "mail_proxy"),
        row("open", "3", None),
        row("open", "4", "apple_mpp"),
        row("open", "5", "prefetch"),
    ]
    body = report(rows)
    assert body["totals"]["opens"] == 3
    assert body["totals"]["unique_opens"] == 3
    assert body["machines"]["opens"] == 2
    assert set(body["machines"]["classes"]) == {"apple_mpp", "prefetch"}
    assert body["definitions"] == DEFINITIONS_VERSION


def test_the_machines_switch_puts_machines_in_the_totals() -> None:
    """machines=1: the totals count every class; people and machines stay as they are."""
    rows = [row("open", "1"), row("open", "4", "apple_mpp")]
    body = report(rows, machines=True)
    assert body["machines_included"] is True
    assert body["totals"]["opens"] == 2
    assert body["people"]["opens"] == 1


def test_head_never_counts() -> None:
    """A HEAD request is neither an open nor a click, whatever its class; it is counted apart."""
    rows = [row("open", "1", method="HEAD"), row("click", "1", "probe", method="HEAD", url="u")]
    body = report(rows, machines=True)
    assert body["totals"]["opens"] == body["totals"]["clicks"] == 0
    assert body["head_requests"] == 2
    assert body["links"] == []


def test_a_proxy_repeat_within_60_seconds_counts_once() -> None:
    """Gmail's proxy fetching one pixel again within 60 s of its last fetch is one open; a
    fetch later than that (the message reopened) is another."""
    rows = [
        row("open", "1", "mail_proxy"),
        row("open", "1", "mail_proxy", ts=T + 1_000),
        row("open", "1", "mail_proxy", ts=T + 1_000 + PROXY_REPEAT_MS - 1),
        row("open", "1", "mail_proxy", ts=T + 1_000 + 2 * PROXY_REPEAT_MS),
        row("open", "2", "mail_proxy", ts=T + 1_000),  # another recipient: not a repeat
        row("open", None, "mail_proxy"),  # no uid: nothing to tell it apart, not a repeat
        row("open", None, "mail_proxy"),
    ]
    body = report(rows)
    assert body["proxy_repeats"] == 2
    assert body["totals"]["opens"] == 5
    assert body["totals"]["unique_opens"] == 2
    assert body["totals"]["anonymous_opens"] == 2


def test_human_repeats_are_not_deduplicated() -> None:
    """Only a proxy's repeats are folded: a person opening twice is two opens, one unique."""
    body = report([row("open", "1"), row("open", "1", ts=T + 1)])
    assert (body["totals"]["opens"], body["totals"]["unique_opens"]) == (2, 1)


def test_a_click_without_an_open_is_an_inferred_open_and_ctor_uses_it() -> None:
    """Clicked implies opened: a clicker with no counted open (MPP-hidden) is an inferred
    open, apart from the opens; CTOR = clickers / (openers + inferred)."""
    rows = [
        row("open", "1"),
        row("open", "2"),
        row("open", "3"),
        row("click", "1", url="https://a.example/"),
        row("open", "4", "apple_mpp"),  # hidden behind MPP: no counted open
        row("click", "4", url="https://a.example/"),
    ]
    totals = report(rows)["totals"]
    assert totals["opens"] == 3
    assert totals["inferred_opens"] == 1
    assert totals["unique_clicks"] == 2
    assert totals["ctor"] == 0.5  # 2 / (3 + 1)


def test_ctor_is_none_without_opens_and_machines_infer_nothing() -> None:
    """No opener: CTOR is None. A scanner's click infers no open."""
    body = report([row("click", "1", "link_scanner", url="u")])
    assert body["totals"]["ctor"] is None
    assert body["machines"]["inferred_opens"] == 0
    assert body["machines"]["ctor"] is None
    assert figures([]).ctor is None


def test_links_count_people_and_machines_apart_most_clicked_first() -> None:
    """Per link: clicks and unique clickers of people, machine clicks apart; sorted by
    unique clickers, at most TOP_LINKS, links_total says how many there were."""
    rows = [
        row("click", "1", url="https://a.example/sale"),
        row("click", "1", url="https://a.example/sale"),
        row("click", "2", url="https://a.example/sale"),
        row("click", "1", url="https://a.example/about"),
        row("click", "1", "link_scanner", url="https://a.example/about"),
        row("click", "9", "link_scanner", url="https://a.example/unsubscribe"),
    ]
    body = report(rows)
    assert body["links"] == [
        {"url": "https://a.example/sale", "clicks": 3, "unique_clicks": 2, "machine_clicks": 0},
        {"url": "https://a.example/about", "clicks": 1, "unique_clicks": 1, "machine_clicks": 1},
        {
            "url": "https://a.example/unsubscribe",
            "clicks": 0,
            "unique_clicks": 0,
            "machine_clicks": 1,
        },
    ]
    many = [row("click", "1", url=f"https://a.example/{i}") for i in range(TOP_LINKS + 5)]
    body = report(many)
    assert len(body["links"]) == TOP_LINKS
    assert body["links_total"] == TOP_LINKS + 5


def test_machine_reasons_are_counted_per_class() -> None:
    """Each machine class shows how many of its hits gave each reason; seconds since the
    send are one reason whatever their value."""
    rows = [
        row("open", "1", "apple_mpp", traffic_reasons="ua:stripped_webkit,since_send:3s"),
        row("open", "2", "apple_mpp", traffic_reasons="ua:stripped_webkit,since_send:40s"),
        row("click", "2", "link_scanner", url="u", traffic_reasons="ip:exchange_online_protection"),
    ]
    classes = report(rows)["machines"]["classes"]
    assert classes["apple_mpp"]["reasons"] == {"ua:stripped_webkit": 2, "since_send": 2}
    assert classes["link_scanner"] == {
        "opens": 0,
        "clicks": 1,
        "views": 0,
        "head": 0,
        "reasons": {"ip:exchange_online_protection": 1},
    }
    assert reason_name("since_send:12s") == "since_send"


def test_views_are_counted_apart_from_opens() -> None:
    """A web page's view (/p.gif) is a view, never an open."""
    totals = report([row("view", "1"), row("view", "1"), row("view", None)])["totals"]
    assert (totals["views"], totals["unique_views"], totals["opens"]) == (3, 1, 0)


@pytest.mark.parametrize(
    ("cid", "pairs"),
    [
        ("", []),
        ("x" * 2049, []),
        ("c", [("machines", "yes")]),
        ("c", [("since", "yesterday")]),
        ("c", [("since", "1d"), ("since", "2d")]),
        ("c", [("cid", "other")]),
    ],
)
def test_bad_requests_are_refused(cid: str, pairs: list[tuple[str, str]]) -> None:
    """An empty or overlong campaign, an odd switch or time, a repeated or unknown name."""
    with pytest.raises(QueryError):
        parse_request(cid, pairs, T, 2048)


def test_a_request_defaults_to_every_hit_until_now() -> None:
    """No since: from the beginning; no until: now; since after until: an empty span."""
    assert parse_request("c", [], T, 2048) == ((0, T), False)
    assert parse_request("c", [("machines", "1")], T, 2048) == ((0, T), True)
    assert parse_request("c", [("since", str(T + 5))], T, 2048) == ((T + 5, T + 5), False)
