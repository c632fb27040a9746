"""payload.py: what a token's keys mean; tokens minted by the previous release (format 1) still
verify and decode to the same hit, and today's minting signs the same payload (format 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pixel_server.config import Settings
from pixel_server.keys import Keyring
from pixel_server.links import Minter, Spec
from pixel_server.payload import (
    InvalidToken,
    build,
    check_expiry,
    hit_fields,
    read_target,
    redirect_location,
)
from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner
from pixel_server.urls import TargetPolicy

from conftest import running

NOW = 1_750_000_000  # the clock the tokens below were minted with
MAX_CHARS = 2048


@dataclass(frozen=True)
class Minted:
    """A token minted by 76fb7af (before payload.py) with conftest.SECRET (key id k1), and
    what that release's endpoints made of it at NOW."""

    link: bool
    token: str
    payload: dict[str, Any]
    location: str | None  # links: where the 302 went
    params: dict[str, str]  # the hit's fields (a click's url included)
    flags: list[str]
    spec: Spec | None = None  # how it was minted (None: signed by hand with TokenSigner.dumps)
    url: str | None = None  # the target as typed


MINTED = [
    Minted(
        link=True,
        token="k1..eJyrVkrOTFGyUiouKMrMS1fSUSoFc4t0DQ1MjEDcktz44vzSouRUoGheanlxTmpJSWoRVCY5MbcgMT"
        "M9D26AQnFiTipQMi-_BKTh8J68w-uT81NSFR7NaAbpAYpllJQUFFvp6xdn5BfopVYATchJ1Qdps6-wNQSqqVCyMjQ"
        "3NTc3NzMwMNBRSgRyawFCzjbs.dfInVEZUT9f1Nr9h5a3a1hzxw2RXMFDVhJo4QX9YatA",
        payload={
            "cid": "spring",
            "uid": "r-1042",
            "utm_source": "newsletter",
            "utm_campaign": "spring sale",
            "note": "ünïcode ☃",
            "u": "https://shop.example/sale?x=1",
            "x": 1757776000,
            "a": 1,
        },
        location="https://shop.example/sale?x=1&utm_source=newsletter&utm_campaign=spring+sale",
        params={
            "cid": "spring",
            "uid": "r-1042",
            "utm_source": "newsletter",
            "utm_campaign": "spring sale",
            "note": "ünïcode ☃",
            "url": "https://shop.example/sale?x=1&utm_source=newsletter&utm_campaign=spring+sale",
        },
        flags=[],
        spec=Spec(
            {
                "cid": "spring",
                "uid": "r-1042",
                "utm_source": "newsletter",
                "utm_campaign": "spring sale",
                "note": "ünïcode ☃",
            },
            90 * 86400,
            True,
        ),
        url="https://Shop.Example/sale?x=1",
    ),
    Minted(
        link=True,
        token="k1.eyJzaWQiOiJzLTkiLCJwbGFuIjoicHJvIiwidSI6Imh0dHBzOi8vc2hvcC5leGFtcGxlLyJ9."
        "ZLFNsEfZIiJ5K4pJGZkvIS5SZ7DdeCiWY2aTClYaRnE",
        payload={"sid": "s-9", "plan": "pro", "u": "https://shop.example/"},
        location="https://shop.example/",
        params={"sid": "s-9", "plan": "pro", "url": "https://shop.example/"},
        flags=[],
        spec=Spec({"sid": "s-9", "plan": "pro"}),
        url="https://shop.example/",
    ),
    Minted(
        link=True,
        token="k1..eJyrViotyY0vzi8tSk5VslJKjClJUtIBi-WmpmSW5gLFUnMTM3NAgkB2RklJQbGVvn5xRn6BXmpFYm"
        "5BTqp-gT1CvW12amoBUHGikpVhLQDsQB_0.xz_2tYgxLoJqS7LLRhH_UrmHctKnAvlzE2Mwz1GMqSI",
        payload={
            "utm_source": "a\tb",
            "utm_medium": "email",
            "u": "https://shop.example/p?utm_medium=keep",
            "a": 1,
        },
        # the raw value goes into the location, escaped; the stored field is cleaned
        location="https://shop.example/p?utm_medium=keep&utm_source=a%09b",
        params={
            "utm_source": "a\ufffdb",
            "utm_medium": "email",
            "url": "https://shop.example/p?utm_medium=keep&utm_source=a%09b",
        },
        flags=["control_chars"],
        spec=Spec({"utm_source": "a\tb", "utm_medium": "email"}, None, True),
        url="https://shop.example/p?utm_medium=keep",
    ),
    Minted(
        link=True,
        token="k1.eyJ1IjoiaHR0cHM6Ly9zaG9wLmV4YW1wbGUveCIsImEiOnRydWUsIm4iOjUsInoiOm51bGwsInV0bV9"
        "0ZXJtIjoidCJ9.-RmIouxHuKC2txbRHFJQl9PyjjczUI5Qxhp-VoCDMlU",
        payload={"u": "https://shop.example/x", "a": True, "n": 5, "z": None, "utm_term": "t"},
        location="https://shop.example/x?utm_term=t",
        params={"n": "5", "z": "null", "utm_term": "t", "url": "https://shop.example/x?utm_term=t"},
        flags=[],
    ),
    Minted(
        link=False,
        token="k1..eJyrVkrOTFGyUiouKMrMS1fSUSoFc4t0DQ1MjEDcktz45MTcgsTM9DxkZRVKVobmpgZmBiYWBga1AP"
        "e2FKs.Y0Uf9YwpI3PpeNLbmrTpA96vVthbQ2BOklasyIGGJFQ",
        payload={"cid": "spring", "uid": "r-1042", "utm_campaign": "spring", "x": 1750604800},
        location=None,
        params={"cid": "spring", "uid": "r-1042", "utm_campaign": "spring"},
        flags=[],
        spec=Spec({"cid": "spring", "uid": "r-1042", "utm_campaign": "spring"}, 7 * 86400),
    ),
    Minted(
        link=False,
        token="k1.e30.WCTxnuoUnPcGqKPSpcvoR8NZHmTqu86EiZdNqxPNgc0",
        payload={},
        location=None,
        params={},
        flags=[],
        spec=Spec(),
    ),
]
IDS = [f"{'link' if m.link else 'pixel'}-{i}" for i, m in enumerate(MINTED)]


@pytest.fixture
def keys(make_settings: Callable[..., Settings]) -> Keyring:
    ring = Keyring.from_settings(make_settings())
    assert ring.signing_id == "k1"
    return ring


@pytest.mark.parametrize("minted", MINTED, ids=IDS)
def test_previous_release_tokens_decode_to_the_same_hit(keys: Keyring, minted: Minted) -> None:
    """Each token verifies to the same payload and reads as the same location and fields."""
    signer = TokenSigner(keys, REDIRECT_SALT if minted.link else PIXEL_SALT)
    payload = signer.loads(minted.token)
    assert payload == minted.payload
    check_expiry(payload, now=NOW)
    location = None
    if minted.link:
        location = redirect_location(payload, read_target(payload, now=NOW))
    params, flags = hit_fields(payload, MAX_CHARS, location)
    assert (location, params, sorted(flags)) == (minted.location, minted.params, minted.flags)


@pytest.mark.parametrize(
    "minted",
    [m for m in MINTED if m.spec is not None],
    ids=[i for i, m in zip(IDS, MINTED, strict=True) if m.spec is not None],
)
def test_minting_signs_the_previous_release_payload(keys: Keyring, minted: Minted) -> None:
    """Minting the same spec at the same clock signs the very payload 76fb7af signed (keys
    in the same order), now as a format-2 token (docs/tokens.md)."""
    assert minted.spec is not None
    if minted.link:
        signer, policy, prefix = TokenSigner(keys, REDIRECT_SALT), TargetPolicy(), "/r/"
    else:
        signer, policy, prefix = TokenSigner(keys, PIXEL_SALT), None, "/p/"
    minter = Minter(signer, "https://px.example", policy, 2048, now=NOW)
    url = minter.mint(minted.spec, minted.url)
    token = url.removeprefix(f"https://px.example{prefix}").removesuffix(".gif")
    assert token[:4] in ("k1.-", "k1._")
    payload = signer.loads(token)
    assert (payload, list(payload)) == (minted.payload, list(minted.payload))
    assert len(token) < len(minted.token)


async def test_previous_release_tokens_through_the_endpoints(
    make_settings: Callable[..., Settings],
) -> None:
    """Served for real: unexpired links redirect to the same location and record the same
    fields, the unexpired pixel records its open, and the expired ones (their expiry is in
    2025) are refused as expired."""
    async with running(make_settings()) as h:
        for minted in MINTED:
            expired = "x" in minted.payload
            if minted.link:
                response = await h.client.get(f"/r/{minted.token}")
                assert response.status_code == (410 if expired else 302)
                assert response.headers.get("location") == (None if expired else minted.location)
            else:
                response = await h.client.get(f"/p/{minted.token}.gif")
                assert response.status_code == 200
        stored = await h.hits()
        assert h.metric("pixel_tokens_invalid_total", token="link", reason="expired") == 1
        assert h.metric("pixel_tokens_invalid_total", token="pixel", reason="expired") == 1
    served = [m for m in MINTED if "x" not in m.payload]
    columns = ("cid", "uid", "sid", "url", "utm_source", "utm_medium", "utm_term")
    expected = []
    for m in served:
        extra = {k: v for k, v in m.params.items() if k not in columns}
        hit: dict[str, Any] = {"kind": "click" if m.link else "open", "flags": m.flags}
        hit |= {c: m.params.get(c) for c in columns}
        expected.append((hit, extra or None))
    got = [
        ({k: row[k] for k in ("kind", "flags", *columns)}, row["params"] or None)
        for row in reversed(stored)  # the API lists newest first
    ]
    assert got == expected


def test_build_puts_fields_first_then_target_expiry_and_append_flag() -> None:
    """The key order (and a=1) are part of the bytes signed; no key is added when unset."""
    assert list(build({"cid": "c", "n": "1"}, target="t", expires=9, append_utm=True).items()) == [
        ("cid", "c"),
        ("n", "1"),
        ("u", "t"),
        ("x", 9),
        ("a", 1),
    ]
    assert build({"cid": "c"}) == {"cid": "c"}


def test_expiry_is_enforced() -> None:
    """Past its signed expiry a payload is refused as expired; before it, it passes."""
    check_expiry({"x": 1_000}, now=1_000)
    with pytest.raises(InvalidToken, match="expired"):
        check_expiry({"x": 1_000}, now=1_001)
    with pytest.raises(InvalidToken, match="expired"):
        read_target({"u": "https://a.example/", "x": 1_000}, now=1_001)


@pytest.mark.parametrize(
    "payload",
    [
        {"u": "https://a.example/", "x": "tomorrow"},  # an expiry that is not a number
        {"u": "https://a.example/", "x": [1]},
        {"cid": "c"},  # a link with no target (a pixel's payload signed as a link)
        {"u": ["https://a.example/"]},
        {"u": None},
    ],
)
def test_malformed_link_payload_is_a_bad_payload(payload: dict[str, Any]) -> None:
    """Never ignored or guessed at: InvalidToken("bad_payload")."""
    with pytest.raises(InvalidToken) as info:
        read_target(payload, now=0)
    assert info.value.reason == "bad_payload"


def test_control_keys_are_not_hit_fields() -> None:
    """u, x and a steer the token and are never recorded; a click's url is its location."""
    payload = {"u": "https://a.example/", "x": 5, "a": 1, "cid": "c", "url": "forged"}
    assert hit_fields(payload, MAX_CHARS) == ({"cid": "c", "url": "forged"}, set())
    assert hit_fields(payload, MAX_CHARS, "https://a.example/")[0] == {
        "cid": "c",
        "url": "https://a.example/",
    }
