"""Signed tokens for redirect links and email pixels (itsdangerous, HMAC-SHA256).

A token is ``<key id>.<itsdangerous URL-safe payload>.<signature>``. The key id picks the one
key to verify with, so a bad token costs one HMAC whatever the number of old keys. Redirects
and pixels use different salts: a pixel token never works as a link and vice versa.

This module signs and verifies; what a payload holds, and its expiry, is payload.py's.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from itsdangerous import BadData, Signer, URLSafeSerializer

from .keys import Keyring
from .payload import InvalidToken as InvalidToken

REDIRECT_SALT = "pixel_server.redirect.v1"
PIXEL_SALT = "pixel_server.pixel.v1"

# itsdangerous ignores some junk (non-ASCII, padding) when verifying; we refuse anything that is
# not exactly the URL-safe alphabet so one link cannot be spelled several ways.
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")


class _KeyedSigner(Signer):
    """itsdangerous' Signer, deriving its key once instead of on every call.

    The derivation (a hash of salt and secret) is a pure function of fixed values; doing it per
    token, plus building a Signer per token as ``Serializer.loads`` does, was a third of the
    cost of a redirect.
    """

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        derived: bytes | None = self.__dict__.get("_derived")
        if derived is None:
            derived = self.__dict__["_derived"] = super().derive_key()
        return derived


class TokenSigner:
    """Signs and verifies one kind of token (one salt) with a keyring."""

    def __init__(self, keyring: Keyring, salt: str, max_bytes: int = 2048) -> None:
        self._signing_id = keyring.signing_id
        self._max_bytes = max_bytes
        self._serializers = {
            kid: URLSafeSerializer(
                secret,
                salt=salt,
                signer=_KeyedSigner,
                signer_kwargs={"digest_method": hashlib.sha256},
            )
            for kid, secret in keyring.secrets.items()
        }
        # one Signer per key, built once (Serializer.loads would build one per token)
        self._signers = {kid: s.make_signer() for kid, s in self._serializers.items()}

    def dumps(self, payload: dict[str, Any]) -> str:
        kid = self._signing_id
        # the same bytes as Serializer.dumps, with the Signer built once instead of per token
        # (a third of the cost of minting a link in bulk)
        body = self._signers[kid].sign(self._serializers[kid].dump_payload(payload))
        return f"{kid}.{body.decode('ascii')}"

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
        signer = self._signers.get(kid)
        if signer is None:
            raise InvalidToken("unknown_key")
        # 2. one HMAC with the key the token names; the payload is decoded only after it
        try:
            payload = self._serializers[kid].load_payload(signer.unsign(body))
        except BadData:
            raise InvalidToken("bad_signature") from None
        if not isinstance(payload, dict):  # dumps signs a dict: anything else is not ours
            raise InvalidToken("bad_payload")
        return payload
