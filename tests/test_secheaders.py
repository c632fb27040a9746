"""Security headers (secheaders.py): every HTML answer of the service — found by asking
every kind of page — allows no script and no framing, and says no-sniff and a referrer
policy; HSTS is on every answer when configured, and on none otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pixel_server.config import Settings
from pixel_server.responses import GIF_HEADERS, REDIRECT_HEADERS

from conftest import API_TOKEN, Harness, running

HSTS = 31_536_000


async def html_answers(h: Harness) -> dict[str, httpx.Response]:
    """One answer of each HTML page the service has."""
    tokens = h.rt.link_tokens
    expired = tokens.dumps({"u": "https://shop.example/", "x": int(time.time()) - 60})
    trap = tokens.dumps({"u": "https://shop.example/", "t": 1})
    answers = {
        "refused link": await h.client.get("/r/not-a-token"),
        "expired link": await h.client.get(f"/r/{expired}"),
        "trap link": await h.client.get(f"/r/{trap}"),
        "dashboard login": await h.client.get("/dashboard/login"),
        "dashboard form expired": await h.client.post(
            "/dashboard/login",
            content="key=x&csrf=forged",
            headers={
                "origin": "http://testserver",
                "content-type": "application/x-www-form-urlencoded",
            },
        ),
    }
    for name, answer in answers.items():
        assert answer.headers["content-type"].startswith("text/html"), name
    return answers


def other_answers(h: Harness) -> list[Any]:
    return [
        h.client.get("/p.gif?cid=a"),
        h.client.get(f"/r/{h.rt.link_tokens.dumps({'u': 'https://shop.example/'})}"),
        h.client.get("/api/hits", headers={"authorization": f"Bearer {API_TOKEN}"}),
        h.client.get("/healthz"),
        h.client.get("/nowhere"),
        h.client.post("/e", json={"name": "buy"}),
    ]


@pytest.mark.parametrize("hsts", [0, HSTS])
async def test_every_html_answer_carries_the_security_headers(
    make_settings: Callable[..., Settings], hsts: int
) -> None:
    async with running(make_settings(hsts_seconds=hsts)) as h:
        answers = await html_answers(h)
        others = [await request for request in other_answers(h)]
    for name, answer in answers.items():
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp, name
        assert "frame-ancestors 'none'" in csp, name
        assert "script-src" not in csp, name  # default-src 'none': no script of any kind
        assert "unsafe-inline" not in csp, name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] in ("no-referrer", "same-origin"), name
    for answer in [*answers.values(), *others]:
        expected = f"max-age={HSTS}; includeSubDomains" if hsts else None
        assert answer.headers.get("strict-transport-security") == expected, answer.url


async def test_the_hot_path_answers_are_unchanged_without_hsts(harness: Harness) -> None:
    """The GIF's and the redirect's headers are their constants: nothing added to them."""
    gif = await harness.client.get("/p.gif")
    assert [(k.encode(), v.encode()) for k, v in gif.headers.items()] == GIF_HEADERS
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/"})
    redirect = await harness.client.get(f"/r/{token}")
    assert len(redirect.headers) == len(REDIRECT_HEADERS) + 1  # and the location
