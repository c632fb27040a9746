"""The signed redirect: valid links, every way a link can be bad, and hostile targets."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pixel_server.config import Settings
from pixel_server.keys import Keyring
from pixel_server.signing import REDIRECT_SALT, TokenSigner

from conftest import SECRET, Harness, running
from test_urls import ALLOWLIST_HOSTILE, HOSTILE

pytestmark = pytest.mark.both_stores


def assert_refused(response_status: int, headers: object, status: int) -> None:
    assert response_status == status
    assert "location" not in headers  # type: ignore[operator]


async def test_valid_link_redirects_with_contract_headers(harness: Harness) -> None:
    """A valid token answers 302 to its target with no-store and no-referrer."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/sale?x=1", "cid": "spring"})
    response = await harness.client.get(f"/r/{token}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/sale?x=1"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_click_is_recorded_with_target_and_ids(harness: Harness) -> None:
    """A click stores kind 'click', the target as url, and the signed ids."""
    payload = {"u": "https://shop.example/", "cid": "spring", "uid": "r-1", "utm_source": "nl"}
    await harness.client.get(f"/r/{harness.rt.link_tokens.dumps(payload)}")
    [hit] = await harness.hits()
    assert (hit["kind"], hit["url"], hit["cid"], hit["uid"], hit["utm_source"]) == (
        "click",
        "https://shop.example/",
        "spring",
        "r-1",
        "nl",
    )


async def test_head_redirects_too(harness: Harness) -> None:
    """HEAD /r/<token> answers the same 302 (link checkers use HEAD)."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/"})
    response = await harness.client.head(f"/r/{token}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/"


async def test_query_parameters_never_change_the_target(harness: Harness) -> None:
    """Parameters appended to a link neither re-point it nor add ids to the click."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/", "cid": "c"})
    response = await harness.client.get(
        f"/r/{token}?url=https://evil.example/&u=https://evil.example/&next=//evil.example&cid=x"
    )
    assert response.headers["location"] == "https://shop.example/"
    [hit] = await harness.hits()
    assert hit["cid"] == "c"


async def test_signed_utm_values_are_appended_when_asked(harness: Harness) -> None:
    """With the append flag, signed UTM values join the target's query (existing keys win)."""
    payload = {
        "u": "https://shop.example/p?utm_medium=keep",
        "utm_source": "nl",
        "utm_medium": "email",
        "a": 1,
    }
    response = await harness.client.get(f"/r/{harness.rt.link_tokens.dumps(payload)}")
    assert response.headers["location"] == "https://shop.example/p?utm_medium=keep&utm_source=nl"


async def test_utm_values_are_not_appended_by_default(harness: Harness) -> None:
    """Without the append flag the target is exactly what was signed."""
    payload = {"u": "https://shop.example/p", "utm_source": "nl"}
    response = await harness.client.get(f"/r/{harness.rt.link_tokens.dumps(payload)}")
    assert response.headers["location"] == "https://shop.example/p"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("xx" if not t.endswith("xx") else "yy"),
        lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:],
        lambda t: t + "%00",
        lambda t: t + "==",
        lambda t: t.replace("k1.", "k9.", 1),
        lambda t: "k1." + t.split(".", 1)[1].split(".")[0] + ".",
        lambda t: "",
        lambda t: "a" * 3000,
    ],
)
async def test_tampered_token_gets_400_and_no_location(harness: Harness, mutate: object) -> None:
    """Any change to a token answers 4xx without a Location header."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/", "cid": "c"})
    assert callable(mutate)
    response = await harness.client.get(f"/r/{mutate(token)}")
    assert 400 <= response.status_code < 500
    assert "location" not in response.headers
    assert await harness.hits() == []


async def test_pixel_token_is_not_a_link(harness: Harness) -> None:
    """A token signed with the pixel salt is refused by /r/: wrong salt, no redirect."""
    token = harness.rt.pixel_tokens.dumps({"u": "https://shop.example/", "cid": "c"})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 400)


async def test_token_signed_with_another_secret_is_refused(harness: Harness) -> None:
    """A token with our key id but another secret fails verification."""
    other = Keyring("k1", {"k1": "another-secret-0123456789abcdef"})
    token = TokenSigner(other, REDIRECT_SALT).dumps({"u": "https://shop.example/"})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 400)


async def test_expired_link_is_410_without_location(harness: Harness) -> None:
    """A link past its signed expiry answers 410 Gone and no Location."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/", "x": int(time.time()) - 1})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 410)
    assert harness.metric("pixel_tokens_invalid_total", token="link", reason="expired") == 1


async def test_unexpired_link_redirects(harness: Harness) -> None:
    """A link with a future expiry still works."""
    token = harness.rt.link_tokens.dumps({"u": "https://shop.example/", "x": int(time.time()) + 60})
    response = await harness.client.get(f"/r/{token}")
    assert response.status_code == 302


async def test_rotated_key_still_verifies_old_links(make_settings: Callable[..., Settings]) -> None:
    """After rotation, links signed with the old key (now verify-only) still redirect."""
    old = TokenSigner(Keyring("k1", {"k1": SECRET}), REDIRECT_SALT)
    old_token = old.dumps({"u": "https://shop.example/old"})
    settings = make_settings(
        secret_key="brand-new-secret-0123456789abcdef", key_id="k2", verify_keys=f"k1:{SECRET}"
    )
    async with running(settings) as h:
        new_token = h.rt.link_tokens.dumps({"u": "https://shop.example/new"})
        assert new_token.startswith("k2.")
        assert (await h.client.get(f"/r/{old_token}")).headers["location"].endswith("/old")
        assert (await h.client.get(f"/r/{new_token}")).headers["location"].endswith("/new")


async def test_retired_key_no_longer_verifies(make_settings: Callable[..., Settings]) -> None:
    """Once a key is removed from the verify list, its links are refused."""
    old_token = TokenSigner(Keyring("k1", {"k1": SECRET}), REDIRECT_SALT).dumps(
        {"u": "https://shop.example/"}
    )
    settings = make_settings(secret_key="brand-new-secret-0123456789abcdef", key_id="k2")
    async with running(settings) as h:
        response = await h.client.get(f"/r/{old_token}")
        assert_refused(response.status_code, response.headers, 400)
        assert h.metric("pixel_tokens_invalid_total", token="link", reason="unknown_key") == 1


# a lone surrogate cannot be encoded into a token at all, so it never reaches /r/
SIGNABLE_HOSTILE = [(target, reason) for target, reason in HOSTILE if reason != "surrogate"]


@pytest.mark.parametrize(("target", "reason"), SIGNABLE_HOSTILE)
async def test_hostile_target_inside_a_valid_token_never_redirects(
    harness: Harness, target: str, reason: str
) -> None:
    """A validly signed token carrying a hostile target answers 403 with no Location."""
    token = harness.rt.link_tokens.dumps({"u": target})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 403)
    assert reason


@pytest.mark.parametrize(("target", "reason"), ALLOWLIST_HOSTILE)
async def test_allowlist_is_enforced_at_redirect_time(
    make_settings: Callable[..., Settings], target: str, reason: str
) -> None:
    """With PIXEL_REDIRECT_HOSTS set, a signed target outside it is refused at click time."""
    async with running(make_settings(redirect_hosts="example.com")) as h:
        response = await h.client.get(f"/r/{h.rt.link_tokens.dumps({'u': target})}")
        assert_refused(response.status_code, response.headers, 403)
        assert reason


async def test_non_canonical_signed_target_is_refused(harness: Harness) -> None:
    """A signed target that is not in canonical form (signed by hand) is refused."""
    token = harness.rt.link_tokens.dumps({"u": "HTTPS://Shop.Example/"})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 403)
    assert harness.metric("pixel_redirect_targets_refused_total", reason="not_canonical") == 1


async def test_token_without_target_is_400(harness: Harness) -> None:
    """A validly signed token with no target (e.g. a pixel payload) does not redirect."""
    token = harness.rt.link_tokens.dumps({"cid": "c"})
    response = await harness.client.get(f"/r/{token}")
    assert_refused(response.status_code, response.headers, 400)
