"""`POST /api/wrap`: an email wrapped for one recipient behind the API token, its links and
pixel honoured by the same server, every bad body answered in the API's error shape."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from pixel_server.config import Settings
from pixel_server.wrap_api import MAX_BODY_BYTES

from conftest import Harness, running, stored_rows

pytestmark = pytest.mark.both_stores

BASE = "https://t.example.com"
EMAIL = (
    '<html><body><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>'
    '<a href="mailto:x@shop.example">Mail</a></body></html>'
)


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    async with running(make_settings(public_url=BASE)) as h:
        yield h


async def post(h: Harness, body: Any, **kwargs: Any) -> httpx.Response:
    return await h.client.post("/api/wrap", json=body, headers=h.auth, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)


async def test_the_wrapped_email_is_tracked_by_the_server(api: Harness) -> None:
    body = {"html": EMAIL, "cid": "spring", "uid": "r-7", "fields": {"list": "vip"}}
    response = await post(api, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["links"] == 1
    assert answer["targets"] == ["https://shop.example/sale?a=1&b=2"]
    html = answer["html"]
    assert '<a href="mailto:x@shop.example">Mail</a>' in html
    link = re.search(r'href="(https://t\.example\.com/r/[^"]+)"', html)
    pixel = re.search(r'src="(https://t\.example\.com/p/[^"]+)"', html)
    assert link is not None
    assert pixel is not None
    click = await api.client.get(link.group(1).removeprefix(BASE))
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/sale?a=1&b=2"
    opened = await api.client.get(pixel.group(1).removeprefix(BASE))
    assert opened.status_code == 200
    settings = api.app.runtime.settings
    rows = stored_rows(settings, "SELECT kind, cid, uid, params FROM hits ORDER BY kind")
    assert [row[:3] for row in rows] == [("click", "spring", "r-7"), ("open", "spring", "r-7")]
    assert all('"list":"vip"' in (row[3] or "").replace(" ", "") for row in rows)


async def test_no_pixel_when_asked(api: Harness) -> None:
    response = await post(api, {"html": EMAIL, "pixel": False})
    assert response.status_code == 200
    assert "/p/" not in response.json()["html"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([EMAIL], "bad_json"),
        ({"cid": "x"}, "bad_item"),
        ({"html": 1}, "bad_item"),
        ({"html": EMAIL, "pixel": "yes"}, "bad_item"),
        ({"html": EMAIL, "url": "https://x.example/"}, "bad_item"),
        ({"html": EMAIL, "expires": "soon"}, "bad_expires"),
        ({"html": EMAIL, "fields": {"u": "x"}}, "bad_field"),
        ({"html": EMAIL, "cid": 5}, "bad_field"),
        ({"html": EMAIL, "leave": "x"}, "bad_item"),
        ({"html": EMAIL, "leave": [1]}, "bad_item"),
        ({"html": EMAIL, "leave": ["("]}, "bad_item"),
        ({"html": EMAIL, "leave": ["x"] * 21}, "bad_item"),
    ],
)
async def test_bad_bodies(api: Harness, body: Any, code: str) -> None:
    assert_error(await post(api, body), 400, code)


async def test_own_merge_tags_are_left_alone(api: Harness) -> None:
    own = '<a href="https://shop.example/u?id=%%RECIPIENT_ID%%">Prefs</a>'
    response = await post(api, {"html": f"<body>{own}</body>", "leave": [r"%%\w+%%"]})
    assert response.status_code == 200, response.text
    assert own in response.json()["html"]
    assert response.json()["links"] == 0


async def test_repeated_key_and_not_json(api: Harness) -> None:
    raw = b'{"html": "<a href=\\"https://x.example/\\">x</a>", "cid": "a", "cid": "b"}'
    response = await api.client.post("/api/wrap", content=raw, headers=api.auth)
    assert_error(response, 400, "bad_json")
    response = await api.client.post("/api/wrap", content=b"<html>", headers=api.auth)
    assert_error(response, 400, "bad_json")


async def test_a_refused_target_is_named(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(public_url=BASE, redirect_hosts="other.example")) as h:
        response = await post(h, {"html": EMAIL})
    assert_error(response, 400, "bad_url")
    assert "shop.example" in response.json()["error"]["message"]


async def test_too_large_and_no_token(api: Harness) -> None:
    big = {"html": "x" * (MAX_BODY_BYTES + 1)}
    assert_error(await post(api, big), 413, "body_too_large")
    response = await api.client.post("/api/wrap", json={"html": EMAIL})
    assert response.status_code in (401, 403)
