"""User-agent parsing: browser / OS / device class for a request's User-Agent header.

This is the only module that imports ``user_agents`` or ``ua_parser``.

``user_agents.parse`` runs ua-parser's legacy pure-Python regex API, which costs
roughly 0.6-1.1 ms for a user agent it has not seen before. ua-parser 1.x ships a
resolver backed by Rust (``ua_parser_rs``) that resolves the same regex set in
about 10-20 us. We keep user-agents' device classification (its ``UserAgent``
properties ``is_mobile`` / ``is_tablet`` / ``is_pc`` / ``is_bot``) but feed it from
the fast resolver, and cache the final result.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, NamedTuple

import ua_parser
from ua_parser import Domain
from user_agents.parsers import (
    UserAgent,
    parse_browser,
    parse_device,
    parse_operating_system,
)

__all__ = ["MAX_UA_CHARS", "ParsedUA", "device_type", "parse_user_agent", "warm_up"]

logger = logging.getLogger(__name__)


class ParsedUA(NamedTuple):
    """What we keep from a User-Agent header."""

    browser: str | None  # e.g. "Chrome"; None when unknown ("Other")
    browser_version: str | None  # e.g. "124.0.0" (user_agents' version_string); None if empty
    os: str | None  # e.g. "Windows"; None when unknown ("Other")
    os_version: str | None  # e.g. "10"; None if empty
    device: str  # one of "desktop", "mobile", "tablet", "bot", "other"
    is_bot: bool


#: Longer user agents are truncated to this many characters before parsing AND
#: before caching, so a hostile multi-kilobyte header can neither slow the regexes
#: down nor make a cache entry large. Real user agents are well under 512 chars.
MAX_UA_CHARS: int = 512

_EMPTY = ParsedUA(None, None, None, None, "other", False)

_resolver: ua_parser.Resolver | None = None
_resolver_lock = threading.Lock()


def _build_resolver() -> ua_parser.Resolver:
    matchers = ua_parser.load_lazy_builtins()
    try:
        from ua_parser.regex import Resolver as RegexResolver
    except ImportError:  # no ua-parser-rs: same results, ~30x slower per cache miss (~0.6 ms)
        logger.warning("ua-parser-rs is not installed; user-agent parsing falls back to Python")
        return ua_parser.BasicResolver(matchers)
    return RegexResolver(matchers)


def _get_resolver() -> ua_parser.Resolver:
    global _resolver
    resolver = _resolver
    if resolver is None:
        # Building compiles the whole regex set (~0.1 s); the lock makes
        # concurrent first callers wait for one build instead of each doing it.
        with _resolver_lock:
            if _resolver is None:
                _resolver = _build_resolver()
            resolver = _resolver
    return resolver


def warm_up() -> None:
    """Build the resolver now (call once at startup) so the first request does not pay it."""
    _parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) warm-up")


def _to_user_agent(ua: str) -> Any:
    """Resolve ``ua`` with the fast resolver into a ``user_agents.parsers.UserAgent``.

    We build the object with ``UserAgent.__new__`` and set its fields ourselves
    because ``UserAgent.__init__`` runs the slow legacy parser; this sets exactly
    the four attributes user-agents 2.2's ``__init__`` sets, from the same regex
    set, with the same "Other" defaults. If a user-agents upgrade changes which
    fields ``__init__`` sets, tests/test_useragent.py's field-parity test fails.
    """
    try:
        result = _get_resolver()(ua, Domain.ALL).complete().with_defaults()
    except UnicodeEncodeError:
        # The Rust resolver only takes encodable UTF-8; lone surrogates become "?".
        clean = ua.encode("utf-8", "replace").decode("utf-8")
        result = _get_resolver()(clean, Domain.ALL).complete().with_defaults()
    browser, os, device = result.user_agent, result.os, result.device
    obj = UserAgent.__new__(UserAgent)
    obj.ua_string = ua
    obj.os = parse_operating_system(os.family, os.major, os.minor, os.patch, os.patch_minor)
    obj.browser = parse_browser(
        browser.family, browser.major, browser.minor, browser.patch, browser.patch_minor
    )
    obj.device = parse_device(device.family, device.brand, device.model)
    return obj


def device_type(agent: Any) -> str:
    """Our device class from user-agents' flags: bot, tablet, mobile, desktop or other."""
    if agent.is_bot:
        return "bot"
    if agent.is_tablet:
        return "tablet"
    if agent.is_mobile:
        return "mobile"
    if agent.is_pc:
        return "desktop"
    return "other"


def _parse(ua: str) -> ParsedUA:
    agent = _to_user_agent(ua)
    browser: str = agent.browser.family
    os: str = agent.os.family
    return ParsedUA(
        browser=None if browser == "Other" else browser,
        browser_version=agent.browser.version_string or None,
        os=None if os == "Other" else os,
        os_version=agent.os.version_string or None,
        device=device_type(agent),
        is_bot=bool(agent.is_bot),
    )


# Bounded LRU (thread-safe in CPython). Pixel traffic is dominated by a few
# thousand distinct user agents (current browser builds, mail clients, image
# proxies), so 16384 entries keeps that working set hot with room to spare while
# bounding memory: an entry is the key (at most MAX_UA_CHARS chars, ~0.2 KB for a
# typical UA, ~0.56 KB at the cap) plus ~0.45 KB for the ParsedUA and cache links,
# i.e. ~10 MB typical and ~16 MB worst case when full. A miss costs only ~20 us,
# so a bigger cache would buy little and an unbounded one could be grown without
# limit by clients sending random user agents.
_parse_cached = functools.lru_cache(maxsize=16384)(_parse)


def parse_user_agent(ua: str) -> ParsedUA:
    """Parse a User-Agent header value (cached; truncated to MAX_UA_CHARS first)."""
    if not ua:
        return _EMPTY
    if len(ua) > MAX_UA_CHARS:
        ua = ua[:MAX_UA_CHARS]
    return _parse_cached(ua)
