"""API keys: made once, shown once, kept only as a hash, with scopes.

A key reads ``pxk_<id>_<secret>``: the id finds the stored record, the secret proves the
holder. The secret is 32 random bytes, so a plain SHA-256 of it is as good as a slow password
hash (nothing to guess; GitHub and Stripe keep their tokens this way) and checking a key costs
microseconds. Scopes:

* ``ingest``: server calls to ``POST /e`` (the client's IP, user agent and a past event time
  may be passed; docs/events.md);
* ``read``: the read API (``/api/hits``, exports), as a ``PIXEL_API_TOKENS`` token;
* ``admin``: both, and what later administration endpoints need.

Keys live in the store, so every instance sharing it knows them. :class:`KeyCache` keeps a
copy in memory, refreshed every ``REFRESH_S`` seconds: a revoked key stops working everywhere
within that time; a new key works at once (an unknown id refreshes the copy, at most once a
second).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

SCOPES = ("ingest", "read", "admin")
PREFIX = "pxk_"
KEY_TEXT = re.compile(r"pxk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
REFRESH_S = 5.0
UNKNOWN_REFRESH_S = 1.0
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never its secret, only the secret's hash."""

    id: str
    name: str
    scopes: tuple[str, ...]
    hash: str  # SHA-256 of the secret, hex
    created_ms: int
    revoked_ms: int | None = None

    def allows(self, scope: str) -> bool:
        return self.revoked_ms is None and (scope in self.scopes or "admin" in self.scopes)


def new_key(name: str, scopes: Sequence[str], now_ms: int) -> tuple[str, ApiKey]:
    """A new key: the text to hand over (shown once) and the record to store."""
    check_scopes(scopes)
    if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ValueError(f"a key's name is 1 to {MAX_NAME_CHARS} printable characters")
    key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    scopes = tuple(scope for scope in SCOPES if scope in scopes)
    return f"{PREFIX}{key_id}_{secret}", ApiKey(key_id, name, scopes, _digest(secret), now_ms)


def check_scopes(scopes: Sequence[str]) -> None:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes are one or more of {', '.join(SCOPES)}, not {unknown or 'none'}")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(text: str) -> tuple[str, str] | None:
    """(id, secret) of a key's text; None if it does not have a key's shape."""
    match = KEY_TEXT.fullmatch(text)
    return None if match is None else (match[1], match[2])


def verify(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(key.hash, _digest(secret))


class KeyCache:
    """The store's keys, in memory; ``load`` reads them all (a small table)."""

    def __init__(self, load: Callable[[], Awaitable[list[ApiKey]]]) -> None:
        self._load = load
        self._keys: dict[str, ApiKey] = {}
        self._loaded = -1e9  # monotonic time of the last load

    async def find(self, text: str) -> ApiKey | None:
        """The live or revoked key whose text this is, or None (no such key, a wrong secret,
        not a key's shape). Raises StoreUnavailable if the keys cannot be read."""
        parts = split_key(text)
        if parts is None:
            return None
        key_id, secret = parts
        key = await self.by_id(key_id)
        return key if key is not None and verify(key, secret) else None

    async def by_id(self, key_id: str) -> ApiKey | None:
        """The live or revoked key ``key_id``, or None (a dashboard session's key, checked
        again at each page). Raises StoreUnavailable if the keys cannot be read."""
        age = time.monotonic() - self._loaded
        if age > REFRESH_S or (key_id not in self._keys and age > UNKNOWN_REFRESH_S):
            try:
                self._keys = {key.id: key for key in await self._load()}
            except Exception:
                if self._loaded < 0:  # never read: nothing to go by
                    raise
                # the store is down: the keys read before still decide, until it is back
            self._loaded = time.monotonic()
        return self._keys.get(key_id)


class KeyRefused(Exception):
    """Why an Authorization header's API key does not let a request through: ``status`` 401
    (``unauthorized``), 403 (``insufficient_scope``) or 503 (``store_unavailable``: the keys
    cannot be read). The read API and ``POST /e`` answer it each in their own shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


async def check_key(keys: KeyCache, authorization: str, scope: str) -> ApiKey:
    """The live key with ``scope`` that ``authorization`` (``Bearer pxk_...``) carries, or
    :class:`KeyRefused`. The one check of both the read API and ``POST /e``."""
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or split_key(given) is None:
        raise KeyRefused(401, "unauthorized", f"send an API key: Authorization: Bearer {PREFIX}...")
    try:
        key = await keys.find(given)
    except Exception as exc:  # the keys cannot be read: the store is down
        raise KeyRefused(503, "store_unavailable", "the API keys cannot be read now") from exc
    if key is None or key.revoked_ms is not None:
        message = "this API key is not valid (revoked, or not this server's)"
        raise KeyRefused(401, "unauthorized", message)
    if not key.allows(scope):
        message = f"this API key has no {scope} scope (it has {', '.join(key.scopes)})"
        raise KeyRefused(403, "insufficient_scope", message)
    return key
