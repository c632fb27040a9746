"""The read API: tokens, filters, pagination, CSV/NDJSON exports and one error shape."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest

from pixel_server.apikeys import new_key
from pixel_server.config import Settings

from conftest import Harness, running, store_locked, until

pytestmark = pytest.mark.both_stores

ERROR_KEYS = {"status", "code", "message"}


def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.parametrize("header", [None, "Bearer x", "Bearer  ", "Basic dGVzdA=="])
async def test_without_configured_tokens_only_keys_open_the_api(
    make_settings: Callable[..., Settings], header: str | None
) -> None:
    """No PIXEL_API_TOKENS: the API is open to API keys only, so any other request is a 401
    that says how to make a key with the scope it needs, counted as a wrong secret if it
    sent one; a key opens it."""
    async with running(make_settings(api_tokens="")) as h:
        headers = {} if header is None else {"authorization": header}
        for path, scope in (("/api/hits", "read"), ("/api/revocations", "admin")):
            response = await h.client.get(path, headers=headers)
            assert_error(response, 401, "unauthorized")
            message = response.json()["error"]["message"]
            assert f"`pixel-server keys create --scope {scope}`" in message
            assert "PIXEL_API_TOKENS is not set" in message
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert h.metric("pixel_auth_failures_total", surface="api") == (header is not None) * 2
        assert h.rt.store is not None
        secret, key = new_key("reader", ["read"], 0)
        await h.rt.store.add_api_key(key)
        ok = await h.client.get("/api/hits", headers={"authorization": f"Bearer {secret}"})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Basic dGVzdC1hcGktdG9rZW4=", "test-api-token", "Bearer  "],
)
async def test_missing_or_wrong_token_is_401(harness: Harness, header: str | None) -> None:
    """Without the right bearer token the API answers 401 with WWW-Authenticate."""
    headers = {} if header is None else {"authorization": header}
    for path in ("/api/hits", "/api/hits.csv", "/api/hits.ndjson"):
        response = await harness.client.get(path, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_any_configured_token_is_accepted(make_settings: Callable[..., Settings]) -> None:
    """With several tokens configured, each one works."""
    async with running(make_settings(api_tokens="one-token,two-token")) as h:
        for token in ("one-token", "two-token"):
            response = await h.client.get("/api/hits", headers={"authorization": f"Bearer {token}"})
            assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "kind=nope",
        "limit=0",
        "limit=5000",
        "limit=abc",
        "since=yesterday",
        "colour=red",
    ],
)
async def test_bad_filter_is_400_in_the_error_shape(harness: Harness, query: str) -> None:
    """Invalid or unknown filters answer 400 bad_filter."""
    response = await harness.client.get(f"/api/hits?{query}", headers=harness.auth)
    assert_error(response, 400, "bad_filter")


async def test_unknown_api_path_and_method_use_the_error_shape(harness: Harness) -> None:
    """404 and 405 under /api are JSON errors too."""
    assert_error(await harness.client.get("/api/nothing", headers=harness.auth), 404, "not_found")
    response = await harness.client.post("/api/hits", headers=harness.auth)
    assert_error(response, 405, "method_not_allowed")


async def test_filters_select_matching_hits(harness: Harness) -> None:
    """cid, kind and utm filters narrow the result."""
    for query in ("cid=a&utm_source=nl", "cid=a&utm_source=ads", "cid=b&utm_source=nl"):
        await harness.client.get(f"/p.gif?{query}")
    assert len(await harness.hits(cid="a")) == 2
    assert len(await harness.hits(cid="a", utm_source="nl")) == 1
    assert len(await harness.hits(kind="view")) == 3
    assert await harness.hits(kind="click") == []


async def test_time_filters_accept_iso_epoch_and_durations(harness: Harness) -> None:
    """since/until take ISO 8601, epoch milliseconds or durations ago."""
    await harness.client.get("/p.gif?cid=t")
    assert len(await harness.hits(since="1h")) == 1
    assert await harness.hits(until="1h") == []
    assert len(await harness.hits(since="2020-01-01T00:00:00Z")) == 1
    assert await harness.hits(since="4102444800000") == []  # 2100-01-01


async def test_cursor_pages_through_every_hit_once(harness: Harness) -> None:
    """Following next_cursor visits every hit exactly once, newest first."""
    for i in range(23):
        await harness.client.get(f"/p.gif?cid=page&eid=e{i}")
    seen: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        body = (await harness.client.get("/api/hits", params=params, headers=harness.auth)).json()
        seen += [hit["eid"] for hit in body["hits"]]
        cursor = body["next_cursor"]
    assert seen == [f"e{i}" for i in reversed(range(23))]


async def test_csv_export_streams_all_rows_with_header(harness: Harness) -> None:
    """hits.csv has a header row and one row per hit."""
    for i in range(5):
        await harness.client.get(f"/p.gif?cid=csv&eid=c{i}")
    response = await harness.client.get("/api/hits.csv", headers=harness.auth)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["eid"] for row in rows] == [f"c{i}" for i in reversed(range(5))]
    assert rows[0]["kind"] == "view"


@pytest.mark.parametrize("payload", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)"])
async def test_csv_export_neutralises_formulas(harness: Harness, payload: str) -> None:
    """A cell a spreadsheet would run as a formula is prefixed with a quote."""
    await harness.client.get(f"/p.gif?cid={quote(payload)}", headers={"user-agent": payload})
    response = await harness.client.get("/api/hits.csv", headers=harness.auth)
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    for column in ("cid", "ua"):
        assert row[column] == "'" + payload


async def test_ndjson_export_is_one_object_per_line(harness: Harness) -> None:
    """hits.ndjson lines parse as JSON hits; limit caps the export."""
    for i in range(4):
        await harness.client.get(f"/p.gif?cid=nd&eid=n{i}")
    response = await harness.client.get("/api/hits.ndjson?limit=3", headers=harness.auth)
    lines = response.text.splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["eid"] for line in lines] == ["n3", "n2", "n1"]


async def test_health_and_readiness(harness: Harness) -> None:
    """healthz is 200; readyz is 200 with the queue depth when the store is writable."""
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_metrics_expose_the_counters(harness: Harness) -> None:
    """/metrics is Prometheus text with received/stored counters, queue depth and batches."""
    await harness.client.get("/p.gif?cid=m")
    text = (await harness.client.get("/metrics")).text
    assert 'pixel_hits_received_total{kind="view"} 1.0' in text
    assert 'pixel_hits_stored_total{kind="view"} 1.0' in text
    for name in ("pixel_queue_depth", "pixel_batch_size_bucket", "pixel_commit_seconds_bucket"):
        assert name in text


@pytest.mark.parametrize("cell", ["\tcmd", "\rcmd", "\ncmd", "=1", "+1", "-1", "@x"])
def test_neutralise_prefixes_every_formula_start(cell: str) -> None:
    """Tab, CR and LF starts are defused too, not only = + - @."""
    from pixel_server.export import neutralise

    assert neutralise(cell) == "'" + cell
    assert neutralise("plain") == "plain"
    assert neutralise(5) == 5


async def test_locked_store_degrades_readiness_but_pixels_keep_answering(
    make_settings: Callable[..., Settings],
) -> None:
    """While another program holds an exclusive lock on the store, pixels still answer quickly
    (their hits go to the spill journal), /readyz says degraded, and every hit is in the
    store once the lock is gone."""
    import asyncio
    import time

    settings = make_settings(ack_timeout=1.0, busy_timeout=0.2)
    async with running(settings) as h:
        with store_locked(settings):
            # the lock is released only after these answers, so every answer is one given
            # while the store is locked (the 30 s deadline turns pixels waiting for the store,
            # a deadlock here, into a failure)
            started = time.monotonic()
            responses = await asyncio.wait_for(
                asyncio.gather(*[h.client.get(f"/p.gif?cid=lock&eid=l{i}") for i in range(20)]),
                timeout=30,
            )
            assert all(r.status_code == 200 and r.content[:6] == b"GIF89a" for r in responses)
            # tolerance: the journal answers after busy_timeout (0.2 s) + one fsync, ~0.3 s on
            # a busy 2-core machine; 2 s is twice the ack timeout, so it fails a pixel held
            # past its own release (due at 1-1.25 s), not a slow machine
            assert time.monotonic() - started < 2.0
            ready = await h.client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "degraded"

        async def recovered() -> bool:
            return (await h.client.get("/readyz")).status_code == 200

        await until(recovered, "/readyz did not recover after the lock")
        assert len(await h.hits(cid="lock", limit="100")) == 20
        assert h.metric("pixel_hits_spilled_total") == 20
        assert h.metric("pixel_hits_replayed_total") == 20
