"""The dashboard's login: a read-scoped API key (or a PIXEL_API_TOKENS token) exchanged for
a signed session cookie, and the CSRF tokens of its forms.

* The session cookie holds the key's id (or a hash of the token), a CSRF token and the
  login time, signed (itsdangerous) with a secret derived from the server's signing key by
  HMAC, so every instance sharing the key file knows it and a rotation ends the sessions;
  never the key itself. ``HttpOnly``, ``SameSite=Strict``, ``Path=/dashboard``, ``Secure``
  when PIXEL_PUBLIC_URL is https, 12 hours. Each page checks that the key is still live
  with the read scope: a revoked key logs its sessions out within the key cache's refresh.
* CSRF: the login form's token is double-submitted (a cookie and a hidden field, equal);
  the logout form carries the session's own token. A POST whose Origin (or, without one,
  Referer) is another origin is refused before anything else; GETs change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from .apikeys import split_key
from .runtime import Runtime

SESSION_COOKIE = "pixel_dashboard"
CSRF_COOKIE = "pixel_dashboard_csrf"
PATH = "/dashboard"
MAX_AGE_S = 12 * 3600
SCOPE = "read"
TOKEN_PREFIX = "t:"  # noqa: S105 - not a secret: a session of a PIXEL_API_TOKENS token: t:<sha256 of it, hex>
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class Session:
    who: str  # an API key's id, or TOKEN_PREFIX + the token's hash
    csrf: str


class Sessions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        signing = rt.keyring.secrets[rt.keyring.signing_id].encode()
        secret = hmac.new(signing, b"pixel_server dashboard session v1", hashlib.sha256)
        self._signer = URLSafeTimedSerializer(secret.hexdigest(), salt="dashboard-session")
        self.secure = rt.settings.public_url.startswith("https://")

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        """Set a dashboard cookie: HttpOnly, SameSite=Strict, under /dashboard only."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def issue(self, who: str) -> tuple[str, Session]:
        """A new session's cookie value."""
        session = Session(who, secrets.token_urlsafe(24))
        return self._signer.dumps({"w": session.who, "c": session.csrf}), session

    async def current(self, request: Request) -> Session | None:
        """The request's session if its cookie is good and its key still lets it read."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw or len(raw) > 1000:
            return None
        try:
            data = self._signer.loads(raw, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        who, csrf = data.get("w"), data.get("c")
        if not isinstance(who, str) or not isinstance(csrf, str):
            return None
        return Session(who, csrf) if await self._still_allowed(who) else None

    async def _still_allowed(self, who: str) -> bool:
        if who.startswith(TOKEN_PREFIX):
            return any(
                hmac.compare_digest(who, TOKEN_PREFIX + _digest(token))
                for token in self.rt.settings.api_token_list
            )
        try:
            key = await self.rt.api_keys.by_id(who)
        except Exception:  # the keys cannot be read: no page rather than a wrong one
            return False
        return key is not None and key.allows(SCOPE)

    async def log_in(self, given: str) -> str | None:
        """Who ``given`` (a key's text or a token) is, if it may read; None otherwise."""
        given = given.strip()
        if not given or len(given) > MAX_KEY_CHARS:
            return None
        if split_key(given) is not None:
            try:
                key = await self.rt.api_keys.find(given)
            except Exception:
                return None
            if key is None or not key.allows(SCOPE):
                return None
            return key.id
        matched = False
        for token in self.rt.settings.api_token_list:  # every one, always: no timing hint
            matched |= hmac.compare_digest(given.encode(), token.encode())
        return TOKEN_PREFIX + _digest(given) if matched else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this server: the browser's Sec-Fetch-Site says
    so, or (a browser without it) its Origin, else its Referer, names this host."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc == host


def tokens_equal(first: str | None, second: str | None) -> bool:
    if not first or not second:
        return False
    return hmac.compare_digest(first.encode(), second.encode())
