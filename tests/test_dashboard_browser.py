"""The dashboard in real headless Chromium against a real ``pixel-server serve``: a read key
made with ``pixel-server keys create`` logs in through the form, the chart is drawn with
data, no console error or CSP violation, stored XSS payloads (a UTM value, a referrer, a
user agent) appear as text and never run, the session cookie is HttpOnly and
SameSite=Strict; a screenshot is saved as a test artifact (tests/artifacts/dashboard.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from browsertest import module_fixtures, wait_for
from conftest import API_TOKEN, ServerProcess, run_cli

browser, server, _site = module_fixtures("dashboard-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror=window.__xss=1>'
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/156.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def read_key(server: ServerProcess) -> str:
    made = run_cli(
        "keys", "create", "--scope", "read", "--name", "dashboard test",
        env={"PIXEL_DB": str(server.db)}, cwd=server.db.parent,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    found = re.search(r"pxk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", made.stdout)
    assert found is not None, made.stdout
    return found[0]


@pytest.fixture(scope="module")
def hits(server: ServerProcess) -> None:
    """Views of two campaigns from a person, one with the XSS payloads in its UTM value,
    its Referer and its User-Agent; stored before the page is opened."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for n in range(6):
            answer = client.get(
                "/p.gif",
                params={"cid": "spring" if n % 2 else "autumn", "uid": f"r-{n}",
                        "utm_source": "newsletter"},
                headers={"user-agent": CHROME},
            )  # fmt: skip
            assert answer.status_code == 200
        answer = client.get(
            "/p.gif",
            params={"cid": "spring", "utm_source": SCRIPT},
            headers={"user-agent": f"{CHROME} {IMG}", "referer": f"https://x.example/{IMG}"},
        )
        assert answer.status_code == 200

        def stored() -> bool:
            page = client.get(
                "/api/hits", params={"limit": 100}, headers={"authorization": f"Bearer {API_TOKEN}"}
            )
            return len(page.json()["hits"]) == 7

        wait_for(None, stored, "the hits stored")


def test_the_dashboard_in_chromium(
    browser: Browser, server: ServerProcess, read_key: str, hits: None
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1800})
    problems: list[str] = []

    def console(message: Any) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page = context.new_page()
    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        page.goto(f"{server.url}/dashboard", wait_until="load")
        assert page.url == f"{server.url}/dashboard/login"
        page.fill("#key", read_key)
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        assert page.url == f"{server.url}/dashboard", page.content()[-600:]
        assert page.locator("#overview").is_visible()
        points = page.locator("svg.chart circle.point, svg.chart rect.outlier")
        assert points.count() > 0
        assert page.locator("svg.chart polyline.series").get_attribute("points")
        overview = page.locator("#overview tbody th[scope=row]").all_inner_texts()
        assert {"spring", "autumn"} <= set(overview)
        assert page.evaluate("() => window.__xss") is None
        assert page.get_by_text(SCRIPT, exact=True).count() >= 1
        assert page.locator("#hits").get_by_text(IMG).count() >= 1
        assert page.locator("img[src=x]").count() == 0
        cookie = next(c for c in context.cookies() if c["name"] == "pixel_dashboard")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script sees it
        page.click("text=show smoothing")
        page.wait_for_load_state("load")
        assert "smooth=ema" in page.url
        assert page.locator("svg.chart polyline.smoothed").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
        assert problems == []
    finally:
        context.close()
