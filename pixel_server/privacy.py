"""What a hit may keep about the person who made it: opt-out signals and consent.

A hit is *withheld* (docs/privacy.md) when the request sends an honoured opt-out signal
(``Sec-GPC: 1``, ``DNT: 1``: PIXEL_HONOUR_SIGNALS) or its ``consent`` parameter says no
(PIXEL_CONSENT: ``optional`` withholds ``consent=denied``; ``required`` withholds every hit
without ``consent=granted``). A withheld hit is still answered and counted, but keeps no
identifier of a person: no uid, sid or message id, no parameter named in
PIXEL_IDENTIFIER_PARAMS (in the parameters JSON, or in the query of ``url``, ``ref`` or the
Referer), and no address more precise than its /24 or /48 (``full`` and ``hash`` fall back to
``truncate``). Only the daily visitor hash (salts.py) is kept for it: it cannot be linked
across days, nor recomputed once its day's salt is destroyed.

Every hit, withheld or not, loses the email addresses it was sent (PIXEL_REDACT_EMAILS, on
by default, as GA4's data redaction): in a parameter, a URL (also percent-encoded) or a UTM
value each becomes ``[email]``; a uid or sid holding one is dropped (it would name the
person in clear; the visitor hash counts the hit instead). The hit is flagged
``email_redacted``, so a report can show a page or template that sends addresses.

It happens before the hit is queued, so nothing withheld or redacted reaches the spill
journal either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .addresses import has_address, may_hold, redact
from .config import split_list
from .fields import UTM_KEYS

if TYPE_CHECKING:
    from .config import Settings
    from .hits import Hit

CONSENT = "consent"
GRANTED, DENIED = "granted", "denied"
# address modes that keep more than a network: a withheld hit is stored truncated instead
_PRECISE = frozenset(("full", "hash"))
REDACTED_FLAG = "email_redacted"
# the text columns an address is replaced in; an id holding one is dropped instead
_REDACTED_TEXT = ("cid", "url", "ref", "referer", *UTM_KEYS)
_DROPPED_IDS = ("uid", "sid")
_TEXT_OF = attrgetter(*_DROPPED_IDS, *_REDACTED_TEXT, "params")


@dataclass(frozen=True, slots=True)
class Policy:
    gpc: bool = True
    dnt: bool = True
    consent: str = "optional"  # optional, required, ignore
    identifier_params: frozenset[str] = frozenset()  # lower case
    redact_emails: bool = True

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        signals = {item.lower() for item in split_list(s.honour_signals)}
        return cls(
            gpc="gpc" in signals,
            dnt="dnt" in signals,
            consent=s.consent,
            identifier_params=frozenset(p.lower() for p in split_list(s.identifier_params)),
            redact_emails=s.redact_emails,
        )

    def withholds(self, dnt: int, gpc: int, consent: object) -> bool:
        """Whether a hit with these signals and ``consent`` value may keep no identifier."""
        if (gpc and self.gpc) or (dnt and self.dnt):
            return True
        if self.consent == "ignore":
            return False
        given = consent.strip().lower() if isinstance(consent, str) else None
        if self.consent == "required":
            return given != GRANTED
        return given == DENIED

    def ip_mode(self, mode: str, withheld: bool) -> str:
        """How a hit's address is stored: ``mode``, but never more than a network if withheld."""
        return "truncate" if withheld and mode in _PRECISE else mode

    def scrub(self, hit: Hit) -> None:
        """Take every identifier out of ``hit`` (its address is the caller's: ``ip_mode``)."""
        hit.uid = hit.sid = hit.msg = None
        if hit.params is not None:
            hit.params = self._params(hit.params)
        hit.url = self.url(hit.url)
        hit.ref = self.url(hit.ref)
        hit.referer = self.url(hit.referer)

    def redact(self, hit: Hit) -> bool:
        """Take the email addresses out of ``hit`` (see the module docstring), if this policy
        redacts them; whether there were any."""
        if not self.redact_emails:
            return False
        if not may_hold("\x00".join(filter(None, _TEXT_OF(hit)))):  # one join, no call a field
            return False  # the common case: nothing to redact
        found = False
        for name in _DROPPED_IDS:
            value = getattr(hit, name)
            if value is not None and has_address(value):
                setattr(hit, name, None)
                found = True
        for name in _REDACTED_TEXT:
            value = getattr(hit, name)
            if value is not None:
                clean = redact(value)
                if clean != value:
                    setattr(hit, name, clean)
                    found = True
        if hit.params is not None and may_hold(hit.params):
            clean_params = _redacted_json(hit.params)
            if clean_params != hit.params:
                hit.params = clean_params
                found = True
        return found

    def _params(self, text: str) -> str | None:
        try:
            params = json.loads(text)
        except ValueError:
            return None  # not ours to parse: nothing of it is kept
        if not isinstance(params, dict):
            return None
        kept = {k: v for k, v in params.items() if k.lower() not in self.identifier_params}
        if len(kept) == len(params):
            return text
        return json.dumps(kept, ensure_ascii=False, separators=(",", ":")) if kept else None

    def url(self, text: str | None) -> str | None:
        """``text`` without the identifier parameters of its query (and fragment)."""
        if text is None or ("?" not in text and "#" not in text):
            return text
        try:
            parts = urlsplit(text)
        except ValueError:
            return None  # a URL Python cannot split: nothing of it can be shown to be clean
        query, fragment = self._query(parts.query), self._query(parts.fragment)
        if query == parts.query and fragment == parts.fragment:
            return text
        return urlunsplit(parts._replace(query=query, fragment=fragment))

    def _query(self, text: str) -> str:
        if "=" not in text:
            return text
        pairs = parse_qsl(text, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() not in self.identifier_params]
        return text if len(kept) == len(pairs) else urlencode(kept)


def _redacted_json(text: str) -> str | None:
    """The parameters JSON ``text`` with the addresses in its names and string values
    replaced (parsed, so an escape is never cut); None if it is not JSON (nothing of it kept)."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    clean = _redacted_value(document)
    if clean == document:
        return text
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":"))


def _redacted_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted_value(v) for v in value]
    return value
