"""links.py: payload checks and minting many links with one check per distinct target."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from itsdangerous import URLSafeSerializer

from pixel_server import links
from pixel_server.config import Settings
from pixel_server.keys import Keyring
from pixel_server.legacy_tokens import LegacyTokens
from pixel_server.links import MAX_EXPIRES_S, LinkError, Minter, Spec, parse_expires
from pixel_server.signing import REDIRECT_SALT, TokenSigner
from pixel_server.urls import TargetPolicy, normalize_target


def test_each_distinct_target_is_checked_once(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Minting 900 links to 3 targets validates each target once, refusals included."""
    calls: list[str] = []

    def counting(url: str, policy: TargetPolicy) -> str:
        calls.append(url)
        return normalize_target(url, policy)

    monkeypatch.setattr(links, "normalize_target", counting)
    minter = Minter.for_links(make_settings())
    targets = ["https://a.example/", "https://B.example/", "javascript:alert(1)"]
    minted = {minter.mint(Spec({"uid": str(i)}), targets[i % 2]) for i in range(600)}
    for i in range(300):
        with pytest.raises(LinkError, match="scheme"):
            minter.mint(Spec({"uid": str(i)}), targets[2])
    assert sorted(calls) == sorted(targets)
    assert len(minted) == 600
    assert minter.changed == {"https://B.example/": "https://b.example/"}


def test_minted_links_verify_with_one_clock(make_settings: Callable[..., Settings]) -> None:
    """Every link of one Minter carries the same expiry, counted from its clock."""
    settings = make_settings()
    keys = Keyring.from_settings(settings)
    minter = Minter(
        TokenSigner(keys, REDIRECT_SALT), "https://t.example", TargetPolicy(), 2048, now=1_000_000
    )
    verify = TokenSigner(keys, REDIRECT_SALT)
    for uid in ("a", "b"):
        url = minter.mint(Spec({"uid": uid}, expires_s=60, append_utm=True), "https://a.example/")
        token = url.rsplit("/", 1)[1]
        assert verify.loads(token) == {
            "uid": uid,
            "u": "https://a.example/",
            "x": 1_000_060,
            "a": 1,
        }


@pytest.mark.parametrize(
    ("raw", "seconds"), [("1s", 1), ("90m", 5400), ("3650d", MAX_EXPIRES_S), ("521w", 315_100_800)]
)
def test_expiry_within_bounds_is_read_in_seconds(raw: str, seconds: int) -> None:
    """Durations above 0 and at most 3650 days are accepted."""
    assert parse_expires(raw) == seconds


@pytest.mark.parametrize("raw", ["0s", "0w", "3651d", "522w", "99999999999w", "1y", ""])
def test_expiry_out_of_bounds_is_refused(raw: str) -> None:
    """Zero, over ten years or not a duration: LinkError about expires."""
    with pytest.raises(LinkError) as caught:
        parse_expires(raw)
    assert caught.value.code == "bad_expires"


@pytest.mark.parametrize(
    "payload",
    [{}, {"uid": "r-1", "u": "https://a.example/", "x": 1_700_000_000, "a": 1}, {"n": "é" * 200}],
)
def test_tokens_itsdangerous_itself_signed_still_verify(
    make_settings: Callable[..., Settings], payload: dict[str, object]
) -> None:
    """A format-1 token as every earlier release minted it (itsdangerous' Serializer.dumps,
    prefixed with the key id) verifies; the kept legacy minting writes those same bytes."""
    keys = Keyring.from_settings(make_settings())
    signer = TokenSigner(keys, REDIRECT_SALT)
    reference = URLSafeSerializer(
        keys.secrets[keys.signing_id],
        salt=REDIRECT_SALT,
        signer_kwargs={"digest_method": hashlib.sha256},
    )
    old = f"{keys.signing_id}.{reference.dumps(payload)}"
    assert signer.loads(old) == payload
    assert LegacyTokens(keys.secrets, REDIRECT_SALT).dumps(keys.signing_id, payload) == old
    assert signer.loads(signer.dumps(payload)) == payload
