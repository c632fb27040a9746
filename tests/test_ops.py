"""Operations endpoints: /metrics open by default, or behind PIXEL_METRICS_TOKEN."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pixel_server.config import Settings

from conftest import Harness, running

pytestmark = pytest.mark.both_stores

METRICS_TOKEN = "metrics-token-0123456789"


async def test_metrics_are_open_without_a_token(harness: Harness) -> None:
    """With no PIXEL_METRICS_TOKEN, /metrics answers anyone (keep it local with the proxy)."""
    response = await harness.client.get("/metrics")
    assert response.status_code == 200
    assert "pixel_connections_refused_total" in response.text


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"],
)
async def test_metrics_want_the_token_once_one_is_set(
    make_settings: Callable[..., Settings], authorization: str | None
) -> None:
    """A missing or wrong bearer token gets 401 in the JSON error shape, and no metrics."""
    headers = {} if authorization is None else {"authorization": authorization}
    async with running(make_settings(metrics_token=METRICS_TOKEN)) as h:
        response = await h.client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "pixel_" not in response.text


async def test_metrics_answer_the_right_token(make_settings: Callable[..., Settings]) -> None:
    """The configured token, as a bearer token, gets the Prometheus text."""
    async with running(make_settings(metrics_token=METRICS_TOKEN)) as h:
        response = await h.client.get(
            "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
        )
        api = await h.client.get("/api/hits", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "pixel_hits_received_total" in response.text
    assert api.status_code == 401  # the metrics token is not an API token


def test_the_metrics_token_is_never_shown(make_settings: Callable[..., Settings]) -> None:
    """Like every secret, the token stays out of the settings' repr."""
    assert METRICS_TOKEN not in repr(make_settings(metrics_token=METRICS_TOKEN))
