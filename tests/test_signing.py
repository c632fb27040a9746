"""Signed tokens: round trips, tampering, salts, key ids and canonical spelling (expiry and
the rest of the payload: test_payload.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.keys import Keyring
from pixel_server.signing import PIXEL_SALT, REDIRECT_SALT, InvalidToken, TokenSigner

KEYS = Keyring("k2", {"k2": "new-secret-0123456789abcdef", "k1": "old-secret-0123456789abcdef"})
LINKS = TokenSigner(KEYS, REDIRECT_SALT)
PIXELS = TokenSigner(KEYS, PIXEL_SALT)
PAYLOAD = {"u": "https://shop.example/sale", "cid": "spring", "uid": "r-1042"}


def reason(signer: TokenSigner, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        signer.loads(token)
    return info.value.reason


def test_token_round_trips_and_names_its_key() -> None:
    """dumps/loads returns the payload; the token starts with the signing key id."""
    token = LINKS.dumps(PAYLOAD)
    assert token.startswith("k2.")
    assert LINKS.loads(token) == PAYLOAD


def test_token_uses_only_url_safe_characters() -> None:
    """Tokens fit in a URL path segment unescaped."""
    token = LINKS.dumps({**PAYLOAD, "note": "ünïcode & spaces / slashes"})
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_every_single_character_change_is_refused() -> None:
    """Changing any one character of a token (except the signature's spare bits) never verifies."""
    token = LINKS.dumps(PAYLOAD)
    last = len(token) - 1
    for i, ch in enumerate(token):
        for replacement in "AQw0-_.":
            if replacement == ch:
                continue
            forged = token[:i] + replacement + token[i + 1 :]
            try:
                payload = LINKS.loads(forged)
            except InvalidToken:
                continue
            # base64's final character carries 2 spare bits: only that position may alias
            assert i == last, f"forged token verified at position {i}"
            assert payload == PAYLOAD


def test_pixel_and_link_salts_do_not_mix() -> None:
    """A link token is not a pixel token and vice versa."""
    assert reason(PIXELS, LINKS.dumps(PAYLOAD)) == "bad_signature"
    assert reason(LINKS, PIXELS.dumps(PAYLOAD)) == "bad_signature"


def test_old_key_verifies_by_its_id() -> None:
    """A token signed with a verify-only key still loads (rotation)."""
    old = TokenSigner(Keyring("k1", {"k1": "old-secret-0123456789abcdef"}), REDIRECT_SALT)
    assert LINKS.loads(old.dumps(PAYLOAD)) == PAYLOAD


def test_unknown_key_id_is_refused_without_trying_keys() -> None:
    """A key id we do not have is refused as unknown_key."""
    token = LINKS.dumps(PAYLOAD)
    assert reason(LINKS, "k9" + token[2:]) == "unknown_key"


def test_non_object_payload_is_refused() -> None:
    """A signed list or string is not a token of ours."""
    assert reason(LINKS, LINKS.dumps(["u"])) == "bad_payload"  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", ["==", "é", " ", "%41", "\x00"])
def test_other_spellings_of_a_token_are_refused(suffix: str) -> None:
    """Padding, non-ASCII or escaped junk is malformed: one link has one spelling."""
    assert reason(LINKS, LINKS.dumps(PAYLOAD) + suffix) == "malformed"


def test_overlong_token_is_refused_before_decoding() -> None:
    """Tokens over the byte limit are refused as too_long."""
    assert (
        reason(TokenSigner(KEYS, REDIRECT_SALT, max_bytes=64), LINKS.dumps(PAYLOAD)) == "too_long"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_verifies(text: str) -> None:
    """Arbitrary strings raise InvalidToken and nothing else."""
    with pytest.raises(InvalidToken):
        LINKS.loads(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(min_value=0))
def test_random_byte_splices_never_verify(junk: bytes, where: int) -> None:
    """Splicing random URL-safe characters into a real token never verifies."""
    token = LINKS.dumps(PAYLOAD)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    insert = "".join(alphabet[b % len(alphabet)] for b in junk)
    at = where % len(token)
    forged = token[:at] + insert + token[at:]
    with pytest.raises(InvalidToken):
        LINKS.loads(forged)
