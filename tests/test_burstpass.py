"""The burst pass (burstpass.py) and the trap link, in a real app on SQLite and PostgreSQL:
the pass relabels a burst, a later click from a person stays human, a trap click answers a
blank page and marks its message."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server.burstpass import LATE_S, Window, run_pass
from pixel_server.bursts import Seen
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.store.base import StoreUnavailable
from pixel_server.store.memory import MemoryStore

from conftest import SECRET, Harness, running, stored_rows

pytestmark = pytest.mark.both_stores

BASE = "https://t.example.com"
EMAIL = (
    "<html><body><p>Hello</p>"
    '<a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a>'
    ' <a href="https://shop.example/c">C</a></body></html>'
)
NET = "203.0.113.0"
BROWSER = {
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
}
T0 = 1_800_000_000_000
SQL = (
    "SELECT ts, url, traffic, traffic_reasons, is_bot FROM hits WHERE kind = 'click'"
    " ORDER BY ts, id"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def wrapped(h: Harness, **body: Any) -> str:
    body = {"html": EMAIL, "cid": "spring", "uid": "r-1", "sent_at": time.time() - 3600, **body}
    response = await h.client.post("/api/wrap", json=body, headers=h.auth)
    assert response.status_code == 200, response.text
    html: str = response.json()["html"]
    return html


def links(html: str) -> list[str]:
    return [
        u.removeprefix(BASE) for u in re.findall(r'href="(https://t\.example\.com/r/[^"]+)"', html)
    ]


def click(i: int, ts: int, url: str, ip: str = NET, traffic: str = "human") -> Hit:
    return Hit(ts=ts, kind="click", cid="c", uid="u", url=url, ip=ip, traffic=traffic)


class Reads:
    """A store's clicks_since, recording where each read started."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.starts: list[int] = []

    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        self.starts.append(since_ms)
        clicks: list[Seen] = await self.store.clicks_since(since_ms, limit)
        return clicks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_the_running_pass_reads_only_what_is_new_and_remembers_the_window(
    make_settings: Callable[..., Settings],
) -> None:
    """A pass with a Window reads from shortly before the last one, not the whole window, yet
    a burst whose first click an earlier pass read is still caught whole; a pass without new
    clicks judges nothing."""
    settings = make_settings(burst_every=2)
    async with running(settings) as h:
        assert h.rt.store is not None
        store, window = Reads(h.rt.store), Window()
        await h.rt.store.write([click(1, T0, "a")])
        assert await run_pass(store, settings, h.rt.metrics, T0 + 1_000, window) == 0
        await h.rt.store.write([click(2, T0 + 2_000, "b")])
        assert await run_pass(store, settings, h.rt.metrics, T0 + 3_000, window) == 2
        assert await run_pass(store, settings, h.rt.metrics, T0 + 5_000, window) == 0
        late = int(LATE_S * 1000)
        assert store.starts == [T0 + 1_000 - 64_000, T0 + 1_000 - late, T0 + 3_000 - late]
        assert not window.pending
    rows = stored_rows(settings, SQL)
    assert [row[2:4] for row in rows] == [("link_scanner", "burst:2_links")] * 2


async def test_the_pass_relabels_a_burst_and_a_later_person_stays_human(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(burst_every=0)
    async with running(settings) as h:
        store = h.rt.store
        assert store is not None
        await store.write([click(1, T0, "a"), click(2, T0 + 1_500, "b"), click(3, T0 + 4_900, "c")])
        assert await run_pass(store, settings, h.rt.metrics, T0 + 5_000) == 3
        await store.write([click(4, T0 + 600_000, "a")])
        assert await run_pass(store, settings, h.rt.metrics, T0 + 600_001) == 0
        assert await run_pass(store, settings, h.rt.metrics, T0 + 5_000) == 0  # done already
        assert (
            h.metric("pixel_traffic_relabeled_total", traffic="link_scanner", reason="burst") == 3
        )
    rows = stored_rows(settings, SQL)
    assert [tuple(r[2:]) for r in rows] == [("link_scanner", "burst:3_links", 1)] * 3 + [
        ("human", None, 0)
    ]


async def test_the_running_pass_relabels_real_clicks(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_url=BASE, burst_every=0.01)
    async with running(settings) as h:
        for path in links(await wrapped(h, message_id="m-burst")):
            assert (await h.client.get(path)).status_code == 302
        deadline = time.monotonic() + 30
        while h.metric("pixel_traffic_relabeled_total", traffic="link_scanner", reason="burst") < 3:
            assert time.monotonic() < deadline, "the pass never relabelled the burst"
            await asyncio.sleep(0.01)
        assert h.metric("pixel_burst_passes_total", outcome="ok") >= 1
    rows = stored_rows(settings, SQL)
    assert {tuple(r[2:]) for r in rows} == {("link_scanner", "burst:3_links", 1)}


async def test_a_click_from_another_network_stays_human(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_url=BASE, burst_every=0)
    async with running(settings) as h:
        paths = links(await wrapped(h))
        other = httpx.ASGITransport(h.app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as person:
            assert (await person.get(paths[0], headers=BROWSER)).status_code == 302
        for path in paths[1:]:
            assert (await h.client.get(path, headers=BROWSER)).status_code == 302
        assert h.rt.store is not None
        assert await run_pass(h.rt.store, settings, h.rt.metrics, now_ms()) == 0  # person first
    assert {r[2] for r in stored_rows(settings, SQL)} == {"human"}


async def test_a_trap_click_answers_blank_and_marks_its_message(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_url=BASE, burst_every=0)
    async with running(settings) as h:
        html = await wrapped(h, trap=True, message_id="m-trap")
        assert html.count('aria-hidden="true" tabindex="-1"') == 1
        assert html.index('tabindex="-1"') < html.index("<p>Hello</p>")
        trap, *real = links(html)
        answer = await h.client.get(trap)
        assert answer.status_code == 200
        assert "location" not in answer.headers
        assert answer.headers["x-robots-tag"] == "noindex"
        assert "noindex" in answer.text
        assert (await h.client.head(trap)).status_code == 200
        assert (await h.client.get(real[0], headers=BROWSER)).status_code == 302
        rows = stored_rows(settings, SQL)
        assert [tuple(r[2:]) for r in rows[:2]] == [("link_scanner", "trap", 1)] * 2
        assert rows[2][2] == "human"
        assert h.rt.store is not None
        assert await run_pass(h.rt.store, settings, h.rt.metrics, now_ms()) == 1
    rows = stored_rows(settings, SQL)
    assert [tuple(r[2:]) for r in rows] == [("link_scanner", "trap", 1)] * 2 + [
        ("link_scanner", "trap_message", 1)
    ]


async def test_the_trap_flag_is_checked(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(public_url=BASE)) as h:
        response = await h.client.post(
            "/api/wrap", json={"html": EMAIL, "trap": "yes"}, headers=h.auth
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_item"


class BrokenClicks(MemoryStore):
    async def clicks_since(self, since_ms: int, limit: int) -> list[Seen]:
        raise StoreUnavailable("the store is down")


async def test_a_failed_pass_is_counted_and_the_server_goes_on(tmp_path: Path) -> None:
    settings = Settings(secret_key=SECRET, db=str(tmp_path / "x.db"), burst_every=0.01)
    async with running(settings, store=BrokenClicks()) as h:
        deadline = time.monotonic() + 30
        while h.metric("pixel_burst_passes_total", outcome="failed") < 2:
            assert time.monotonic() < deadline, "no pass ran"
            await asyncio.sleep(0.01)
        assert (await h.client.get("/p.gif?cid=x")).status_code == 200


async def test_no_pass_when_turned_off(tmp_path: Path) -> None:
    settings = Settings(secret_key=SECRET, db=str(tmp_path / "x.db"), burst_every=0)
    async with running(settings, store=BrokenClicks()) as h:
        assert (await h.client.get("/p.gif?cid=x")).status_code == 200
        assert h.metric("pixel_burst_passes_total", outcome="failed") == 0
