"""Failed authentication attempts limited per client network (authlimit.py): on the API, on
POST /e's server keys, at the dashboard's login and on /metrics; counted in metrics; another
network is not affected."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from pixel_server.authlimit import MAX_NETWORKS, FailureLimit, TooManyFailures
from pixel_server.config import Settings

from conftest import API_TOKEN, Harness, running

LIMIT = 3
WRONG_KEY = "pxk_aaaaaaaaaaaa_" + "A" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_network_gets_its_allowance_then_one_attempt_per_interval() -> None:
    clock = Clock()
    limit = FailureLimit(6, clock)  # 6 a minute: one more every 10 s
    for _ in range(6):
        limit.check("203.0.113.0")
        limit.failed("203.0.113.0")
    with pytest.raises(TooManyFailures) as refused:
        limit.check("203.0.113.0")
    assert refused.value.retry_after == 10
    limit.check("198.51.100.0")  # another network: untouched
    clock.now += 9.9
    with pytest.raises(TooManyFailures):
        limit.check("203.0.113.0")
    clock.now += 0.1
    limit.check("203.0.113.0")
    limit.failed("203.0.113.0")
    with pytest.raises(TooManyFailures):
        limit.check("203.0.113.0")
    clock.now += 60
    limit.check("203.0.113.0")  # a quiet minute gives the whole allowance back


def test_the_memory_is_bounded() -> None:
    limit = FailureLimit(1, Clock())
    for n in range(MAX_NETWORKS + 10):
        limit.failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    limit.check("10.0.0.0")  # the oldest was forgotten
    with pytest.raises(TooManyFailures):
        limit.check(f"10.{(MAX_NETWORKS + 9) >> 16 & 255}.0.9")


@asynccontextmanager
async def elsewhere(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """A client from another network."""
    transport = httpx.ASGITransport(h.app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_wrong_api_secrets_get_429_then_even_the_right_one_waits(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(auth_failures=LIMIT)) as h:
        right = {"authorization": f"Bearer {API_TOKEN}"}
        assert (await h.client.get("/api/hits")).status_code == 401  # no secret: not counted
        for wrong in ("Bearer nope-nope-nope-nope", f"Bearer {WRONG_KEY}", "Basic eDp5"):
            answer = await h.client.get("/api/hits", headers={"authorization": wrong})
            assert answer.status_code == 401
        for headers in ({"authorization": "Bearer still-wrong-wrong"}, right):
            answer = await h.client.get("/api/stats", headers=headers)
            assert answer.status_code == 429
            assert answer.json()["error"]["code"] == "too_many_failures"
            assert 1 <= int(answer.headers["retry-after"]) <= 60 / LIMIT
        async with elsewhere(h) as other:
            assert (await other.get("/api/hits", headers=right)).status_code == 200
        assert h.metric("pixel_auth_failures_total", surface="api") == LIMIT
        assert h.metric("pixel_auth_limited_total", surface="api") == 2


async def test_wrong_server_keys_on_events_get_429(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(auth_failures=LIMIT)) as h:
        wrong = {"authorization": f"Bearer {WRONG_KEY}"}
        for _ in range(LIMIT):
            assert (await h.client.post("/e", json={"name": "a"}, headers=wrong)).status_code == 401
        answer = await h.client.post("/e", json={"name": "a"}, headers=wrong)
        assert answer.status_code == 429
        assert answer.headers["retry-after"]
        # a browser's events (no Authorization) are never held up
        assert (await h.client.post("/e", json={"name": "a"})).json()["accepted"] == 1
        assert h.metric("pixel_auth_failures_total", surface="events") == LIMIT


async def test_wrong_dashboard_keys_get_429(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(auth_failures=LIMIT)) as h:
        statuses: list[int] = []
        for _ in range(LIMIT + 1):
            page = await h.client.get("/dashboard/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            answer = await h.client.post(
                "/dashboard/login",
                content=f"key=wrong-key-{len(statuses)}&csrf={csrf[1]}",
                headers={
                    "origin": "http://testserver",
                    "content-type": "application/x-www-form-urlencoded",
                },
            )
            statuses.append(answer.status_code)
        assert statuses == [401] * LIMIT + [429]
        assert answer.headers["retry-after"]
        assert "Too many wrong keys" in answer.text
        assert "wrong-key" not in answer.text  # the key is never echoed
        assert h.metric("pixel_auth_limited_total", surface="dashboard") == 1


async def test_wrong_metrics_tokens_get_429(make_settings: Callable[..., Settings]) -> None:
    token = "metrics-token-0123456789"
    async with running(make_settings(auth_failures=LIMIT, metrics_token=token)) as h:
        wrong = {"authorization": "Bearer metrics-token-wrong-wrong"}
        for _ in range(LIMIT):
            assert (await h.client.get("/metrics", headers=wrong)).status_code == 401
        assert (await h.client.get("/metrics", headers=wrong)).status_code == 429
        async with elsewhere(h) as other:
            right = {"authorization": f"Bearer {token}"}
            assert (await other.get("/metrics", headers=right)).status_code == 200
