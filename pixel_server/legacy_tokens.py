"""Format-1 tokens, as every release before format 2 signed them: verified so that links and
pixels already sent in emails keep working; no longer minted (docs/tokens.md).

A format-1 token is ``<key id>.<itsdangerous URL-safe payload>.<signature>``: the payload is
URL-safe base64 JSON (``eyJ…``), or zlib-compressed JSON marked by a leading ``.``; the
signature is the whole HMAC-SHA256 of itsdangerous' ``django-concat`` key derivation.

Imported only when a format-1 token arrives (signing.py), so minting needs no itsdangerous.
"""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import BadData, Signer, URLSafeSerializer

from .payload import InvalidToken


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


class LegacyTokens:
    """Format-1 tokens of one salt under a set of keys: the old verifier, and the old minting
    (kept for tests, which check that what earlier releases sent still verifies)."""

    def __init__(self, secrets: dict[str, str], salt: str) -> None:
        self._serializers = {
            kid: URLSafeSerializer(
                secret,
                salt=salt,
                signer=_KeyedSigner,
                signer_kwargs={"digest_method": hashlib.sha256},
            )
            for kid, secret in secrets.items()
        }
        # one Signer per key, built once (Serializer.loads would build one per token)
        self._signers = {kid: s.make_signer() for kid, s in self._serializers.items()}

    def dumps(self, kid: str, payload: Any) -> str:
        """The format-1 token of ``payload``, signed with key ``kid``, as earlier releases
        minted it (the same bytes as ``Serializer.dumps``)."""
        body = self._signers[kid].sign(self._serializers[kid].dump_payload(payload))
        return f"{kid}.{body.decode('ascii')}"

    def loads(self, kid: str, body: str) -> Any:
        """The payload of a format-1 token's ``body`` (after ``<kid>.``), signed with key
        ``kid`` (the caller checked it exists), or :class:`InvalidToken`."""
        try:
            return self._serializers[kid].load_payload(self._signers[kid].unsign(body))
        except BadData:
            raise InvalidToken("bad_signature") from None
