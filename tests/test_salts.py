"""Daily salts (salts.py): one per report day, shared by every instance through the store,
destroyed when the day is over; the visitor hash they key changes across days and cannot be
recomputed once its salt is gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pixel_server.config import Settings
from pixel_server.salts import DaySalts, visitor_hash
from pixel_server.store import open_store

from conftest import running
from privacytest import byte_traces

pytestmark = pytest.mark.both_stores

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36"
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


DAY1, DAY2, DAY3 = ms("2026-03-01T10:00"), ms("2026-03-02T10:00"), ms("2026-03-03T10:00")


async def test_instances_agree_on_a_salt_and_it_is_destroyed_after_its_day(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    store, other = open_store(settings), open_store(settings)
    await store.open()
    await other.open()
    try:
        first, second = DaySalts("UTC"), DaySalts("UTC")
        await first.refresh(store, DAY1)
        await second.refresh(other, DAY1)
        assert first.salt(DAY1) == second.salt(DAY1)  # what the first offered
        assert first.salt(DAY2) == second.salt(DAY2)  # tomorrow's, made a day ahead
        assert first.salt(DAY1) != first.salt(DAY2)
        day1 = first.salt(DAY1)
        hashed = visitor_hash(day1, "203.0.113.0", UA, "spring")
        assert hashed == visitor_hash(second.salt(DAY1), "203.0.113.0", UA, "spring")
        assert hashed != visitor_hash(first.salt(DAY2), "203.0.113.0", UA, "spring")
        assert byte_traces(settings, day1)  # the control: the search finds a live salt
        await first.refresh(store, DAY3)
        assert byte_traces(settings, day1) == []  # not in a table, the file nor the WAL
        await second.refresh(other, DAY3)
        for salts in (first, second):
            assert day1 not in salts.known().values()
            assert salts.salt(DAY3) != day1
        # nothing left can give the day's hashes again
        for salt in first.known().values():
            assert visitor_hash(salt, "203.0.113.0", UA, "spring") != hashed
    finally:
        await store.aclose()
        await other.aclose()


def test_a_salt_day_is_a_day_of_the_report_zone() -> None:
    """At 23:30 UTC it is the next day in Berlin: a new salt there, the same one in UTC."""
    utc, berlin = DaySalts("UTC"), DaySalts("Europe/Berlin")
    evening, night = ms("2026-03-01T22:30"), ms("2026-03-01T23:30")
    assert utc.salt(evening) == utc.salt(night)
    assert berlin.salt(evening) != berlin.salt(night)
    assert berlin.days(night)[0] == berlin.days(evening)[1]


async def test_a_stored_hit_carries_the_day_hash_of_its_visitor(
    make_settings: Callable[..., Settings],
) -> None:
    """Two hits of one browser on one campaign share a visitor hash: the hash of its /24, its
    agent and the campaign under the day's salt; another agent or campaign gets another."""
    settings = make_settings()
    async with running(settings) as h:
        for query, ua in (("cid=spring", UA), ("cid=spring&x=2", UA), ("cid=spring", "curl/8")):
            await h.client.get(f"/p.gif?{query}", headers={"user-agent": ua})
        await h.client.get("/p.gif?cid=autumn", headers={"user-agent": UA})
        rows = await h.hits()
        salt = h.rt.salts.salt(rows[0]["ts"])
    by = {(r["cid"], r["ua"], r["params"].get("x")): r["visitor"] for r in rows}
    assert by[("spring", UA, None)] == by[("spring", UA, "2")]
    assert by[("spring", UA, None)] == visitor_hash(salt, "203.0.113.0", UA, "spring")
    assert (
        len({by[("spring", UA, None)], by[("spring", "curl/8", None)], by[("autumn", UA, None)]})
        == 3
    )


async def test_no_visitor_hash_when_switched_off(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(visitor_hash=False)) as h:
        await h.client.get("/p.gif?cid=spring", headers={"user-agent": UA})
        await h.client.post("/e", json={"name": "buy"})
        assert [r["visitor"] for r in await h.hits()] == [None, None]


async def test_the_reports_count_visitors_without_a_uid_by_their_hash(
    make_settings: Callable[..., Settings],
) -> None:
    """Uniques: a uid where a hit has one, else its visitor hash — the same browser's two
    withheld views are one visitor, another browser another; the rollups and the raw hits
    agree."""
    async with running(make_settings()) as h:
        for ua, extra in ((UA, ""), (UA, "&x=2"), (CHROME, ""), (UA, "&uid=r-1")):
            headers = {"user-agent": ua, "sec-gpc": "1" if not extra.startswith("&uid") else "0"}
            await h.client.get(f"/p.gif?cid=spring{extra}", headers=headers)
        answers = []
        for raw in (False, True):
            params = {"since": "1d", "metrics": "views,uniques", "cid": "spring"}
            if raw:  # two dimensions at once: only the raw hits can answer
                params = {**params, "browser": "Firefox", "device": "desktop"}
            answer = await h.client.get("/api/stats", params=params, headers=h.auth)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    assert answers[0]["source"] == "rollups"
    assert answers[0]["totals"] == {"views": 4, "uniques": 3}
    assert answers[1]["source"] == "hits"
    assert answers[1]["totals"] == {"views": 3, "uniques": 2}  # Firefox only
