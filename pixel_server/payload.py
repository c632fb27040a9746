"""The payload of a signed link or pixel token: what its keys mean, building one, reading one.

A payload is a JSON object (any key, any JSON value), signed but not encrypted (signing.py):
put opaque ids in it, never an email address.

* ``u`` (:data:`TARGET`): the redirect target, in canonical form (links only);
* ``x`` (:data:`EXPIRES`): the expiry, epoch seconds; past it the token is refused as
  ``expired``;
* ``a`` (:data:`APPEND_UTM`): when true, the redirect appends the token's UTM values that the
  target's query does not already set (links only);
* ``s`` (:data:`SENT`): when the email carrying the token was sent, epoch seconds: every open
  and click of a wrapped email knows its seconds since the send without a lookup (traffic.py
  tells a fetch at delivery from a reader by it), stored in the hit's ``sent_ts``;
* ``m`` (:data:`MESSAGE`): the id of the send (a mailing, or one email's Message-ID), stored
  in the hit's ``msg``;
* ``n`` (:data:`NOTRACK`): when the number ``1``, the redirect still goes to the target but no
  click is stored (``pixel-server link --notrack``). Tokens minted before it may carry an
  ``n`` field of another value: that stays a hit field (:func:`is_notrack`);
* ``t`` (:data:`TRAP`): ``1`` on the hidden trap link of a wrapped email (``wrap --trap``):
  only a machine follows it, and its click answers a blank page, never a redirect (bursts.py);
* every other key is a hit field: a named id (``cid``, ``uid``, ``utm_source``, ...) or an
  extra field kept in the hit's ``params``.

A click records where it sent the visitor (the target, plus any appended UTM values) in the
hit's :data:`LOCATION_FIELD`, so a link carries no field of that name.

:func:`build` writes the payload every release so far signed: the key order (fields, then
``u``, ``x``, ``a``, ``s``, ``m``) and ``a`` is ``1``; how it is written in a token is
signing.py's (docs/tokens.md). tests/test_payload.py holds tokens minted by an earlier release
that must keep verifying and decoding to the same hit.

Only the standard library (and cleaning.py): ``pixel-server link`` imports this module and has
to start fast (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .cleaning import clean_text
from .fields import MAX_KEY_CHARS, UTM_KEYS

TARGET = "u"
EXPIRES = "x"
APPEND_UTM = "a"
SENT = "s"
MESSAGE = "m"
NOTRACK = "n"
TRAP = "t"
CONTROL_KEYS = (TARGET, EXPIRES, APPEND_UTM, SENT, MESSAGE, NOTRACK, TRAP)  # never hit fields
MAX_MESSAGE_CHARS = 200  # an RFC 5322 Message-ID is rarely over 100
LOCATION_FIELD = "url"
_NUMBER = (int, float)


class InvalidToken(ValueError):
    """A token that cannot be trusted: its signature (signing.py) or its payload (here).

    ``reason`` is a metrics label: ``too_long``, ``malformed``, ``unknown_key``,
    ``bad_signature``, ``bad_payload`` or ``expired``. Defined here, and re-exported by
    signing.py, so that this module needs no itsdangerous.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build(
    fields: Mapping[str, str],
    *,
    target: str | None = None,
    expires: int | None = None,
    append_utm: bool = False,
    sent: int | None = None,
    message: str | None = None,
    notrack: bool = False,
    trap: bool = False,
) -> dict[str, Any]:
    """The payload of a token carrying ``fields``; ``target`` makes it a link.

    ``expires`` and ``sent`` are epoch seconds. The fields must already be checked
    (links.add_fields).
    """
    payload: dict[str, Any] = dict(fields)
    if target is not None:
        payload[TARGET] = target
    if expires is not None:
        payload[EXPIRES] = expires
    if append_utm:
        payload[APPEND_UTM] = 1
    if sent is not None:
        payload[SENT] = sent
    if message is not None:
        payload[MESSAGE] = message
    if notrack:
        payload[NOTRACK] = 1
    if trap:
        payload[TRAP] = 1
    return payload


def is_notrack(payload: Mapping[str, Any]) -> bool:
    """Whether a link is signed notrack (``n`` is the integer 1, as :func:`build` writes)."""
    value = payload.get(NOTRACK)
    return type(value) is int and value == 1


def is_trap(payload: Mapping[str, Any]) -> bool:
    """Whether a verified link payload is a trap link's (``t`` is the integer 1)."""
    value = payload.get(TRAP)
    return type(value) is int and value == 1


def read_send(payload: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The send time (epoch seconds) and message id a token carries, each None when absent or
    not of its type (a signed payload is ours; an odd value is ignored, not trusted)."""
    sent = payload.get(SENT)
    message = payload.get(MESSAGE)
    if not isinstance(sent, int) or isinstance(sent, bool) or sent < 0:
        sent = None
    if not isinstance(message, str) or not message:
        message = None
    return sent, message


def link_id(payload: Mapping[str, Any]) -> str:
    """A link's stable id: a hash of its signed payload (the same link under any key or
    token encoding), what ``pixel-server revoke`` names it by."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def check_expiry(payload: Mapping[str, Any], now: float | None = None) -> None:
    """Refuse (:class:`InvalidToken`) an expiry that is not a number (``bad_payload``), or
    that has passed (``expired``)."""
    expires = payload.get(EXPIRES)
    if expires is not None:
        if not isinstance(expires, _NUMBER):
            raise InvalidToken("bad_payload")
        if (time.time() if now is None else now) > expires:
            raise InvalidToken("expired")


def read_target(payload: Mapping[str, Any], now: float | None = None) -> str:
    """The target of a verified link payload, as signed: check it against the current policy
    before going there. Refuses what :func:`check_expiry` refuses, and a payload without a
    string target (``bad_payload``)."""
    check_expiry(payload, now)
    target = payload.get(TARGET)
    if not isinstance(target, str):
        raise InvalidToken("bad_payload")
    return target


def redirect_location(payload: Mapping[str, Any], target: str) -> str:
    """Where a link sends the visitor: ``target``, plus the UTM values if ``a`` asks for them."""
    return with_utm(target, payload) if payload.get(APPEND_UTM) else target


def hit_fields(
    payload: Mapping[str, Any], max_chars: int, location: str | None = None
) -> tuple[dict[str, str], set[str]]:
    """The hit fields of a payload (every key but the control keys), cleaned like query
    parameters, and the flags cleaning set; a click passes its ``location`` for
    :data:`LOCATION_FIELD`."""
    flags: set[str] = set()
    params: dict[str, str] = {}
    for key, value in payload.items():
        if key in CONTROL_KEYS and (key != NOTRACK or is_notrack(payload)):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        params[clean_text(key, MAX_KEY_CHARS, flags)] = clean_text(text, max_chars, flags)
    if location is not None:
        params[LOCATION_FIELD] = location
    return params, flags


def with_utm(target: str, payload: Mapping[str, Any]) -> str:
    """``target`` plus the payload's UTM values that its query does not already set."""
    parts = urlsplit(target)
    present = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    extra = [
        (key, str(payload[key])) for key in UTM_KEYS if payload.get(key) and key not in present
    ]
    if not extra:
        return target
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit(parts._replace(query=query))
