"""Signed links and pixels: the payload built from CLI options or API JSON, its checks, and
minting many at once.

The same rules whichever way a request comes in (``link``/``pixel``, a recipients CSV,
``POST /api/links``), so nothing is signed that the server would answer differently:

* ``cid``, ``uid``, ``sid`` and the UTM keys are named ids; any other key is an extra field.
  A field may not be a token key (``u``, ``x``, ``a``), nor ``url`` on a link (a click records
  its target there; both are payload.py's), nor a key given twice with two values
  (``--field cid=x --cid y``);
* no id or field holds an email address (addresses.py, also percent-encoded): a
  token is signed, not encrypted, and a URL is seen by mail scanners, proxies, browser
  history and the next site's Referer; a recipients file carries such a column to its output
  unsigned with ``--carry`` (cli.py);
* ``notrack`` (links) signs ``n``: the redirect works, no click is stored;
* ``expires`` is a duration (``90s`` ... ``4w``) above zero and at most ten years;
* ``sent_at`` (the send time) is ``now``, epoch seconds or an ISO 8601 time, and
  ``message_id`` at most :data:`payload.MAX_MESSAGE_CHARS` characters;
* the target is checked once per distinct URL and signed in the canonical form a browser will
  visit (:func:`urls.normalize_target`); :attr:`Minter.changed` keeps what differed as typed;
* a token longer than ``PIXEL_MAX_TOKEN_BYTES`` is refused here, not by the server later.

Only the standard library and idna are imported (itsdangerous only to verify format-1 tokens,
never to mint): ``pixel-server link`` has to start fast (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import payload
from .addresses import has_address
from .config import ConfigError, Settings
from .fields import MAX_KEY_CHARS, NAMED_KEYS
from .keys import Keyring
from .query import QueryError, parse_duration_ms
from .signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner
from .urls import TargetPolicy, TargetRejected, normalize_target

MAX_EXPIRES_DAYS = 3650  # ten years: far beyond any campaign, far below any overflow
MAX_EXPIRES_S = MAX_EXPIRES_DAYS * 86_400
# a server listening here has no address a recipient could reach it at
WILDCARD_HOSTS = frozenset(("0.0.0.0", "::", "[::]"))  # noqa: S104 (compared, never bound)
# keys of a POST /api/links item besides the named ids
ITEM_KEYS = frozenset(
    ("url", "fields", "expires", "append_utm", "notrack", "sent_at", "message_id", *NAMED_KEYS)
)


class LinkError(ValueError):
    """Raised for a link or pixel that cannot be signed.

    ``param`` names the input at fault (``url``, ``expires``, ``field``, ``item``, ``token``),
    ``code`` is the API's error code for it.
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = f"bad_{param}"


class AddressInToken(LinkError):
    """An id or field that holds an email address (the address is not repeated)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "field",
            f"{key!r} holds an email address: a token is signed, not encrypted, so anyone who"
            " sees the link can read it; give an opaque id instead (docs/tokens.md)",
        )
        self.key = key


@dataclass(frozen=True)
class Spec:
    """What one token carries besides its target: the ids and extra fields, the expiry in
    seconds from now, (links) whether the redirect appends the UTM values, and for an email
    its send time (epoch seconds) and message id."""

    ids: dict[str, str] = field(default_factory=dict)
    expires_s: int | None = None
    append_utm: bool = False
    sent: int | None = None
    message: str | None = None
    notrack: bool = False  # links: the redirect stores no click (payload.NOTRACK)

    def with_fields(self, pairs: Iterable[tuple[str, str]], *, link: bool) -> Spec:
        """This spec plus more fields (a recipient's row), under the same checks."""
        ids = dict(self.ids)
        add_fields(ids, pairs, link=link)
        return replace(self, ids=ids)

    def sent_as(self, sent: int | None, message: str | None) -> Spec:
        """This spec sent at ``sent`` as ``message`` (see :func:`parse_sent`)."""
        if message is not None:
            check_message(message)
        return replace(self, sent=sent, message=message or None)


def add_fields(ids: dict[str, str], pairs: Iterable[tuple[str, str]], *, link: bool) -> None:
    """Add ``pairs`` to ``ids``, refusing reserved keys and a key given with two values."""
    for key, value in pairs:
        if not key:
            raise LinkError("field", "a field needs a name")
        if key in payload.CONTROL_KEYS:
            raise LinkError("field", f"{key!r} is reserved for the token itself")
        if link and key == payload.LOCATION_FIELD:
            raise LinkError("field", f"{key!r} is set by the server to the redirect target")
        if len(key) > MAX_KEY_CHARS:
            raise LinkError("field", f"field name {key[:20]!r}... is over {MAX_KEY_CHARS} chars")
        _check_text(key, value)
        before = ids.setdefault(key, value)
        if before != value:
            raise LinkError("field", f"{key!r} is given twice: {before!r} and {value!r}")


def _check_text(key: str, value: str) -> None:
    """An id or field's name and value: Unicode text, and no email address in the value."""
    _check_unicode(key, value)
    if has_address(value):
        raise AddressInToken(key)


def _check_unicode(key: str, value: str) -> None:
    try:
        key.encode()
        value.encode()
    except UnicodeEncodeError:
        raise LinkError("field", f"{key!r} is not valid Unicode text") from None


def parse_expires(raw: str) -> int:
    """Seconds in a duration such as ``90d``: above zero, at most ten years."""
    try:
        seconds = parse_duration_ms(raw) // 1000
    except QueryError as exc:
        raise LinkError("expires", str(exc)) from None
    if seconds <= 0:
        raise LinkError("expires", f"{raw!r}: a link must live longer than 0 seconds")
    if seconds > MAX_EXPIRES_S:
        raise LinkError("expires", f"{raw!r} is over the maximum of {MAX_EXPIRES_DAYS}d")
    return seconds


def parse_sent(raw: str | int | float, now: float | None = None) -> int:
    """Epoch seconds of a send time: ``now``, epoch seconds, or an ISO 8601 time (UTC
    unless it names its offset); refused before 2000 or more than a year ahead."""
    clock = time.time() if now is None else now
    if isinstance(raw, bool):
        raise LinkError("sent_at", "'sent_at' must be 'now', epoch seconds or an ISO time")
    if isinstance(raw, (int, float)):
        seconds = float(raw)
    elif raw.strip().lower() == "now":
        seconds = clock
    else:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = _iso_seconds(raw)
    if not SENT_EARLIEST <= seconds <= clock + 366 * 86_400:
        raise LinkError("sent_at", f"{str(raw)[:40]!r} is not a plausible send time")
    return int(seconds)


SENT_EARLIEST = 946_684_800  # 2000-01-01: a smaller number is a mistake (milliseconds?)


def _iso_seconds(raw: str) -> float:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        message = f"{raw[:40]!r}: use 'now', epoch seconds or an ISO time (2026-03-01T09:00Z)"
        raise LinkError("sent_at", message) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def check_message(message: str) -> None:
    if len(message) > payload.MAX_MESSAGE_CHARS:
        raise LinkError(
            "message_id", f"the message id is over {payload.MAX_MESSAGE_CHARS} characters"
        )
    _check_unicode("message_id", message)  # a Message-ID has an @: the send's, no person's
    if not message.isprintable():
        raise LinkError("message_id", "the message id has control characters")


def spec_from_options(
    named: Mapping[str, str | None],
    fields: Iterable[str],
    expires: str | None,
    append_utm: bool,
    *,
    link: bool,
    notrack: bool = False,
) -> Spec:
    """The spec of CLI options: named ids (empty ones skipped), ``KEY=VALUE`` fields."""
    ids = {key: value for key, value in named.items() if value}
    for key, value in ids.items():
        _check_text(key, value)
    pairs = []
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise LinkError("field", f"{item!r}: use KEY=VALUE")
        pairs.append((key, value))
    add_fields(ids, pairs, link=link)
    expires_s = None if expires is None else parse_expires(expires)
    return Spec(ids, expires_s, append_utm, notrack=notrack)


def spec_from_json(item: Any) -> tuple[str, Spec]:
    """The target and spec of one ``POST /api/links`` item (see links_api.py)."""
    if not isinstance(item, dict):
        raise LinkError("item", "each item must be a JSON object")
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        raise LinkError(
            "item", f"unknown key {unknown[0]!r}; extra fields go in the 'fields' object"
        )
    url = item.get("url")
    if not isinstance(url, str):
        raise LinkError("url", "'url' must be a string")
    return url, spec_of_item(item, link=True)


def spec_of_item(item: dict[str, Any], *, link: bool) -> Spec:
    """The ids, fields, expiry and append_utm of a JSON object (a ``POST /api/links`` item,
    a ``POST /api/wrap`` body), under the rules of ``pixel-server link``."""
    ids: dict[str, str] = {}
    for key in NAMED_KEYS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise LinkError("field", f"{key!r} must be a string")
        if value:
            _check_text(key, value)
            ids[key] = value
    extra = item.get("fields") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise LinkError("field", "'fields' must be an object of strings")
    add_fields(ids, extra.items(), link=link)
    expires = item.get("expires")
    if expires is not None and not isinstance(expires, str):
        raise LinkError("expires", "'expires' must be a duration string such as '90d'")
    append_utm = item.get("append_utm", False)
    if not isinstance(append_utm, bool):
        raise LinkError("item", "'append_utm' must be true or false")
    notrack = item.get("notrack", False)
    if not isinstance(notrack, bool):
        raise LinkError("item", "'notrack' must be true or false")
    expires_s = None if expires is None else parse_expires(expires)
    spec = Spec(ids, expires_s, append_utm, notrack=notrack and link)
    sent, message = item.get("sent_at"), item.get("message_id")
    if message is not None and not isinstance(message, str):
        raise LinkError("message_id", "'message_id' must be a string")
    if sent is not None and not isinstance(sent, (str, int, float)):
        raise LinkError("sent_at", "'sent_at' must be 'now', epoch seconds or an ISO time")
    if sent is None and message is None:
        return spec
    return spec.sent_as(None if sent is None else parse_sent(sent), message)


def public_base(settings: Settings) -> str:
    """The base URL links and pixels are printed under, refused where it can only be dead."""
    if not settings.public_url and settings.host in WILDCARD_HOSTS:
        raise ConfigError(
            f"PIXEL_HOST={settings.host} is every address, not one a recipient can reach: "
            "set PIXEL_PUBLIC_URL to the URL this server is reached at"
        )
    return settings.base_url


def signing_keyring(settings: Settings) -> Keyring:
    """The keyring that ``link`` and ``pixel`` sign with."""
    # the one place the CLI loads keys; it must never create one (issue 6 §4, keys.py)
    return Keyring.from_settings(settings)


class Minter:
    """Signs links (with a target) or pixels (without) under one signer and one clock.

    Each distinct target is checked once, refusals included: a send repeats a few targets.
    """

    def __init__(
        self,
        signer: TokenSigner,
        base_url: str,
        policy: TargetPolicy | None,
        max_token_bytes: int,
        now: float | None = None,
    ) -> None:
        self._signer = signer
        self._policy = policy
        self._max_token_bytes = max_token_bytes
        self._now = int(time.time() if now is None else now)
        self._prefix, self._suffix = (
            (f"{base_url}/r/", "") if policy is not None else (f"{base_url}/p/", ".gif")
        )
        self._targets: dict[str, str | LinkError] = {}
        self.changed: dict[str, str] = {}  # target as typed -> as signed, where they differ

    @classmethod
    def for_links(cls, settings: Settings) -> Minter:
        return cls(
            TokenSigner(signing_keyring(settings), REDIRECT_SALT),
            public_base(settings),
            TargetPolicy.from_settings(settings),
            settings.max_token_bytes,
        )

    @classmethod
    def for_pixels(cls, settings: Settings) -> Minter:
        return cls(
            TokenSigner(signing_keyring(settings), PIXEL_SALT),
            public_base(settings),
            None,
            settings.max_token_bytes,
        )

    def target(self, url: str) -> str:
        """The canonical form of ``url``, or :class:`LinkError` if it may not be a target."""
        known = self._targets.get(url)
        if known is None:
            assert self._policy is not None, "a pixel has no target"
            try:
                known = normalize_target(url, self._policy)
            except TargetRejected as exc:
                known = LinkError("url", f"{exc} ({exc.reason})")
            else:
                if known != url:
                    self.changed[url] = known
            self._targets[url] = known
        if isinstance(known, LinkError):
            raise known
        return known

    def mint(self, spec: Spec, url: str | None = None) -> str:
        """The signed URL of ``spec`` (a link to ``url``, or a pixel when ``url`` is None)."""
        token = self._signer.dumps(
            payload.build(
                spec.ids,
                target=None if url is None else self.target(url),
                expires=None if spec.expires_s is None else self._now + spec.expires_s,
                append_utm=spec.append_utm,
                sent=spec.sent,
                message=spec.message,
                notrack=spec.notrack and url is not None,
            )
        )
        if len(token) > self._max_token_bytes:
            raise LinkError(
                "token",
                f"the signed token is {len(token)} bytes, over PIXEL_MAX_TOKEN_BYTES "
                f"({self._max_token_bytes}): the server would refuse it; shorten the target "
                "or the fields",
            )
        return f"{self._prefix}{token}{self._suffix}"

    def mint_trap(self, spec: Spec) -> str:
        """The signed URL of ``spec``'s trap link: a link without a target (``t``, payload.py),
        hidden in the email; a click on it answers a blank page."""
        assert self._policy is not None, "a trap is a link"
        token = self._signer.dumps(
            payload.build(
                spec.ids,
                expires=None if spec.expires_s is None else self._now + spec.expires_s,
                sent=spec.sent,
                message=spec.message,
                trap=True,
            )
        )
        if len(token) > self._max_token_bytes:
            raise LinkError("token", "the trap link's token is over PIXEL_MAX_TOKEN_BYTES")
        return f"{self._prefix}{token}"

    def mint_each(self, spec: Spec, urls: Iterable[str]) -> dict[str, str]:
        """A signed link to each of ``urls`` (an email's targets), by URL; a LinkError names
        the URL it is about."""
        signed: dict[str, str] = {}
        for url in urls:
            try:
                signed[url] = self.mint(spec, url)
            except LinkError as exc:
                raise LinkError(exc.param, f"{url[:200]}: {exc}") from None
        return signed
