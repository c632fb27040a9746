"""`POST /api/links`: signed links in bulk behind the API token, in the API's error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixel_server.config import Settings
from pixel_server.links_api import MAX_BODY_BYTES, MAX_LINKS

from conftest import Harness, running

pytestmark = pytest.mark.both_stores

BASE = "https://t.example.com"


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Harness]:
    async with running(make_settings(public_url=BASE)) as h:
        yield h


async def post(h: Harness, body: Any, **kwargs: Any) -> httpx.Response:
    return await h.client.post("/api/links", json=body, headers=h.auth, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert isinstance(error["message"], str)


async def test_links_come_back_in_order_and_each_redirects(api: Harness) -> None:
    """Each item gets a signed link, in request order; each one redirects and records ids."""
    items = [
        {
            "url": "https://shop.example/sale",
            "cid": "spring",
            "uid": f"r-{i}",
            "utm_source": "nl",
            "fields": {"list": "vip"},
            "expires": "90d",
            "append_utm": True,
        }
        for i in range(3)
    ]
    response = await post(api, items)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == 0
    assert [link["target"] for link in body["links"]] == ["https://shop.example/sale"] * 3
    for link in body["links"]:
        assert link["link"].startswith(f"{BASE}/r/k1.")
        redirect = await api.client.get(link["link"].removeprefix(BASE))
        assert redirect.headers["location"] == "https://shop.example/sale?utm_source=nl"
    hits = await api.hits()
    assert sorted((h["uid"], h["cid"], h["params"]["list"]) for h in hits) == [
        (f"r-{i}", "spring", "vip") for i in range(3)
    ]


async def test_bad_items_get_an_error_in_their_place(api: Harness) -> None:
    """An item that cannot be signed gets an error in the API's shape at its index; the
    others are signed, and ``errors`` counts the failures."""
    good = {"url": "https://shop.example/"}
    items: list[Any] = [
        good,
        {"url": "javascript:alert(1)"},
        {"url": "https://shop.example/", "expires": "0s"},
        {"url": "https://shop.example/", "cid": "a", "fields": {"cid": "b"}},
        {"url": "https://shop.example/", "fields": {"u": "https://evil.example/"}},
        {"url": "https://shop.example/", "expire": "90d"},
        {"url": "https://shop.example/", "expires": 90},
        {"url": "https://shop.example/", "cid": 7},
        {"url": "https://shop.example/", "append_utm": "yes"},
        {"uid": "no-url"},
        "https://shop.example/",
        good,
    ]
    response = await post(api, items)
    assert response.status_code == 200
    body = response.json()
    codes = [link.get("error", {}).get("code") for link in body["links"]]
    assert codes == [
        None,
        "bad_url",
        "bad_expires",
        "bad_field",
        "bad_field",
        "bad_item",
        "bad_expires",
        "bad_field",
        "bad_item",
        "bad_url",
        "bad_item",
        None,
    ]
    assert body["errors"] == 10
    for link in body["links"]:
        if "error" in link:
            assert link["error"]["status"] == 400
            assert set(link["error"]) == {"status", "code", "message"}
    assert "javascript" not in json.dumps(body["links"][0])


async def test_target_is_answered_in_its_canonical_form(api: Harness) -> None:
    """``target`` is the URL as signed, which may differ from the one sent."""
    response = await post(api, [{"url": "https://SHOP.example/a"}])
    assert response.json()["links"][0]["target"] == "https://shop.example/a"


async def test_empty_array_gives_no_links(api: Harness) -> None:
    """An empty array is a valid request for no links."""
    response = await post(api, [])
    assert response.json() == {"links": [], "errors": 0}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"url": "https://shop.example/"}',
        b'[{"url": "https://shop.example/", "cid": "a", "cid": "b"}]',
        b"[" * 100_000,
        b"\xff\xfe[]",
        b"",
    ],
    ids=["not-json", "object", "duplicate-key", "deep-nesting", "not-utf8", "empty"],
)
async def test_a_body_that_is_not_an_array_of_items_is_a_400(api: Harness, body: bytes) -> None:
    """Malformed JSON, a non-array, a key given twice, deep nesting: 400 bad_json."""
    response = await api.client.post("/api/links", content=body, headers=api.auth)
    assert_error(response, 400, "bad_json")


async def test_more_than_the_item_limit_is_a_413(api: Harness) -> None:
    """More than MAX_LINKS items: 413 too_many_links, nothing signed."""
    response = await post(api, [{"url": "https://shop.example/"}] * (MAX_LINKS + 1))
    assert_error(response, 413, "too_many_links")


async def test_a_declared_body_over_the_size_limit_is_a_413(api: Harness) -> None:
    """A Content-Length over MAX_BODY_BYTES: 413 body_too_large, before reading it."""
    headers = {**api.auth, "content-length": str(MAX_BODY_BYTES + 1)}
    response = await api.client.post("/api/links", content=b"[]", headers=headers)
    assert_error(response, 413, "body_too_large")


async def test_a_streamed_body_over_the_size_limit_is_a_413(api: Harness) -> None:
    """A chunked body (no Content-Length) is cut off at MAX_BODY_BYTES: 413 body_too_large."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b" " * 65536
        yield b"]"

    response = await api.client.post("/api/links", content=chunks(), headers=api.auth)
    assert_error(response, 413, "body_too_large")


async def test_links_need_a_valid_token(api: Harness) -> None:
    """No token or a wrong one: 401 in the API's error shape, nothing signed."""
    response = await api.client.post("/api/links", json=[{"url": "https://shop.example/"}])
    assert_error(response, 401, "unauthorized")
    response = await api.client.post(
        "/api/links", json=[], headers={"authorization": "Bearer wrong"}
    )
    assert_error(response, 401, "unauthorized")


async def test_links_need_an_admin_key_without_api_tokens(
    make_settings: Callable[..., Settings],
) -> None:
    """With PIXEL_API_TOKENS unset only an admin key opens it: a 401 that says how to make one."""
    async with running(make_settings(api_tokens="")) as h:
        response = await post(h, [])
        assert_error(response, 401, "unauthorized")
        assert "--scope admin" in response.json()["error"]["message"]


async def test_get_on_links_is_a_405_in_the_error_shape(api: Harness) -> None:
    """Only POST: GET /api/links is 405 method_not_allowed."""
    response = await api.client.get("/api/links", headers=api.auth)
    assert_error(response, 405, "method_not_allowed")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
item_keys = st.sampled_from(
    ["url", "cid", "uid", "sid", "utm_source", "fields", "expires", "append_utm", "u", "x"]
)
items = st.lists(
    st.dictionaries(item_keys, json_values | st.just("https://shop.example/"), max_size=6)
    | json_values,
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=items)
async def test_any_json_body_gets_an_answer_below_500(api: Harness, body: Any) -> None:
    """Whatever JSON is sent, the answer is 200 with one entry per item, never a 5xx."""
    response = await post(api, body)
    assert response.status_code == 200, response.text
    assert len(response.json()["links"]) == len(body)


async def test_wildcard_host_without_public_url_is_a_409(
    make_settings: Callable[..., Settings],
) -> None:
    """A server on 0.0.0.0 without PIXEL_PUBLIC_URL would mint dead links: 409 no_public_url."""
    async with running(make_settings(host="0.0.0.0")) as h:
        assert_error(await post(h, [{"url": "https://shop.example/"}]), 409, "no_public_url")
