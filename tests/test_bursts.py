"""The burst and trap rules (bursts.py), pure."""

from __future__ import annotations

from typing import Any

from pixel_server.bursts import Seen, Thresholds, relabels

NET = "203.0.113.0"
T0 = 1_800_000_000_000


def click(
    i: int, ts: int, url: str | None, *, ip: str = NET, cls: str = "human", **kw: Any
) -> Seen:
    fields: dict[str, Any] = {"cid": "c1", "uid": "u1", "msg": None, "traffic_reasons": None}
    fields.update(kw)
    return Seen(id=i, ts=ts, url=url, ip=ip, traffic=cls, **fields)


def test_three_links_within_seconds_from_one_network_are_a_burst() -> None:
    clicks = [click(1, T0, "a"), click(2, T0 + 900, "b"), click(3, T0 + 4_000, "c")]
    out = relabels(clicks)
    assert [(r.id, r.cls, r.reasons, r.expected) for r in out] == [
        (i, "link_scanner", "burst:3_links", "human") for i in (1, 2, 3)
    ]


def test_a_later_click_from_a_browser_stays_human() -> None:
    clicks = [click(1, T0, "a"), click(2, T0 + 500, "b"), click(3, T0 + 600_000, "a")]
    assert [r.id for r in relabels(clicks)] == [1, 2]


def test_one_link_twice_is_not_a_burst() -> None:
    assert relabels([click(1, T0, "a"), click(2, T0 + 100, "a")]) == []


def test_other_networks_messages_and_slow_clicks_are_not_bursts() -> None:
    assert relabels([click(1, T0, "a"), click(2, T0 + 100, "b", ip="198.51.100.0")]) == []
    assert relabels([click(1, T0, "a"), click(2, T0 + 100, "b", uid="u2")]) == []
    assert relabels([click(1, T0, "a"), click(2, T0 + 5_001, "b")]) == []
    assert relabels([click(1, T0, "a", cid=None), click(2, T0 + 1, "b", cid=None)]) == []


def test_within_the_delivery_window_of_the_send() -> None:
    sent: dict[str, Any] = {"sent_ts": T0 - 1_000, "msg": "m1"}
    clicks = [click(1, T0, "a", **sent), click(2, T0 + 50_000, "b", **sent)]
    assert [r.reasons for r in relabels(clicks)] == ["burst:2_links"] * 2
    assert relabels(clicks, Thresholds(delivery_seconds=10.0)) == []


def test_a_person_before_the_burst_keeps_it_human() -> None:
    person = click(1, T0, "a", ip="198.51.100.0")
    assert relabels([person, click(2, T0 + 60_000, "a"), click(3, T0 + 60_500, "b")]) == []
    scanner = click(1, T0, "a", ip="198.51.100.0", cls="link_scanner")
    assert len(relabels([scanner, click(2, T0 + 60_000, "a"), click(3, T0 + 60_500, "b")])) == 2


def test_the_links_threshold() -> None:
    clicks = [click(1, T0, "a"), click(2, T0 + 100, "b")]
    assert relabels(clicks, Thresholds(links=3)) == []


def test_already_labelled_clicks_are_left_out() -> None:
    done = {"traffic_reasons": "burst:2_links"}
    clicks = [
        click(1, T0, "a", cls="link_scanner", **done),
        click(2, T0 + 1, "b", cls="link_scanner", **done),
    ]
    assert relabels(clicks) == []


def test_a_trap_click_marks_its_message() -> None:
    trap = click(2, T0 + 1_000, None, cls="link_scanner", traffic_reasons="trap")
    near = click(1, T0, "a", ip="198.51.100.0")
    same_net_later = click(3, T0 + 40_000, "b")
    far = click(4, T0 + 600_000, "c", ip="192.0.2.0")
    out = relabels([near, trap, same_net_later, far])
    assert [(r.id, r.reasons) for r in out] == [(1, "trap_message"), (3, "trap_message")]


def test_a_scanner_keeps_its_own_reason() -> None:
    gateway = click(1, T0, "a", cls="link_scanner", traffic_reasons="ua:gateway")
    out = relabels([gateway, click(2, T0 + 100, "b")])
    assert [(r.id, r.reasons) for r in out] == [(2, "burst:2_links")]
