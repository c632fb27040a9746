"""The hit record and how a request becomes one. Pure: no I/O, no clock unless passed in.

Input policy (documented in docs/input-limits.md):

* the query string is read up to ``max_query_bytes``; the rest is cut at the last ``&`` and
  the hit is flagged ``query_truncated``;
* at most ``max_params`` parameters are kept (``too_many_params``);
* a value longer than ``max_value_chars`` is cut (``value_truncated``);
* a repeated parameter keeps its FIRST value (``repeated_param``), so a link cannot be
  re-pointed by appending ``&cid=...``;
* bytes that are not UTF-8 become U+FFFD (``invalid_utf8``); control characters (C0, DEL, C1)
  become U+FFFD (``control_chars``), so nothing we store can reach a header or a terminal raw;
* a malformed percent escape such as ``%zz`` is kept literally;
* ``User-Agent`` and ``Referer`` are read as UTF-8; a header that is not valid UTF-8 is read as
  latin-1 (each byte one character, as HTTP/1.1 historically defined) and flagged
  ``header_not_utf8``;
* an email address anywhere but the user agent is taken out (privacy.py, ``email_redacted``).

Flags are stored with the hit: bad input is recorded as such, never answered with an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any
from urllib.parse import unquote_to_bytes

from .addresses import may_hold
from .cleaning import UNSAFE, clean_text
from .clientip import ClientIP, anonymise, stored_ip
from .fields import COLUMN_KEYS as COLUMN_KEYS
from .fields import ID_KEYS as ID_KEYS
from .fields import KINDS as KINDS
from .fields import MAX_KEY_CHARS as MAX_KEY_CHARS
from .fields import UTM_KEYS as UTM_KEYS
from .networks import Networks
from .privacy import CONSENT, REDACTED_FLAG, Policy
from .revocations import host_of
from .salts import DaySalts, visitor_hash
from .traffic import MACHINE, UNKNOWN_DEVICE, Verdict, classify
from .useragent import parse_user_agent

# every flag a hit can carry in its `flags` column (see the module docstring)
INPUT_FLAGS = frozenset(
    (
        "query_truncated",
        "too_many_params",
        "value_truncated",
        "repeated_param",
        "invalid_utf8",
        "control_chars",
        "header_not_utf8",
        "email_redacted",  # privacy.py: an address taken out (PIXEL_REDACT_EMAILS)
        # events only (POST /e and PIXEL_EVENT_SCHEMAS, docs/events.md)
        "unknown_event",
        "schema_violation",
    )
)
MAX_HEADER_CHARS = 2048


@dataclass(slots=True)
class Hit:
    """One row of the hit log. Field order is the column order of the ``hits`` table."""

    ts: int  # server time, UTC, milliseconds since the epoch
    kind: str
    event: str | None = None
    eid: str | None = None
    cid: str | None = None
    uid: str | None = None
    sid: str | None = None
    url: str | None = None
    ref: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    utm_id: str | None = None
    params: str | None = None  # JSON object of every other parameter
    referer: str | None = None
    ip: str | None = None
    ua: str | None = None
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None
    is_bot: int = 0
    dnt: int = 0
    gpc: int = 0
    method: str = "GET"
    flags: str | None = None  # comma-separated input problems, e.g. "value_truncated"
    seq: int | None = None  # an event's number within its session (POST /e, docs/events.md)
    # who most likely made the request (traffic.py, docs/traffic.md), decided before the IP
    # was anonymised: the class, its reasons ("rule:detail,..."), the rules' version
    traffic: str | None = None
    traffic_reasons: str | None = None
    traffic_rules: str | None = None
    # a wrapped email's send (payload.py ``s``, ``m``): when it was sent (epoch ms) and its id
    sent_ts: int | None = None
    msg: str | None = None
    # the day's visitor hash (salts.py: address network, user agent, campaign or site), for a
    # hit that keeps no uid: the reports count it where they would count the uid
    visitor: str | None = None

    def row(self) -> tuple[Any, ...]:
        """The values in column order (``dataclasses.astuple`` deep-copies: 10x slower)."""
        values: tuple[Any, ...] = _row(self)
        return values


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Hit))
_row = attrgetter(*COLUMNS)


@dataclass(frozen=True, slots=True)
class Limits:
    max_query_bytes: int = 8192
    max_params: int = 50
    max_value_chars: int = 2048


def _unquote(text: str, flags: set[str]) -> str:
    """Percent- and plus-decode ``text`` (raw query characters, one per byte) as UTF-8."""
    data = unquote_to_bytes(text.replace("+", " ").encode("latin-1"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        flags.add("invalid_utf8")
        return data.decode("utf-8", "replace")


def _field(text: str, limit: int, flags: set[str]) -> str:
    if "%" in text or "+" in text or not text.isascii():
        text = _unquote(text, flags)
    if len(text) > limit or UNSAFE.search(text):
        text = clean_text(text, limit, flags)
    return text


def parse_query(raw: bytes, limits: Limits, flags: set[str]) -> dict[str, str]:
    """Parse a raw query string under ``limits``; first value of a repeated key wins."""
    if len(raw) > limits.max_query_bytes:
        flags.add("query_truncated")
        cut = raw.rfind(b"&", 0, limits.max_query_bytes + 1)
        raw = raw[: max(cut, 0)]
    params: dict[str, str] = {}
    # latin-1 maps each byte to one character, so nothing is lost before percent-decoding
    text = raw.decode("latin-1")
    # the common query: no escape, no control character anywhere, so every key and value is
    # its own text and only its length is left to check (one scan instead of one per field)
    plain = "%" not in text and "+" not in text and text.isascii() and not UNSAFE.search(text)
    value_chars = limits.max_value_chars
    for piece in text.split("&"):
        if not piece:
            continue
        if len(params) >= limits.max_params:
            flags.add("too_many_params")
            break
        key, _, value = piece.partition("=")
        if not plain or len(key) > MAX_KEY_CHARS:
            key = _field(key, MAX_KEY_CHARS, flags)
        if not key:
            continue
        if key in params:
            flags.add("repeated_param")
            continue
        if not plain or len(value) > value_chars:
            value = _field(value, value_chars, flags)
        params[key] = value
    return params


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The few headers a hit needs, from ASGI's raw header list.

    The first occurrence wins, except for ``X-Forwarded-For``: its lines are one list, joined
    in order with "," (RFC 9110 field combination), so the line a proxy appends is read too.
    """
    wanted = {}
    for name, value in raw:
        if name in _WANTED_HEADERS:
            if name not in wanted:
                wanted[name] = value
            elif name == b"x-forwarded-for":
                wanted[name] += b"," + value
    return wanted


_WANTED_HEADERS = frozenset(
    (b"user-agent", b"referer", b"dnt", b"sec-gpc", b"x-forwarded-for", b"purpose", b"sec-purpose")
)


def _header(headers: Mapping[bytes, bytes], name: bytes, flags: set[str]) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        flags.add("header_not_utf8")
        text = value.decode("latin-1")
    return clean_text(text, MAX_HEADER_CHARS, flags)


def set_user_agent(hit: Hit, ua: str) -> None:
    """Record ``ua`` (cleaned already) in ``hit``, raw and parsed."""
    parsed = parse_user_agent(ua)
    hit.ua = ua[:512]
    hit.browser, hit.browser_version, hit.os, hit.os_version, hit.device = parsed[:5]
    hit.is_bot = int(parsed.is_bot)


def set_traffic(hit: Hit, verdict: Verdict) -> None:
    """Record ``verdict`` (traffic.py) in ``hit``: ``is_bot`` follows the class (the user-agent
    parser calls Yahoo's image proxy a bot and curl a person), and a webmail proxy's open has
    no device: its agent describes the proxy (Gmail's claims Windows XP), not the reader."""
    cls = hit.traffic = verdict.cls
    hit.traffic_rules = verdict.version
    hit.traffic_reasons = ",".join(verdict.reasons) if verdict.reasons else None
    hit.is_bot = int(cls in MACHINE)
    if cls == "mail_proxy":
        hit.browser = hit.browser_version = hit.os = hit.os_version = None
        hit.device = UNKNOWN_DEVICE


def build_hit(
    *,
    kind: str,
    now_ms: int,
    method: str,
    params: Mapping[str, str],
    headers: Mapping[bytes, bytes],
    peer: str | None,
    client_ip: ClientIP,
    flags: set[str],
    sent: int | None = None,
    msg: str | None = None,
    networks: Networks | None = None,
    verdict: Verdict | None = None,
    policy: Policy | None = None,
    salts: DaySalts | None = None,
    visitors: bool = False,
) -> Hit:
    """Assemble a hit from already-parsed request parts; ``params`` may come from a token, as
    ``sent`` (epoch seconds) and ``msg``, the send of the email it was in; ``networks`` the
    known networks (PIXEL_NETWORKS; None: the shipped lists). ``verdict``: the class the token
    decides (a trap link's), instead of the request's. ``policy``: what a hit may keep
    (privacy.py; None: everything); ``salts``: the daily salts of PIXEL_IP_MODE=hash and, if
    ``visitors``, of the visitor hash."""
    hit = Hit(ts=now_ms, kind=kind, method=method)
    since_send_s = None
    if sent is not None:
        hit.sent_ts, hit.msg = sent * 1000, msg
        if hit.sent_ts <= now_ms:  # a send time ahead of the clock tells nothing
            since_send_s = (now_ms - hit.sent_ts) / 1000
    extra: dict[str, str] = {}
    for key, value in params.items():
        if key in COLUMN_KEYS:
            setattr(hit, "event" if key == "e" else key, value)
        else:
            extra[key] = value
    if extra:
        hit.params = json.dumps(extra, ensure_ascii=False, separators=(",", ":"))
    ua = _header(headers, b"user-agent", flags)
    if ua:
        set_user_agent(hit, ua)
    hit.referer = _header(headers, b"referer", flags)
    hit.dnt = int(headers.get(b"dnt") == b"1")
    hit.gpc = int(headers.get(b"sec-gpc") == b"1")
    address = request_address(headers, peer, client_ip)
    purpose = headers.get(b"sec-purpose") or headers.get(b"purpose")
    set_traffic(
        hit,
        verdict
        or classify(
            method=method,
            ua=ua,
            kind=kind,
            ip=address,  # the full address: classified here, never stored
            purpose=None if purpose is None else purpose.decode("latin-1"),
            since_send_s=since_send_s,
            networks=networks,
        ),
    )
    if policy is not None and _may_hold_address(params, hit.referer) and policy.redact(hit):
        flags.add(REDACTED_FLAG)  # before the visitor hash: a uid may have gone
    withheld = policy is not None and policy.withholds(hit.dnt, hit.gpc, params.get(CONSENT))
    mode = client_ip.mode if policy is None else policy.ip_mode(client_ip.mode, withheld)
    salt = b"" if salts is None else salts.salt(now_ms)
    hit.ip = stored_ip(address, mode, salt)
    if visitors and salts is not None and (withheld or hit.uid is None):  # the uid counts else
        set_visitor(hit, salt, address, hit.ua)
    if withheld:
        assert policy is not None
        policy.scrub(hit)
    if flags:
        hit.flags = ",".join(sorted(flags))
    return hit


def _may_hold_address(params: Mapping[str, str], referer: str | None) -> bool:
    """Whether the request's parameters or Referer have an ``@`` (or ``%40``) at all: every
    field an address is taken out of comes from them, and one C-level join is a fraction of
    what reading the hit's fields costs (the pixel's hot path)."""
    text = "\x00".join(params.values())
    return may_hold(text if referer is None else text + referer)


def add_flag(hit: Hit, flag: str) -> None:
    """Add ``flag`` to the hit's comma-separated, sorted ``flags``."""
    flags = set(hit.flags.split(",")) if hit.flags else set()
    hit.flags = ",".join(sorted(flags | {flag}))


def request_address(
    headers: Mapping[bytes, bytes], peer: str | None, client_ip: ClientIP
) -> str | None:
    """The client's full address (not yet anonymised): the peer, or behind trusted proxies
    the first untrusted hop of X-Forwarded-For from the right (clientip.py)."""
    forwarded = headers.get(b"x-forwarded-for")
    return client_ip.resolve(peer, None if forwarded is None else forwarded.decode("latin-1"))


def set_visitor(hit: Hit, salt: bytes, address: str | None, ua: str | None) -> None:
    """Set ``hit.visitor``, the day's hash of ``address``'s network, ``ua`` and the hit's
    campaign (else its page's host)."""
    network = None if address is None else anonymise(address, "truncate")
    hit.visitor = visitor_hash(salt, network, ua, hit.cid or _site(hit))


def _site(hit: Hit) -> str | None:
    """The host of the hit's page (``url``, else its Referer); None if none."""
    page = hit.url or hit.referer
    return (host_of(page) or None) if page else None
