"""``POST /e`` in process, on SQLite and on PostgreSQL: every body format, the per-index
answer, dedup within and across batches, every rule and limit, CORS, and a store that cannot
take the batch (503, nothing stored, the retry stores each event once)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pixel_server.apikeys import SCOPES, new_key
from pixel_server.config import Settings

from conftest import Harness, run_cli, running, store_locked, stored_rows, until

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
    response = await post(harness, batch, headers={"user-agent": UA})
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
    assert (ip, browser, dnt) == ("203.0.113.0", "Firefox", 0)  # anonymised, parsed


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
    (event(seq=0), "bad_seq"),
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
    (event(ts=1_790_000_000_000), "server_only"),
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
    assert response.headers["access-control-expose-headers"] == "retry-after"
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


async def make_key(h: Harness, *scopes: str) -> str:
    text, key = new_key("test", scopes, now_ms=int(time.time() * 1000))
    assert h.rt.store is not None
    await h.rt.store.add_api_key(key)
    return text


def bearer(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


async def test_a_server_call_may_say_who_the_client_was_and_when(harness: Harness) -> None:
    """With an ingest key, an event's ip (anonymised), ua (parsed) and a past ts are stored
    as given; the request's own address and user agent are not used."""
    key = await make_key(harness, "ingest")
    when = int(time.time() * 1000) - 3 * 3_600_000
    batch = [
        event(
            "purchase_completed",
            eid="o-1",
            ts=when,
            ip="198.51.100.23",
            ua=UA,
            params={"order_id": "o-1", "total_value": 42.5},
        ),
        event("refund", eid="o-2", ts=_iso(when)),
    ]
    response = await post(harness, batch, headers={**bearer(key), "user-agent": "curl/8"})
    assert statuses(response) == ["accepted", "accepted"]
    rows = stored_rows(harness.rt.settings, "SELECT eid, ts, ip, browser FROM hits ORDER BY id")
    assert rows[0] == ("o-1", when, "198.51.100.0", "Firefox")
    assert rows[1][:2] == ("o-2", when)
    assert rows[1][2:] == ("203.0.113.0", "curl")  # no ip or ua given: the request's


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (event(ts=1), "too_old"),
        (event(ts=int(time.time() * 1000) - 73 * 3_600_000), "too_old"),
        (event(ts=int(time.time() * 1000) + 3_600_000), "in_future"),
        (event(ts="2026-12-01T10:00:00"), "bad_ts"),  # no offset: which time zone?
        (event(ts="yesterday"), "bad_ts"),
        (event(ts=1.5e12), "bad_ts"),
        (event(ip="198.51.100.1:443"), "bad_ip"),
        (event(ip="fe80::1%eth0"), "bad_ip"),
        (event(ip="<script>"), "bad_ip"),
        (event(ua=7), "bad_value"),
        ({"name": "no_eid"}, "missing_eid"),
    ],
)
async def test_a_server_calls_event_breaking_a_rule_is_rejected(
    harness: Harness, bad: dict[str, Any], reason: str
) -> None:
    """A server call's events need an eid; ts lies within PIXEL_EVENTS_MAX_AGE (72 h) and at
    most 5 minutes ahead; ip is one plain address."""
    key = await make_key(harness, "ingest")
    item = {"eid": "x", **bad} if reason != "missing_eid" else bad
    response = await post(harness, [item], headers=bearer(key))
    [result] = response.json()["results"]
    assert (result["status"], result["reason"]) == ("rejected", reason)


async def test_a_browser_call_may_not_say_who_or_when(harness: Harness) -> None:
    """Without a key, ts, ip and ua are refused (server_only): a page cannot backdate an
    event or pick the address stored for it."""
    told: list[tuple[str, object]] = [("ts", 1_700_000_000_000), ("ip", "192.0.2.1"), ("ua", "x")]
    for member, value in told:
        response = await post(harness, [{**event(eid=member), member: value}])
        [result] = response.json()["results"]
        assert (result["status"], result["reason"]) == ("rejected", "server_only")
    assert stored_rows(harness.rt.settings) == []


async def test_keys_are_checked_for_their_scope_and_revocation(harness: Harness) -> None:
    """/e takes an ingest or admin key; a read key is 403; a wrong, malformed or revoked key
    is 401; the read API takes read or admin keys and refuses an ingest key."""
    ingest, read, admin = [await make_key(harness, scope) for scope in SCOPES]
    assert statuses(await post(harness, [event(eid="i")], headers=bearer(ingest)))
    assert statuses(await post(harness, [event(eid="a")], headers=bearer(admin)))
    refused = await post(harness, [event(eid="r")], headers=bearer(read))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
    wrong = ingest[:-4] + ("AAAA" if not ingest.endswith("AAAA") else "BBBB")
    for header in (
        bearer(wrong),
        bearer("pxk_nope"),
        {"authorization": "Basic abc"},
        {"authorization": ingest},
    ):
        response = await post(harness, [event(eid="w")], headers=header)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == 'Bearer realm="pixel_server"'
    for key, status in ((read, 200), (admin, 200), (ingest, 403)):
        response = await harness.client.get("/api/hits", headers=bearer(key))
        assert response.status_code == status, response.text
    assert harness.rt.store is not None
    ingest_id = ingest.split("_")[1]
    assert await harness.rt.store.revoke_api_key(ingest_id, int(time.time() * 1000))

    async def refused_now() -> bool:
        response = await post(harness, [event(eid="late")], headers=bearer(ingest))
        return bool(response.status_code == 401)

    await until(refused_now, "the revoked key refused (within REFRESH_S)")
    # until the cache refreshes (up to 5 s) the key still worked: "late" at most once
    assert stored_rows(harness.rt.settings) in ([("i",), ("a",)], [("i",), ("a",), ("late",)])


SCHEMAS = {
    "events": {
        "purchase_completed": {
            "required": {"order_id": "string", "total_value": "number"},
            "additional": False,
        }
    }
}


@pytest.mark.parametrize("mode", ["reject", "flag"])
async def test_events_are_checked_against_the_registry(
    make_settings: Callable[..., Settings], tmp_path: Path, mode: str
) -> None:
    """With PIXEL_EVENT_SCHEMAS, an event that breaks its schema is rejected with the reason
    (violations: reject) or stored flagged schema_violation (flag); an unknown name likewise
    per unknown_events; each counted per reason in /metrics."""
    path = tmp_path / "schemas.json"
    path.write_text(json.dumps({**SCHEMAS, "violations": mode, "unknown_events": mode}))
    async with running(make_settings(event_schemas=str(path))) as h:
        good = event("purchase_completed", eid="g", params={"order_id": "1", "total_value": 9})
        wrong = event("purchase_completed", eid="w", params={"order_id": 1, "total_value": 9})
        unknown = event("made_up", eid="u")
        response = await post(h, [good, wrong, unknown])
        results = response.json()["results"]
        assert results[0] == {"index": 0, "status": "accepted"}
        if mode == "reject":
            assert [r["reason"] for r in results[1:]] == ["schema_wrong_type", "unknown_event"]
            assert stored_rows(h.rt.settings) == [("g",)]
            assert h.metric("pixel_events_total", outcome="rejected", reason="unknown_event") == 1
        else:
            assert [r.get("flags") for r in results[1:]] == [
                ["schema_violation"],
                ["unknown_event"],
            ]
            rows = stored_rows(h.rt.settings, "SELECT eid, flags FROM hits ORDER BY id")
            assert rows == [("g", None), ("w", "schema_violation"), ("u", "unknown_event")]
            assert h.metric("pixel_events_flagged_total", reason="schema_violation") == 1
        metrics = (await h.client.get("/metrics")).text
        assert "pixel_events_total" in metrics


def test_a_bad_registry_file_stops_the_server_with_one_line(tmp_path: Path) -> None:
    """serve with a broken PIXEL_EVENT_SCHEMAS: one Error line naming it, exit 2."""
    path = tmp_path / "schemas.json"
    path.write_text('{"events": {"p": {"required": {"a": "text"}}}}')
    result = run_cli("serve", env={"PIXEL_EVENT_SCHEMAS": str(path)}, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: PIXEL_EVENT_SCHEMAS")
    assert "p.required.a is one of string, number, integer, boolean" in line
