"""Signed tokens for redirect links and email pixels: format 2, compact and HMAC-SHA256.

A token is ``<key id>.<marker><base64url(payload bytes + tag)>`` (docs/tokens.md byte by byte):

* the key id picks the one key to verify with, so a bad token costs one HMAC whatever the
  number of old keys;
* the marker is ``-`` for a compact payload (compact.py), ``_`` for the same bytes deflated
  with compact.py's preset dictionary (whichever is shorter);
* the tag is the first 16 bytes (128 bits) of HMAC-SHA256, under a key derived from the
  secret and the salt, over ``<key id>.<marker>`` and the payload bytes as sent;
* URL-safe base64 without padding, one spelling only (the last character's spare bits are 0).

Redirects and pixels use different salts: a pixel token never works as a link and vice versa.
Format-1 tokens (``<key id>.eyJ…`` or ``<key id>..eJ…``, itsdangerous), which every earlier
release sent, still verify (legacy_tokens.py); they are no longer minted.

This module signs and verifies; what a payload holds, and its expiry, is payload.py's.
"""

from __future__ import annotations

import binascii
import hmac
import re
from typing import TYPE_CHECKING, Any

from . import compact
from .keys import Keyring
from .payload import InvalidToken as InvalidToken

if TYPE_CHECKING:
    from .legacy_tokens import LegacyTokens

REDIRECT_SALT = "pixel_server.redirect.v1"
PIXEL_SALT = "pixel_server.pixel.v1"
PLAIN, DEFLATED = "-", "_"  # format-2 markers; a format-1 payload starts with "e" or "."
TAG_BYTES = 16  # 128 bits: see docs/tokens.md, "Security"
KEY_CONTEXT = b"pixel_server token format 2\x00"

# Anything not exactly the URL-safe alphabet is refused, so one link has one spelling.
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")  # by the length of the base64 text modulo 4 (1: invalid)
_SPARE_BITS = (0, 0, 0b1111, 0b11)  # bits of the last character that carry no data
_MIN_TEXT = (TAG_BYTES * 4 + 2) // 3  # the base64 of a tag alone


def derive_key(secret: str, salt: str) -> bytes:
    """The format-2 key of one secret and one salt (a pixel key never verifies a link)."""
    return hmac.digest(secret.encode(), KEY_CONTEXT + salt.encode(), "sha256")


class TokenSigner:
    """Signs and verifies one kind of token (one salt) with a keyring."""

    def __init__(self, keyring: Keyring, salt: str, max_bytes: int = 2048) -> None:
        self._signing_id = keyring.signing_id
        self._max_bytes = max_bytes
        self._salt = salt
        self._secrets = keyring.secrets
        self._keys = {kid: derive_key(secret, salt) for kid, secret in keyring.secrets.items()}
        self._legacy: LegacyTokens | None = None  # built at the first format-1 token

    def dumps(self, payload: dict[str, Any]) -> str:
        """The format-2 token of ``payload``, signed with the signing key."""
        if not isinstance(payload, dict):
            raise TypeError(f"a token's payload is a dict, not {type(payload).__name__}")
        data = compact.encode(payload)
        packed = compact.deflate(data)
        marker, data = (DEFLATED, packed) if len(packed) < len(data) else (PLAIN, data)
        prefix = f"{self._signing_id}.{marker}"
        tag = hmac.digest(self._keys[self._signing_id], prefix.encode() + data, "sha256")
        text = binascii.b2a_base64(data + tag[:TAG_BYTES], newline=False)
        return prefix + text.translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def loads(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its payload, or raise :class:`InvalidToken`.

        Only the signature: the payload's expiry is checked by payload.py's readers.
        """
        # 1. cheap checks first: nothing is decoded or hashed for junk
        if len(token) > self._max_bytes:
            raise InvalidToken("too_long")
        if not TOKEN_CHARS.fullmatch(token):
            raise InvalidToken("malformed")
        kid, _, body = token.partition(".")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_key")
        marker = body[:1]
        if marker != PLAIN and marker != DEFLATED:
            return self._legacy_loads(kid, body)
        data, tag = _unpack(body)
        # 2. one HMAC with the key the token names; the payload is decoded only after it
        expected = hmac.digest(key, token[: len(kid) + 2].encode() + data, "sha256")
        if not hmac.compare_digest(expected[:TAG_BYTES], tag):
            raise InvalidToken("bad_signature")
        try:
            return compact.decode(compact.inflate(data) if marker == DEFLATED else data)
        except compact.Undecodable:
            raise InvalidToken("bad_payload") from None

    def _legacy_loads(self, kid: str, body: str) -> dict[str, Any]:
        if body[:1] not in ("e", "."):
            raise InvalidToken("malformed")
        if self._legacy is None:
            from .legacy_tokens import LegacyTokens

            self._legacy = LegacyTokens(self._secrets, self._salt)
        payload = self._legacy.loads(kid, body)
        if not isinstance(payload, dict):  # dumps signed a dict: anything else is not ours
            raise InvalidToken("bad_payload")
        return payload


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _unpack(body: str) -> tuple[bytes, bytes]:
    """The payload bytes and the tag of a format-2 token's body (after ``<key id>.``), or
    :class:`InvalidToken` (``malformed``) for any spelling but the one :meth:`dumps` writes."""
    text = body[1:]
    size = len(text)
    spare = _SPARE_BITS[size % 4]
    if size < _MIN_TEXT or size % 4 == 1 or "." in text:
        raise InvalidToken("malformed")
    if spare and _ALPHABET.index(text[-1]) & spare:
        raise InvalidToken("malformed")
    raw = binascii.a2b_base64(text.encode().translate(_FROM_URLSAFE) + _PADDING[size % 4])
    return raw[:-TAG_BYTES], raw[-TAG_BYTES:]


def read_unverified(token: str) -> dict[str, Any]:
    """The payload of a format-2 token, **without checking its tag**: to show what a token
    carries (anyone can read it), never to trust it. :class:`InvalidToken` if unreadable."""
    body = token.partition(".")[2]
    if not TOKEN_CHARS.fullmatch(token) or body[:1] not in (PLAIN, DEFLATED):
        raise InvalidToken("malformed")
    data, _ = _unpack(body)
    try:
        return compact.decode(compact.inflate(data) if body[0] == DEFLATED else data)
    except compact.Undecodable:
        raise InvalidToken("bad_payload") from None
