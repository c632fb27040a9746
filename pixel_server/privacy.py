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

It happens before the hit is queued, so nothing withheld reaches the spill journal either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import split_list

if TYPE_CHECKING:
    from .config import Settings
    from .hits import Hit

CONSENT = "consent"
GRANTED, DENIED = "granted", "denied"
# address modes that keep more than a network: a withheld hit is stored truncated instead
_PRECISE = frozenset(("full", "hash"))


@dataclass(frozen=True, slots=True)
class Policy:
    gpc: bool = True
    dnt: bool = True
    consent: str = "optional"  # optional, required, ignore
    identifier_params: frozenset[str] = frozenset()  # lower case

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        signals = {item.lower() for item in split_list(s.honour_signals)}
        return cls(
            gpc="gpc" in signals,
            dnt="dnt" in signals,
            consent=s.consent,
            identifier_params=frozenset(p.lower() for p in split_list(s.identifier_params)),
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
