"""The dashboard through a real app on both stores: login with a read key (cookie flags,
CSRF, origin, a revoked key logs out), security headers on every answer, the figures equal
the API's (one definition), stored XSS shown as text, CSV of every table."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_campaigns import send_campaign

from pixel_server.apikeys import new_key
from pixel_server.config import Settings
from pixel_server.hits import Hit

from conftest import Harness, running

pytestmark = pytest.mark.both_stores

ORIGIN = {"origin": "http://testserver"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
XSS = ("<script>window.__xss=1</script>", '"><img src=x onerror=window.__xss=1>')
SPAN = {"since": "2d", "until": str(int(time.time() * 1000) + 3_600_000)}


async def add_key(h: Harness, scopes: list[str]) -> tuple[str, str]:
    text, key = new_key("dash", scopes, now_ms=int(time.time() * 1000))
    assert h.rt.store is not None
    await h.rt.store.add_api_key(key)
    return text, key.id


async def log_in(h: Harness, key: str) -> Any:
    page = await h.client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return await h.client.post(
        "/dashboard/login",
        content=f"key={key}&csrf={csrf[1]}",
        headers={**ORIGIN, **FORM},
    )


def cells(body: str, section: str) -> dict[str, dict[str, str]]:
    """{row key: {metric: value}} of a section's table (data-key, data-metric, data-value)."""
    part = body.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr><th scope=\"row\" data-key=\"([^\"]*)\">.*?</tr>", part):
        rows[html.unescape(row)] = {}
    for key, row in re.findall(r'<tr><th scope="row" data-key="([^"]*)">(.*?)</tr>', part):
        for metric, value in re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', row):
            rows[html.unescape(key)][html.unescape(metric)] = html.unescape(value)
    return rows


async def test_the_pages_need_a_session_and_carry_the_security_headers(
    harness: Harness,
) -> None:
    answer = await harness.client.get("/dashboard")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/login"
    for path in ("/dashboard", "/dashboard/login", "/dashboard/static/dashboard.css"):
        answer = await harness.client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # none at all: default-src 'none' forbids scripts
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
    assert (await harness.client.get("/dashboard/export.csv?table=hits")).status_code == 303


async def test_a_read_key_logs_in_with_a_strict_cookie_and_a_revoked_one_is_logged_out(
    harness: Harness,
) -> None:
    key, key_id = await add_key(harness, ["read"])
    answer = await log_in(harness, key)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "pixel_dashboard=" in cookie
    for flag in ("HttpOnly", "SameSite=strict", "Path=/dashboard"):
        assert flag.lower() in cookie.lower()
    assert key not in cookie  # the session names the key, never holds it
    page = await harness.client.get("/dashboard")
    assert page.status_code == 200
    assert '<section id="overview">' in page.text
    assert harness.rt.store is not None
    await harness.rt.store.revoke_api_key(key_id, int(time.time() * 1000))
    harness.rt.api_keys._loaded = -1e9  # the cache's refresh, without waiting REFRESH_S
    assert (await harness.client.get("/dashboard")).status_code == 303


@pytest.mark.parametrize(
    ("case", "status"),
    [("wrong key", 401), ("ingest key", 401), ("no csrf", 403), ("other origin", 403)],
)
async def test_a_bad_login_is_refused_without_echoing_the_key(
    harness: Harness, case: str, status: int
) -> None:
    ingest, _ = await add_key(harness, ["ingest"])
    page = await harness.client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    key = {"wrong key": "pxk_aaaaaaaaaaaa_" + "b" * 43, "ingest key": ingest}.get(case, ingest)
    body = f"key={key}&csrf={'' if case == 'no csrf' else csrf[1]}"
    origin = {"origin": "https://evil.example"} if case == "other origin" else ORIGIN
    answer = await harness.client.post("/dashboard/login", content=body, headers={**origin, **FORM})
    assert answer.status_code == status
    assert key not in answer.text
    assert "set-cookie" not in answer.headers or "pixel_dashboard=" not in answer.headers.get(
        "set-cookie", ""
    ).split(";")[0].replace("pixel_dashboard_csrf", "")
    assert (await harness.client.get("/dashboard")).status_code == 303


async def test_logout_needs_the_session_token(harness: Harness) -> None:
    key, _ = await add_key(harness, ["read"])
    await log_in(harness, key)
    page = await harness.client.get("/dashboard")
    forged = await harness.client.post(
        "/dashboard/logout", content="csrf=forged", headers={**ORIGIN, **FORM}
    )
    assert forged.status_code == 403
    assert (await harness.client.get("/dashboard")).status_code == 200
    csrf = re.search(
        r'action="/dashboard/logout"><input type="hidden" name="csrf" value="([^"]+)"', page.text
    )
    assert csrf is not None
    answer = await harness.client.post(
        "/dashboard/logout", content=f"csrf={csrf[1]}", headers={**ORIGIN, **FORM}
    )
    assert answer.status_code == 303
    assert (await harness.client.get("/dashboard")).status_code == 303


async def test_the_dashboard_shows_the_apis_figures_and_stored_xss_as_text(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with running(settings) as h:
        await send_campaign(h, settings)
        assert h.rt.store is not None
        now = int(time.time() * 1000)
        await h.rt.store.write(
            [
                Hit(ts=now, kind="view", cid="x<ss>", utm_source=XSS[0], referer=XSS[1],
                    ua=XSS[1], traffic="human", device="desktop"),
            ]
        )  # fmt: skip
        key, _ = await add_key(h, ["read"])
        await log_in(h, key)
        page = await h.client.get("/dashboard", params=SPAN)
        assert page.status_code == 200
        api = await h.client.get(
            "/api/stats",
            params={**SPAN, "group": "cid", "metrics": "views,opens,clicks,events,uniques,ctor"},
            headers=h.auth,
        )
        csv_page = await h.client.get("/dashboard/export.csv", params={**SPAN, "table": "overview"})
        csv_api = await h.client.get(
            "/api/stats.csv",
            params={**SPAN, "group": "cid", "table": "breakdown",
                    "metrics": "views,opens,clicks,events,uniques,ctor"},
            headers=h.auth,
        )  # fmt: skip
    body = page.text
    for payload in XSS:
        assert payload not in body
        assert html.escape(payload, quote=True) in body
    assert "<script" not in body.lower()
    assert " style=" not in body
    shown = cells(body, "overview")
    for row in api.json()["breakdown"]:
        figures = shown[row["cid"]]
        for metric in ("views", "opens", "clicks", "uniques"):
            assert figures[metric] == str(row[metric]), (row["cid"], metric)
    assert shown["spring"]["opens"] == "2"
    assert csv_page.status_code == 200
    assert csv_page.text == csv_api.text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in body
    assert 'id="hits"' in body


async def test_a_bad_view_is_a_page_with_the_error_not_a_500(harness: Harness) -> None:
    key, _ = await add_key(harness, ["read"])
    await log_in(harness, key)
    for params in ({"zone": "Mars/Base"}, {"metric": "<b>"}, {"interval": "fortnight"}):
        answer = await harness.client.get("/dashboard", params=params)
        assert answer.status_code == 400
        assert "<b>" not in answer.text
        assert 'role="alert"' in answer.text
    answer = await harness.client.get("/dashboard/export.csv", params={"table": "secrets"})
    assert answer.status_code == 400
