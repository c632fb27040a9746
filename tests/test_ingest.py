"""``POST /e`` in process, on SQLite and on PostgreSQL: every body format, the per-index
answer, dedup within and across batches, every rule and limit, CORS, and a store that cannot
take the batch (503, nothing stored, the retry stores each event once)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest

from pixel_server.config import Settings

from conftest import Harness, running, store_locked, stored_rows

pytestmark = pytest.mark.both_stores

ROWS = "SELECT event, eid, sid, uid, cid, url, seq, params, kind, method FROM hits ORDER BY id"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def event(name: str = "video_started", **members: Any) -> dict[str, Any]:
    return {"name": name, **members}


async def post(h: Harness, body: Any, content_type: str = "application/json", **kw: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type, **kw.pop("headers", {})}
    return await h.client.post("/e", content=data, headers=headers, **kw)


def statuses(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [result["status"] for result in response.json()["results"]]


async def test_a_batch_is_stored_and_answered_per_index(harness: Harness) -> None:
    """Each accepted event is a kind=event row with its name, ids, seq and typed params; the
    answer counts and lists every index."""
    params = {"video_id": "v1", "position": 12.5, "autoplay": False, "chapter": 3, "x": None}
    batch = [
        event(
            eid="e-1",
            sid="s1",
            uid="u1",
            cid="spring",
            url="https://shop.example/v",
            seq=1,
            params=params,
        ),
        event("add_to_cart", eid="e-2", seq=2),
    ]
    response = await post(harness, batch, headers={"user-agent": UA, "dnt": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": 0,
        "results": [{"index": 0, "status": "accepted"}, {"index": 1, "status": "accepted"}],
    }
    first, second = stored_rows(harness.rt.settings, ROWS)
    assert first[:7] == ("video_started", "e-1", "s1", "u1", "spring", "https://shop.example/v", 1)
    assert json.loads(first[7]) == params
    assert first[8:] == ("event", "POST")
    assert (*second[:2], second[6], second[7]) == ("add_to_cart", "e-2", 2, None)
    [(ip, browser, dnt)] = stored_rows(
        harness.rt.settings, "SELECT ip, browser, dnt FROM hits WHERE eid = 'e-1'"
    )
    assert (ip, browser, dnt) == ("203.0.113.0", "Firefox", 1)  # anonymised, parsed, DNT


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("application/json", lambda events: json.dumps(events)),
        ("application/json; charset=utf-8", lambda events: json.dumps(events)),
        ("application/x-ndjson", lambda events: "\n".join(map(json.dumps, events)) + "\n"),
        ("text/plain;charset=UTF-8", lambda events: json.dumps(events)),  # sendBeacon
        ("text/plain", lambda events: "\r\n".join(map(json.dumps, events))),
    ],
)
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
async def test_every_body_format_is_read(
    harness: Harness, content_type: str, encode: Callable[[Any], str], gzipped: bool
) -> None:
    """A JSON array, NDJSON and sendBeacon's text/plain (either), gzipped or not."""
    data = encode([event(eid="a"), event(eid="b")]).encode()
    headers = {"content-encoding": "gzip"} if gzipped else {}
    response = await post(
        harness, gzip.compress(data) if gzipped else data, content_type, headers=headers
    )
    assert statuses(response) == ["accepted", "accepted"]
    assert stored_rows(harness.rt.settings) == [("a",), ("b",)]


async def test_one_event_object_is_a_batch_of_one(harness: Harness) -> None:
    """A body that is one JSON object (not an array) is one event, in every format."""
    for number, content_type in enumerate(
        ["application/json", "text/plain", "application/x-ndjson"]
    ):
        response = await post(harness, event(eid=f"one-{number}"), content_type)
        assert statuses(response) == ["accepted"]
    assert len(stored_rows(harness.rt.settings)) == 3


async def test_a_retry_is_answered_duplicate_and_stored_once(harness: Harness) -> None:
    """The same eid again, in a later batch or twice in one, is a duplicate: the first
    stays, nothing is added; events without an eid are always new."""
    batch = [event(eid="x", seq=1), event(seq=2)]
    assert statuses(await post(harness, batch)) == ["accepted", "accepted"]
    again = [event(eid="x", seq=9), event(eid="y"), event(eid="y"), event(seq=2)]
    response = await post(harness, again)
    assert statuses(response) == ["duplicate", "accepted", "duplicate", "accepted"]
    assert response.json()["duplicates"] == 2
    rows = stored_rows(harness.rt.settings, "SELECT eid, seq FROM hits ORDER BY id")
    assert rows == [("x", 1), (None, 2), ("y", None), (None, 2)]
    assert harness.metric("pixel_events_total", outcome="duplicate", reason="") == 2
    assert harness.metric("pixel_events_total", outcome="accepted", reason="") == 4


async def test_an_event_eid_does_not_collide_with_a_pixel_eid(harness: Harness) -> None:
    """Dedup is per kind: a view that carries an eid cannot suppress an event with it."""
    assert (await harness.client.get("/p.gif?eid=shared")).status_code == 200
    assert statuses(await post(harness, [event(eid="shared")])) == ["accepted"]


BAD_EVENTS: list[tuple[Any, str]] = [
    (["not", "objects"], "not_an_object"),
    ({"eid": "no-name"}, "missing_name"),
    (event("VideoStarted"), "bad_name"),
    (event("video started"), "bad_name"),
    (event("1st"), "bad_name"),
    (event("a" * 65), "bad_name"),
    ({"name": 7}, "bad_name"),
    (event(eid=""), "bad_eid"),
    (event(eid="x" * 129), "bad_eid"),
    (event(eid="a\nb"), "bad_eid"),
    (event(eid=12), "bad_eid"),
    (event(sid=5), "bad_value"),
    (event(url=["https://x"]), "bad_value"),
    (event(seq=-1), "bad_seq"),
    (event(seq=2**31), "bad_seq"),
    (event(seq=1.5), "bad_seq"),
    (event(seq=True), "bad_seq"),
    (event(seq="3"), "bad_seq"),
    (event(params=[1, 2]), "bad_params"),
    (event(params={"nested": {"a": 1}}), "bad_params"),
    (event(params={"list": [1]}), "bad_params"),
    (event(params={"big": 2**53}), "bad_params"),
    (event(params={"": 1}), "bad_params"),
    (event(params={"k" * 65: 1}), "bad_params"),
    (event(params={f"p{i}": i for i in range(51)}), "bad_params"),
    (event(colour="red"), "unknown_field"),
    (event(ts=1_790_000_000_000), "unknown_field"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_EVENTS)
async def test_an_event_that_breaks_a_rule_is_rejected_with_its_reason(
    harness: Harness, bad: Any, reason: str
) -> None:
    """The bad event is rejected with a stable reason and a message; the good ones around
    it are stored."""
    items = bad if isinstance(bad, list) else [bad]
    response = await post(harness, [event(eid="before"), *items, event(eid="after")])
    body = response.json()
    assert statuses(response) == ["accepted", *["rejected"] * len(items), "accepted"]
    for result in body["results"][1:-1]:
        assert result["reason"] == reason
        assert result["message"]
    assert body["rejected"] == len(items)
    assert stored_rows(harness.rt.settings) == [("before",), ("after",)]
    assert harness.metric("pixel_events_total", outcome="rejected", reason=reason) == len(items)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'[{"name": "a", "name": "b"}]', "repeated_member"),
        (b'[{"name": "a", "params": {"k": 1, "k": 2}}]', "repeated_member"),
        (b'[{"name": "a", "params": {"k": 1e400}}]', "bad_params"),
    ],
)
async def test_json_that_python_would_read_loosely_is_rejected(
    harness: Harness, body: bytes, reason: str
) -> None:
    """A repeated member name (which would silently mean its last value) and a number beyond
    a double (which would become infinity) are rejected."""
    response = await post(harness, body)
    assert response.json()["results"][0]["reason"] == reason
    assert stored_rows(harness.rt.settings) == []


async def test_strings_are_stored_clean_and_flagged(harness: Harness) -> None:
    """Control characters and half surrogate pairs become U+FFFD, long values are cut, and the
    row says so in its flags, as for a pixel."""
    long = "x" * 3000
    body = b'[{"name": "a", "sid": "s\\u0007", "url": "' + long.encode() + b'", '
    body += b'"params": {"k": "\\ud800!"}}]'
    assert statuses(await post(harness, body)) == ["accepted"]
    [(sid, url, params, flags)] = stored_rows(
        harness.rt.settings, "SELECT sid, url, params, flags FROM hits"
    )
    assert sid == "s\ufffd"
    assert url == "x" * 2048
    assert json.loads(params) == {"k": "\ufffd!"}
    assert flags == "control_chars,invalid_utf8,value_truncated"


async def test_an_ndjson_line_that_is_not_json_is_that_events_rejection(
    harness: Harness,
) -> None:
    """In NDJSON each line stands alone: a broken line is rejected, the others stored."""
    body = b'{"name": "a", "eid": "1"}\n{"name": \n\n{"name": "c", "eid": "3"}\n'
    response = await post(harness, body, "application/x-ndjson")
    assert statuses(response) == ["accepted", "rejected", "accepted"]
    assert response.json()["results"][1]["reason"] == "bad_json"


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "code"),
    [
        (b"not json", "application/json", {}, 400, "bad_json"),
        (b"[1, 2", "application/json", {}, 400, "bad_json"),
        (b'"a string"', "application/json", {}, 400, "bad_json"),
        (b"[]", "application/json", {}, 400, "no_events"),
        (b"", "text/plain", {}, 400, "bad_json"),
        (b"\n\n", "application/x-ndjson", {}, 400, "no_events"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", {}, 400, "bad_json"),
        (b'[{"name": "caf\xe9"}]', "application/json", {}, 400, "bad_encoding"),
        (b"[]", "application/xml", {}, 415, "unsupported_media_type"),
        (b"[]", "multipart/form-data", {}, 415, "unsupported_media_type"),
        (b"[]", "application/json", {"content-encoding": "br"}, 415, "unsupported_encoding"),
        (b"[]", "application/json", {"content-encoding": "gzip"}, 400, "bad_gzip"),
        (
            gzip.compress(b"[]")[:-4],
            "application/json",
            {"content-encoding": "gzip"},
            400,
            "bad_gzip",
        ),
        (
            gzip.compress(b"[]") + b"junk",
            "application/json",
            {"content-encoding": "gzip"},
            400,
            "bad_gzip",
        ),
        (json.dumps([event()] * 501).encode(), "application/json", {}, 413, "too_many_events"),
        (b" " * (1 << 20) + b"[]", "application/json", {}, 413, "too_large"),
        (
            gzip.compress(b" " * (8 << 20)),
            "application/json",
            {"content-encoding": "gzip"},
            413,
            "too_large",
        ),
    ],
    ids=[
        "not-json",
        "cut-short",
        "a-string",
        "empty-array",
        "empty-body",
        "blank-ndjson",
        "deep-nesting",
        "latin-1",
        "xml",
        "form",
        "brotli",
        "not-gzip",
        "gzip-cut",
        "gzip-trailing",
        "too-many",
        "too-large",
        "gzip-bomb",
    ],
)
async def test_a_body_that_is_not_a_batch_is_refused_whole(
    harness: Harness,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Each is answered in the one JSON error shape, with nothing stored."""
    response = await post(harness, body, content_type, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["message"]
    assert stored_rows(harness.rt.settings) == []
    assert harness.metric("pixel_event_posts_total", status=str(status)) == 1


async def test_a_chunked_body_is_cut_off_at_the_limit(harness: Harness) -> None:
    """A body without Content-Length is counted as it arrives and refused past the limit."""

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    response = await harness.client.post(
        "/e", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


async def test_other_methods_get_405_with_allow(harness: Harness) -> None:
    """GET, PUT and DELETE are answered 405 with Allow and the JSON error."""
    for method in ("GET", "PUT", "DELETE"):
        response = await harness.client.request(method, "/e")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST, OPTIONS"
        assert response.json()["error"]["code"] == "method_not_allowed"


async def test_any_origin_may_post_by_default(harness: Harness) -> None:
    """With PIXEL_CORS_ORIGINS=* (the default) a page of any origin gets
    Access-Control-Allow-Origin: *, and a preflight is answered."""
    origin = {"origin": "https://blog.example"}
    response = await post(harness, [event()], headers=origin)
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = await harness.client.options(
        "/e", headers={**origin, "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204
    assert "content-length" not in preflight.headers
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in preflight.headers["access-control-allow-headers"]


async def test_only_the_configured_origins_may_post(
    make_settings: Callable[..., Settings],
) -> None:
    """With a list, an origin in it is echoed (with Vary: Origin); another is refused with
    403 and stores nothing, its preflight too; a call without Origin (a server) passes."""
    allowed = "https://shop.example"
    async with running(make_settings(cors_origins=f"{allowed}, http://localhost:3000")) as h:
        response = await post(h, [event(eid="ok")], headers={"origin": allowed})
        assert statuses(response) == ["accepted"]
        assert response.headers["access-control-allow-origin"] == allowed
        assert response.headers["vary"] == "origin"
        for origin in ("https://evil.example", "https://shop.example.evil", "null"):
            refused = await post(h, [event(eid=origin)], headers={"origin": origin})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "origin_not_allowed"
            assert "access-control-allow-origin" not in refused.headers
            preflight = await h.client.options("/e", headers={"origin": origin})
            assert preflight.status_code == 403
        assert statuses(await post(h, [event(eid="server")])) == ["accepted"]
        assert stored_rows(h.rt.settings) == [("ok",), ("server",)]


async def test_a_store_that_cannot_take_the_batch_answers_503_and_the_retry_stores_once(
    make_settings: Callable[..., Settings],
) -> None:
    """While another program holds the store's write lock: 503 with Retry-After and nothing
    stored; the same batch sent again afterwards is stored, each event once."""
    settings = make_settings(busy_timeout=0.2)
    async with running(settings) as h:
        batch = [event(eid="p-1", seq=1), event(eid="p-2", seq=2)]
        assert statuses(await post(h, batch[:1])) == ["accepted"]
        with store_locked(settings):
            response = await post(h, batch)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "store_unavailable"
        response = await post(h, batch)
        assert statuses(response) == ["duplicate", "accepted"]
        assert stored_rows(settings) == [("p-1",), ("p-2",)]
