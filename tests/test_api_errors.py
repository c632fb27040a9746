"""The read API never answers 5xx or plain text for bad input, and never redirects: every
error is the one JSON shape (a hypothesis property over every parameter of every endpoint)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Mount, Route, Router

from pixel_server.app import create_app
from pixel_server.config import Settings
from pixel_server.hits import Hit
from pixel_server.query import EQUALITY_FILTERS, CursorError, parse_cursor

from conftest import API_TOKEN, Harness

pytestmark = pytest.mark.both_stores

ENDPOINTS = ("/api/hits", "/api/hits.csv", "/api/hits.ndjson")
PARAMS = ("since", "until", "limit", "cursor", *EQUALITY_FILTERS)
ERROR_CODES = {"bad_filter", "bad_cursor", "not_found", "method_not_allowed", "unauthorized"}
EVIL = {"host": "evil.example", "x-forwarded-host": "evil.example", "x-forwarded-proto": "https"}
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


def assert_error_shape(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The body is exactly {"error": {"status", "code", "message"}}, status matching."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"status", "code", "message"}
    assert error["status"] == response.status_code
    assert isinstance(error["message"], str)
    assert error["message"]
    if status is not None:
        assert response.status_code == status
    return error


async def get(h: Harness, path: str, query: str, headers: dict[str, str]) -> httpx.Response:
    """GET with exactly this (already percent-encoded) query: httpx keeps it as it is."""
    return await h.client.get(f"{path}?{query}" if query else path, headers=headers)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("since=99999999999999999999", "bad_filter"),
        ("until=99999999999999999999", "bad_filter"),
        ("since=99999999999w", "bad_filter"),
        ("since=" + "9" * 5000 + "s", "bad_filter"),
        ("since=10000-01-01", "bad_filter"),
        ("limit=%C2%B2", "bad_filter"),
        ("limit=%D9%A3", "bad_filter"),  # ARABIC-INDIC DIGIT THREE, which int() reads as 3
        ("limit=99999999999999999999999", "bad_filter"),
        ("limit=" + "9" * 5000, "bad_filter"),
        ("cursor=%C2%B2", "bad_cursor"),
        ("cursor=%D9%A3", "bad_cursor"),
        ("cursor=99999999999999999999", "bad_cursor"),
        ("cursor=9223372036854775808", "bad_cursor"),  # 2**63: past SQLite's integers
        ("cursor=-1", "bad_cursor"),
        ("cursor=0", "bad_cursor"),
        ("cursor=1.5", "bad_cursor"),
        ("cursor=MTIz", "bad_cursor"),  # forged: base64 of "123"
        ("cursor=12%00", "bad_cursor"),
    ],
)
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_out_of_range_and_non_ascii_values_are_a_400(
    harness: Harness, path: str, query: str, code: str
) -> None:
    """Huge numbers, non-ASCII digits and forged cursors answer 400 in the error shape on every
    endpoint (they used to raise OverflowError/ValueError: a plain-text 500, or a cut 200)."""
    await harness.client.get("/p.gif?cid=x")
    error = assert_error_shape(await get(harness, path, query, AUTH), 400)
    assert error["code"] == code
    assert len(error["message"]) < 400  # a huge value is not echoed whole


def test_every_cursor_the_store_cannot_use_is_a_cursor_error() -> None:
    """parse_cursor is the one gate for cursors: in range or CursorError (a QueryError)."""
    assert parse_cursor(None) is None
    assert parse_cursor("") is None
    assert parse_cursor("1793491200000_1") == (1_793_491_200_000, 1)
    assert parse_cursor("9" * 18 + "_" + "9" * 18) == (10**18 - 1, 10**18 - 1)
    bad = ("1", "0_0", "1_0", "1_" + "9" * 19, "_1", "1_", "1__1", "-1_1", "+1_1", " 1_1")
    for raw in (*bad, "1_1 ", "\u00b2_1", "1_\u0663", "1e3_1", "x" * 100):
        with pytest.raises(CursorError):
            parse_cursor(raw)


async def test_a_cursor_from_next_cursor_still_pages(harness: Harness) -> None:
    """The cursor a page hands out is accepted as the next page's cursor."""
    assert harness.rt.store is not None
    await harness.rt.store.write([Hit(ts=1_793_491_200_000 + i, kind="view") for i in range(3)])
    first = await harness.client.get("/api/hits?limit=2", headers=harness.auth)
    cursor = first.json()["next_cursor"]
    rest = await harness.client.get(f"/api/hits?limit=2&cursor={cursor}", headers=harness.auth)
    assert rest.status_code == 200
    assert len(first.json()["hits"]) + len(rest.json()["hits"]) == 3


# --- no redirects built from request headers ------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/hits/", "/api/hits.csv/", "/api/hits.ndjson/", "/api/", "/api/nothing/", "/api"],
)
@pytest.mark.parametrize("auth", [{}, AUTH], ids=["anonymous", "token"])
async def test_api_near_misses_are_a_404_without_location(
    harness: Harness, path: str, auth: dict[str, str]
) -> None:
    """/api/hits/ is a 404 in the error shape, not a 307 to http://<Host header>/api/hits."""
    response = await harness.client.get(path, headers={**EVIL, **auth})
    assert_error_shape(response, 404)
    assert "location" not in response.headers


def routers(router: Router) -> list[Router]:
    """``router`` and every router mounted under it."""
    found = [router]
    for route in router.routes:
        if isinstance(route, Mount):
            assert isinstance(route.app, Router), f"{route.path}: cannot see its router"
            found += routers(route.app)
    return found


def paths(routes: list[BaseRoute], prefix: str = "") -> list[str]:
    """A concrete request path for every route, mounted ones included."""
    found: list[str] = []
    for route in routes:
        if isinstance(route, Mount):
            found += paths(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            found.append(prefix + route.path.replace("{token}", "k1.abc"))
    return found


def test_no_router_in_the_app_redirects_slashes(make_settings: Callable[..., Settings]) -> None:
    """Starlette's trailing-slash 307 is off in the app's router and in every Mount's router."""
    app = create_app(make_settings())
    found = routers(app.starlette.router)
    assert len(found) >= 2  # the app and /api
    assert [r for r in found if r.redirect_slashes] == []


# the dashboard's own redirects (to its login, and back after it): fixed paths, never built
# from the request
DASHBOARD_REDIRECTS = ("/dashboard", "/dashboard/login")


async def test_no_route_redirects_for_any_slash_variant(harness: Harness) -> None:
    """Every route, with a slash added, removed or doubled and a hostile Host, answers without a
    Location header (the only redirects are signed /r/ tokens, and k1.abc is not one), but
    for the dashboard's fixed paths to its login page and back."""
    route_paths = paths(harness.app.starlette.router.routes)
    assert len(route_paths) >= 9  # three pixel routes, three ops routes, three API routes
    for path in route_paths:
        for variant in (path + "/", path.rstrip("/"), "/" + path, path.replace("/", "//", 2)):
            for method in ("GET", "HEAD", "POST"):
                response = await harness.client.request(method, variant, headers={**EVIL, **AUTH})
                assert response.status_code != 307
                location = response.headers.get("location")
                assert location is None or location in DASHBOARD_REDIRECTS, (method, variant)


# --- the property ------------------------------------------------------------------------------


def encoded(text: str) -> str:
    """Percent-encoded UTF-8 (lone surrogates too, as invalid UTF-8): what a server delivers."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=2000).map(str),  # plausible limits and cursors
    st.integers(min_value=10**12, max_value=10**13 - 1).map(str),  # epoch milliseconds
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n),
    st.text(alphabet="0123456789\u00b2\u0663\uff11\u2070.,-+ e", min_size=1, max_size=25),
)
VALUES = st.one_of(
    NUMBERS,
    st.builds(lambda n, unit: f"{n}{unit}", NUMBERS, st.sampled_from("smhdwy\u00b5")),
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H%M%SZ")),
    st.sampled_from(["view", "open", "click", "event", "c0", "nl", "", "2h", "20261101"]),
    st.sampled_from(["10000-01-01", "2026-W45", "now", "MTIz", "1.5", "-1"]),
    st.text(max_size=40),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
TIMES = st.sampled_from(["2h", "7d", "20261101", "2026-11-01T08:00:00Z", "1793491200000", ""])
IDS = st.sampled_from(["c0", "c1", "nl", "e3", ""])
VALID = {
    "since": TIMES,
    "until": TIMES,
    "limit": st.integers(min_value=1, max_value=1000).map(str),
    "cursor": st.integers(min_value=1, max_value=40).map(str),
    "kind": st.sampled_from(["view", "open", "click", "event"]),
}


def known_pair(name: str) -> st.SearchStrategy[tuple[str, str]]:
    """A real parameter, two times in three with a value it accepts (so that many requests
    get past validation and read the store), else with anything."""
    valid = VALID.get(name, IDS)
    return st.tuples(st.just(name), st.one_of(valid, valid, VALUES))


PAIRS = st.lists(
    st.one_of(*[st.sampled_from(PARAMS).flatmap(known_pair)] * 4, st.tuples(st.text(), VALUES)),
    max_size=4,
)
PATHS = st.sampled_from([*ENDPOINTS * 4, "/api/hits/", "/api/hits.json", "/api/x"])
RAW_TAILS = st.one_of(st.just(b""), st.just(b""), st.binary(max_size=30))
TOKENS = st.sampled_from([True, True, True, False])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS, pairs=PAIRS, raw_tail=RAW_TAILS, with_token=TOKENS)
def check_api_never_fails(
    h: Harness,
    loop: asyncio.AbstractEventLoop,
    path: str,
    pairs: list[tuple[str, str]],
    raw_tail: bytes,
    with_token: bool,
) -> None:
    query = "&".join(f"{encoded(name)}={encoded(value)}" for name, value in pairs)
    if raw_tail:  # raw bytes as they would arrive percent-encoded, even if not UTF-8
        query += "&" + quote(raw_tail, safe="=&")
    future = asyncio.run_coroutine_threadsafe(get(h, path, query, AUTH if with_token else {}), loop)
    response = future.result(timeout=60)
    assert response.status_code < 500, (path, query, response.text[:300])
    if response.status_code != 200:
        assert assert_error_shape(response)["code"] in ERROR_CODES
    elif path == "/api/hits":
        assert set(response.json()) == {"hits", "next_cursor"}
    elif path.endswith(".csv"):
        assert next(csv.reader(io.StringIO(response.text)))[:2] == ["id", "time"]
    else:
        assert all(json.loads(line) for line in response.text.splitlines())


async def test_no_query_on_any_endpoint_answers_5xx_or_another_error_shape(
    harness: Harness,
) -> None:
    """For any parameters (known or not, repeated, huge, non-ASCII, invalid UTF-8) on every
    /api endpoint, with or without a token: status < 500, and every error is the one shape."""
    for i in range(30):
        await harness.client.get(f"/p.gif?cid=c{i % 3}&utm_source=nl&eid=e{i}")
    loop = asyncio.get_running_loop()
    # hypothesis drives the app from a worker thread; the app stays on this test's loop
    await asyncio.to_thread(check_api_never_fails, harness, loop)
