"""Signed tokens: round trips, tampering, salts, key ids, canonical spelling, and format-1
tokens (what earlier releases sent) still verifying (expiry and the rest of the payload:
test_payload.py; lengths: test_token_length.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server import compact
from pixel_server.keys import Keyring
from pixel_server.legacy_tokens import LegacyTokens
from pixel_server.signing import (
    DEFLATED,
    PIXEL_SALT,
    PLAIN,
    REDIRECT_SALT,
    InvalidToken,
    TokenSigner,
    read_unverified,
)

KEYS = Keyring("k2", {"k2": "new-secret-0123456789abcdef", "k1": "old-secret-0123456789abcdef"})
LINKS = TokenSigner(KEYS, REDIRECT_SALT)
PIXELS = TokenSigner(KEYS, PIXEL_SALT)
OLD_LINKS = LegacyTokens(KEYS.secrets, REDIRECT_SALT)  # the minting of earlier releases
PAYLOAD = {"u": "https://shop.example/sale", "cid": "spring", "uid": "r-1042"}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# any JSON object: what a payload may hold (floats without NaN, which is not equal to itself)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["https://shop.example/sale?utm_source=newsletter", "spring", "email"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
KEY_NAMES = st.sampled_from(compact.KEYS) | st.text(max_size=20)
PAYLOADS = st.dictionaries(KEY_NAMES, JSON_VALUES, max_size=10)


def reason(signer: TokenSigner, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        signer.loads(token)
    return info.value.reason


def raw_bytes(token: str) -> tuple[str, bytes]:
    """A format-2 token's ``<kid>.<marker>`` and its decoded bytes (payload and tag)."""
    prefix, text = token[: token.index(".") + 2], token[token.index(".") + 2 :]
    return prefix, base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def spell(prefix: str, raw: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_token_round_trips_and_names_its_key() -> None:
    """dumps/loads returns the payload; the token starts with the signing key id and a
    format-2 marker."""
    token = LINKS.dumps(PAYLOAD)
    assert token[:4] in ("k2.-", "k2._")
    assert LINKS.loads(token) == PAYLOAD


@settings(max_examples=300, deadline=None)
@given(PAYLOADS)
def test_any_json_object_round_trips(payload: dict[str, Any]) -> None:
    """Whatever the keys (in the table or not) and values (strings, numbers of any sign and
    size, true, null, lists, objects), the payload comes back equal, keys in order."""
    token = LINKS.dumps(payload)
    loaded = LINKS.loads(token)
    assert loaded == payload
    assert list(loaded) == list(payload)
    assert read_unverified(token) == payload


@pytest.mark.parametrize("key", ["t", "n", "a-new-control-key", "ünï"])
def test_a_new_key_needs_no_format_change(key: str) -> None:
    """A key added later (a control key, an extra field) round-trips like the others."""
    payload = {**PAYLOAD, key: "1", "x": 2_000_000_000}
    assert LINKS.loads(LINKS.dumps(payload)) == payload


def test_the_shorter_encoding_is_chosen_and_both_verify() -> None:
    """A link with a real target is deflated (``_``); a tiny payload, which deflating would
    lengthen, is plain (``-``)."""
    long_token, tiny_token = LINKS.dumps(PAYLOAD), LINKS.dumps({"a": 1})
    assert long_token[3] == DEFLATED
    assert tiny_token[3] == PLAIN
    assert LINKS.loads(long_token) == PAYLOAD
    assert LINKS.loads(tiny_token) == {"a": 1}
    assert LINKS.loads(LINKS.dumps({})) == {}


def test_token_uses_only_url_safe_characters() -> None:
    """Tokens fit in a URL path segment unescaped."""
    token = LINKS.dumps({**PAYLOAD, "note": "ünïcode & spaces / slashes"})
    assert set(token) <= set(ALPHABET + ".")


@pytest.mark.parametrize("payload", [PAYLOAD, {"a": 1}, {}], ids=["deflated", "plain", "empty"])
def test_every_single_character_change_is_refused(payload: dict[str, Any]) -> None:
    """Changing any one character of a token never verifies: not even the last one, whose
    spare bits must be zero (one token, one spelling)."""
    token = LINKS.dumps(payload)
    for i, ch in enumerate(token):
        for replacement in "AQBw0-_.e":
            if replacement == ch:
                continue
            forged = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(InvalidToken):
                LINKS.loads(forged)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_tampering_any_byte_fails(data: st.DataObject) -> None:
    """Flipping any bits of any byte of the payload or of the tag, or dropping or adding
    bytes, is refused as bad_signature (or malformed), never decoded."""
    payload = data.draw(PAYLOADS)
    prefix, raw = raw_bytes(LINKS.dumps(payload))
    at = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    forged = [
        raw[:at] + bytes([raw[at] ^ flip]) + raw[at + 1 :],
        raw[:at] + raw[at + 1 :],
        raw[:at] + bytes([flip]) + raw[at:],
    ]
    for candidate in forged:
        assert reason(LINKS, spell(prefix, candidate)) in ("bad_signature", "malformed")


def test_the_marker_is_signed() -> None:
    """A deflated payload relabelled plain (and the reverse) does not verify."""
    for token in (LINKS.dumps(PAYLOAD), LINKS.dumps({"a": 1})):
        other = PLAIN if token[3] == DEFLATED else DEFLATED
        assert reason(LINKS, token[:3] + other + token[4:]) == "bad_signature"


def test_wrong_key_is_refused() -> None:
    """The same key id with another secret, or another salt, does not verify."""
    impostor = TokenSigner(Keyring("k2", {"k2": "another-secret-0123456789abc"}), REDIRECT_SALT)
    assert reason(LINKS, impostor.dumps(PAYLOAD)) == "bad_signature"
    assert reason(impostor, LINKS.dumps(PAYLOAD)) == "bad_signature"


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


def test_a_non_object_payload_is_not_signed() -> None:
    """dumps signs dicts only."""
    with pytest.raises(TypeError):
        LINKS.dumps(["u"])  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", ["==", "é", " ", "%41", "\x00", ".", "A"])
def test_other_spellings_of_a_token_are_refused(suffix: str) -> None:
    """Padding, a dot, an extra character, non-ASCII or escaped junk never verifies: one link
    has one spelling."""
    assert reason(LINKS, LINKS.dumps(PAYLOAD) + suffix) in ("malformed", "bad_signature")


def test_overlong_token_is_refused_before_decoding() -> None:
    """Tokens over the byte limit are refused as too_long."""
    token = LINKS.dumps(PAYLOAD)
    assert reason(TokenSigner(KEYS, REDIRECT_SALT, max_bytes=len(token) - 1), token) == "too_long"
    assert TokenSigner(KEYS, REDIRECT_SALT, max_bytes=len(token)).loads(token) == PAYLOAD


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_verifies(text: str) -> None:
    """Arbitrary strings raise InvalidToken and nothing else."""
    with pytest.raises(InvalidToken):
        LINKS.loads(text)
    with pytest.raises(InvalidToken):
        LINKS.loads("k2.-" + text)
    with pytest.raises(InvalidToken):
        LINKS.loads("k2._" + text)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(min_value=0))
def test_random_byte_splices_never_verify(junk: bytes, where: int) -> None:
    """Splicing random URL-safe characters into a real token never verifies."""
    token = LINKS.dumps(PAYLOAD)
    insert = "".join(ALPHABET[b % len(ALPHABET)] for b in junk)
    at = where % len(token)
    forged = token[:at] + insert + token[at:]
    with pytest.raises(InvalidToken):
        LINKS.loads(forged)


# --- format 1: the tokens every earlier release minted ----------------------------------------


@settings(max_examples=200, deadline=None)
@given(PAYLOADS)
def test_format_1_tokens_still_verify(payload: dict[str, Any]) -> None:
    """A token minted the old way (itsdangerous JSON, zlib-compressed when shorter) verifies
    to the same payload, by the key it names, signing or verify-only."""
    for kid in ("k2", "k1"):
        token = OLD_LINKS.dumps(kid, payload)
        assert token[len(kid) + 1] in ("e", ".")  # the format-1 spellings
        assert LINKS.loads(token) == payload


def test_format_1_tokens_keep_their_checks() -> None:
    """An old token is refused as before: tampered, other salt, other key, not an object."""
    token = OLD_LINKS.dumps("k1", PAYLOAD)
    assert reason(LINKS, token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")) == (
        "bad_signature"
    )
    assert reason(PIXELS, token) == "bad_signature"
    assert reason(LINKS, "k2" + token[2:]) == "bad_signature"
    # a payload that is not an object was never minted (its base64 does not start with "e")
    assert reason(LINKS, OLD_LINKS.dumps("k1", ["u"])) == "malformed"


def test_format_1_token_with_an_unknown_first_character_is_malformed() -> None:
    """After ``<kid>.`` a token is format 2 (``-``, ``_``) or format 1 (``e``, ``.``)."""
    token = OLD_LINKS.dumps("k1", PAYLOAD)
    assert reason(LINKS, "k1.A" + token[4:]) == "malformed"
