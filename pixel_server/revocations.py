"""Revoked links: what a revocation names, and the set of them a click is checked against.

A revocation names one of:

* a link, by its id (:func:`payload.link_id`, a hash of its signed payload: the same link
  whatever key signed it), given as the link's URL or token;
* a campaign (``cid``), every link of it, or only those to one target;
* a target: a URL (its links exactly) or a host name (every link to that host).

Each has a reason, a time, and whether its page offers to continue to the target anyway
(``--offer-continue``). Its id is a hash of what it names, so revoking the same thing twice
keeps one record (the later reason), and ``--undo`` finds it again.

:class:`Revoked` is the set the redirect checks (snapshot.py keeps it fresh): with no
revocation at all, the check is one attribute read.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .payload import link_id

KINDS = ("link", "campaign", "target")
MAX_REASON_CHARS = 500
MAX_VALUE_CHARS = 2000


class RevocationError(ValueError):
    """A revocation that cannot be made: ``param`` names the input at fault."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Revocation:
    """One revocation: ``kind`` link (``link`` set), campaign (``cid``, maybe ``target``) or
    target (``target``: a URL, or a host name)."""

    kind: str
    link: str | None = None
    cid: str | None = None
    target: str | None = None
    reason: str = ""
    offer_continue: bool = False
    created_ms: int = 0

    @property
    def id(self) -> str:
        text = "\x00".join((self.kind, self.link or "", self.cid or "", self.target or ""))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "link": self.link,
            "cid": self.cid,
            "target": self.target,
            "reason": self.reason,
            "offer_continue": self.offer_continue,
            "created_ms": self.created_ms,
        }


def check_text(param: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise RevocationError(param, f"{param} is over {limit} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise RevocationError(param, f"{param} is not valid Unicode text") from None
    if "\x00" in value or not value.replace("\n", " ").isprintable():
        raise RevocationError(param, f"{param} has control characters")
    return value


def target_key(target: str) -> str:
    """A revoked target as it is matched: a URL as given (links carry canonical URLs, see
    :func:`urls.normalize_target`), a host name lowercased without its trailing dot."""
    target = check_text("target", target.strip(), MAX_VALUE_CHARS)
    if not target:
        raise RevocationError("target", "the target is empty")
    if "://" in target:
        return target
    if "/" in target or " " in target:
        raise RevocationError("target", "a target is a URL (https://...) or a host name")
    return target.lower().rstrip(".")


def make(
    *,
    link: str | None = None,
    cid: str | None = None,
    target: str | None = None,
    reason: str = "",
    offer_continue: bool = False,
    now_ms: int = 0,
) -> Revocation:
    """A checked revocation of a link id, a campaign (maybe one target of it) or a target."""
    reason = check_text("reason", reason, MAX_REASON_CHARS)
    shown_target = None if target is None else target_key(target)
    if link is not None:
        if cid is not None or target is not None:
            raise RevocationError("link", "a link is revoked alone, without cid or target")
        return Revocation(
            "link", link=link, reason=reason, offer_continue=offer_continue, created_ms=now_ms
        )
    if cid is not None:
        cid = check_text("cid", cid, MAX_VALUE_CHARS)
        if not cid:
            raise RevocationError("cid", "the campaign id is empty")
        return Revocation(
            "campaign",
            cid=cid,
            target=shown_target,
            reason=reason,
            offer_continue=offer_continue,
            created_ms=now_ms,
        )
    if shown_target is None:
        raise RevocationError("item", "name a link, a campaign (cid) or a target")
    return Revocation(
        "target",
        target=shown_target,
        reason=reason,
        offer_continue=offer_continue,
        created_ms=now_ms,
    )


@dataclass(frozen=True)
class Revoked:
    """Every revocation, indexed for the click's check (:meth:`match`)."""

    rules: tuple[Revocation, ...] = ()
    links: dict[str, Revocation] = field(default_factory=dict)
    campaigns: dict[str, Revocation] = field(default_factory=dict)
    campaign_targets: dict[tuple[str, str], Revocation] = field(default_factory=dict)
    urls: dict[str, Revocation] = field(default_factory=dict)
    hosts: dict[str, Revocation] = field(default_factory=dict)

    @classmethod
    def of(cls, rules: Iterable[Revocation]) -> Revoked:
        revoked = cls(tuple(rules))
        for rule in revoked.rules:
            if rule.kind == "link" and rule.link is not None:
                revoked.links[rule.link] = rule
            elif rule.kind == "campaign" and rule.cid is not None:
                if rule.target is None:
                    revoked.campaigns[rule.cid] = rule
                else:
                    revoked.campaign_targets[rule.cid, rule.target] = rule
            elif rule.target is not None:
                (revoked.urls if "://" in rule.target else revoked.hosts)[rule.target] = rule
        return revoked

    def match(self, payload: Mapping[str, Any], target: str) -> Revocation | None:
        """The revocation that applies to a link (its verified payload and target), if any."""
        if not self.rules:
            return None
        if self.links:
            rule = self.links.get(link_id(payload))
            if rule is not None:
                return rule
        cid = payload.get("cid")
        if isinstance(cid, str):
            rule = self.campaigns.get(cid) or self.campaign_targets.get((cid, target))
            if rule is None and self.campaign_targets:
                rule = self.campaign_targets.get((cid, host_of(target)))
            if rule is not None:
                return rule
        rule = self.urls.get(target)
        if rule is None and self.hosts:
            rule = self.hosts.get(host_of(target))
        return rule


NOTHING_REVOKED = Revoked()


def host_of(target: str) -> str:
    try:
        return (urlsplit(target).hostname or "").rstrip(".")
    except ValueError:
        return ""


REQUEST_KEYS = frozenset(("link", "cid", "target", "reason", "offer_continue"))


def token_of(text: str) -> str:
    """The token of a link's URL (``.../r/<token>``, any query or fragment dropped), or
    ``text`` itself if it is not such a URL."""
    text = text.strip()
    _head, sep, tail = text.rpartition("/r/")
    if not sep or "/" in tail:
        return text
    return tail.split("?", 1)[0].split("#", 1)[0]


def link_of(text: str, loads: Callable[[str], dict[str, Any]]) -> str:
    """The link id of a link's URL or token, verified with ``loads`` (the redirect's signer);
    RevocationError if it is not a link this server signed."""
    from .payload import TARGET, InvalidToken

    try:
        payload = loads(token_of(text))
    except InvalidToken as exc:
        shown = text[:60].encode("unicode_escape").decode("ascii")
        raise RevocationError("link", f"{shown!r} is not a link signed here ({exc})") from None
    if not isinstance(payload.get(TARGET), str):
        raise RevocationError("link", "that token is a pixel's, not a link's")
    return link_id(payload)


def from_request(
    item: Any,
    loads: Callable[[str], dict[str, Any]],
    canonical: Callable[[str], str],
    now_ms: int,
) -> Revocation:
    """The revocation a JSON object (``POST /api/revocations``) or the CLI's options ask for:
    ``link`` (a URL or token), ``cid``, ``target``, ``reason``, ``offer_continue``. A target
    URL is matched in ``canonical`` form (the form links carry), where it has one."""
    if not isinstance(item, dict):
        raise RevocationError("item", "the body must be a JSON object")
    unknown = sorted(set(item) - REQUEST_KEYS)
    if unknown:
        raise RevocationError("item", f"unknown key {str(unknown[0])[:40]!r}")
    for key in ("link", "cid", "target", "reason"):
        if key in item and not isinstance(item[key], str):
            raise RevocationError(key, f"{key!r} must be a string")
    offer = item.get("offer_continue", False)
    if not isinstance(offer, bool):
        raise RevocationError("offer_continue", "'offer_continue' must be true or false")
    link = item.get("link")
    target = item.get("target")
    if isinstance(target, str) and "://" in target:
        # refused by the policy: no link can redirect there; matched as given
        with contextlib.suppress(ValueError):
            target = canonical(target.strip())
    return make(
        link=None if link is None else link_of(check_text("link", link, MAX_VALUE_CHARS), loads),
        cid=item.get("cid"),
        target=target,
        reason=item.get("reason") or "",
        offer_continue=offer,
        now_ms=now_ms,
    )
