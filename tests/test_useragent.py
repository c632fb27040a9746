"""Tests for pixel_server.useragent: fast ua-parser resolver + user-agents classification."""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from typing import NamedTuple

import pytest
import ua_parser
import ua_parser.user_agent_parser
import user_agents

from pixel_server import useragent
from pixel_server.useragent import (
    MAX_UA_CHARS,
    ParsedUA,
    device_type,
    parse_user_agent,
    warm_up,
)

DEVICE_TYPES = {"desktop", "mobile", "tablet", "bot", "other"}


class Case(NamedTuple):
    ua: str
    device: str
    is_bot: bool
    browser: str | None


CASES: dict[str, Case] = {
    "chrome-windows": Case(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "desktop",
        False,
        "Chrome",
    ),
    "safari-macos": Case(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        "desktop",
        False,
        "Safari",
    ),
    "firefox-linux": Case(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "desktop",
        False,
        "Firefox",
    ),
    "iphone-safari": Case(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        "mobile",
        False,
        "Mobile Safari",
    ),
    "ipad-safari": Case(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        "tablet",
        False,
        "Mobile Safari",
    ),
    "android-chrome-phone": Case(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "mobile",
        False,
        "Chrome Mobile",
    ),
    "android-tablet": Case(
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "tablet",
        False,
        "Chrome",
    ),
    "samsung-internet": Case(
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "mobile",
        False,
        "Samsung Internet",
    ),
    "apple-mail-macos": Case(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "desktop",
        False,
        "Apple Mail",
    ),
    "outlook-windows": Case(
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17425; Pro)",
        "desktop",
        False,
        "Outlook",
    ),
    "thunderbird": Case(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
        "desktop",
        False,
        "Thunderbird",
    ),
    # Gmail's image proxy fetches on the reader's behalf; user-agents calls it a PC.
    "google-image-proxy": Case(
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "desktop",
        False,
        "GmailImageProxy",
    ),
    # Yahoo's proxy, by contrast, is classified as a spider by ua-parser's regexes.
    "yahoo-mail-proxy": Case(
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "bot",
        True,
        "YahooMailProxy",
    ),
    "googlebot": Case(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "bot",
        True,
        "Googlebot",
    ),
    "curl": Case("curl/8.4.0", "other", False, "curl"),
}

UAS = [case.ua for case in CASES.values()]
UA_IDS = list(CASES)

GARBAGE = {
    "nul": "\x00",
    "many-nuls": "\x00" * 1000,
    "c0-controls": "".join(chr(c) for c in range(32)) + "\x7f",
    "c1-controls": "".join(chr(c) for c in range(0x80, 0xA0)),
    "crlf-injection": "Mozilla/5.0\r\nX-Injected: 1\r\n\r\n",
    "latin1-bytes": bytes(range(256)).decode("latin-1"),
    "replacement-chars": "\ufffd" * 50,
    "emoji-and-cjk": "Mozilla/5.0 (\U0001f600; 中文; Android 14) Chrome/\u0661\u0662\u0663",
    "regex-metacharacters": "((((((([[[[[{{{{{****+++???\\\\$$$^^^|||" * 10,
    "unbalanced-parens": "Mozilla/5.0 (Windows NT 10.0; Win64; x64",
    "long-digit-run": "Chrome/" + "9" * 400,
    "whitespace-only": " \t ",
}


def _expected_from_user_agents(ua: str) -> ParsedUA:
    """What user_agents.parse (slow legacy parser) says, in ParsedUA form."""
    agent = user_agents.parse(ua)
    return ParsedUA(
        browser=None if agent.browser.family == "Other" else agent.browser.family,
        browser_version=agent.browser.version_string or None,
        os=None if agent.os.family == "Other" else agent.os.family,
        os_version=agent.os.version_string or None,
        device=device_type(agent),
        is_bot=bool(agent.is_bot),
    )


def _never_seen_uas(count: int, rng: random.Random) -> list[str]:
    """Realistic user agents with random version numbers, unique within this process."""
    templates = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36 (t{n})",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{a}_{c}) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/{a}.{c} Safari/605.1.15 (t{n})",
        "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.{c} (t{n})",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {a}_{c} like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/{a}.{c} Mobile/15E{b} Safari/604.1 (t{n})",
        "Mozilla/5.0 (Linux; Android {a}; SM-S{b}B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36 (t{n})",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{a}.0) Gecko/20100101 "
        "Thunderbird/{a}.{c}.{b} (t{n})",
    ]
    return [
        templates[n % len(templates)].format(
            a=rng.randint(10, 140), b=rng.randint(1000, 9999), c=rng.randint(0, 999), n=n
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(("ua", "device", "is_bot", "browser"), CASES.values(), ids=UA_IDS)
def test_known_user_agent_is_classified_as_expected(
    ua: str, device: str, is_bot: bool, browser: str | None
) -> None:
    """Each real-world UA in the table gets the expected device class, bot flag and browser."""
    parsed = parse_user_agent(ua)

    assert (parsed.device, parsed.is_bot, parsed.browser) == (device, is_bot, browser)


@pytest.mark.parametrize("ua", UAS, ids=UA_IDS)
def test_result_agrees_with_user_agents_parse(ua: str) -> None:
    """Our fast path gives the same families, versions and device class as user_agents.parse."""
    assert parse_user_agent(ua) == _expected_from_user_agents(ua)


@pytest.mark.parametrize("ua", UAS, ids=UA_IDS)
def test_fast_user_agent_object_equals_the_one_user_agents_builds(ua: str) -> None:
    """The UserAgent we assemble without __init__ has the same field values as user_agents'."""
    assert vars(useragent._to_user_agent(ua)) == vars(user_agents.parse(ua))


def test_bypassed_init_sets_exactly_the_fields_we_set() -> None:
    """user_agents' UserAgent.__init__ still sets exactly the attributes we set by hand."""
    ua = CASES["chrome-windows"].ua

    assert set(vars(user_agents.parse(ua))) == set(vars(useragent._to_user_agent(ua)))


def test_chrome_on_windows_has_versions_in_user_agents_format() -> None:
    """Browser and OS versions are user_agents' dotted version strings."""
    parsed = parse_user_agent(CASES["chrome-windows"].ua)

    assert parsed == ParsedUA("Chrome", "124.0.0", "Windows", "10", "desktop", False)


def test_unknown_parts_are_none_not_other() -> None:
    """A UA with no recognisable OS reports os and os_version as None rather than "Other"."""
    parsed = parse_user_agent("curl/8.4.0")

    assert (parsed.os, parsed.os_version) == (None, None)


def test_empty_user_agent_is_other_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The empty string short-circuits to an "other" result without touching the parser."""

    def fail(ua: str) -> ParsedUA:
        raise AssertionError(f"parser called for {ua!r}")

    monkeypatch.setattr(useragent, "_parse_cached", fail)

    assert parse_user_agent("") == ParsedUA(None, None, None, None, "other", False)


def test_max_ua_chars_is_512() -> None:
    """The truncation limit is 512 characters."""
    assert MAX_UA_CHARS == 512


def test_ten_kilobyte_user_agent_parses_like_its_first_512_chars() -> None:
    """A 10 KB UA does not raise and yields the same result as its 512-char prefix."""
    long_ua = CASES["android-chrome-phone"].ua + " " + "A" * 10_240

    assert parse_user_agent(long_ua) == parse_user_agent(long_ua[:MAX_UA_CHARS])


def test_text_past_the_limit_is_not_parsed() -> None:
    """A bot token beyond MAX_UA_CHARS is cut off before parsing, so it is not seen."""
    ua = "x" * MAX_UA_CHARS + " Googlebot/2.1"

    assert parse_user_agent(ua).is_bot is False


def test_long_user_agent_is_cached_under_its_truncated_prefix() -> None:
    """Two long UAs sharing a 512-char prefix share one cache entry."""
    prefix = "Mozilla/5.0 (cache-prefix-test) " + "p" * MAX_UA_CHARS

    assert parse_user_agent(prefix + "tail-one") is parse_user_agent(prefix + "tail-two")


@pytest.mark.parametrize("ua", GARBAGE.values(), ids=list(GARBAGE))
def test_garbage_user_agent_does_not_raise(ua: str) -> None:
    """Control characters, NULs and other junk parse to a valid result instead of raising."""
    assert parse_user_agent(ua).device in DEVICE_TYPES


def test_random_code_points_do_not_raise() -> None:
    """Random strings of arbitrary non-surrogate code points never make the parser raise."""
    rng = random.Random(20240601)

    def code_point() -> str:
        if rng.random() < 0.5:
            return chr(rng.randrange(0x100))  # what a latin-1 decoded header can hold
        c = rng.randrange(0x110000 - 0x800)
        return chr(c + 0x800 if c >= 0xD800 else c)  # skip the surrogate block

    for _ in range(300):
        ua = "".join(code_point() for _ in range(rng.randint(1, 700)))
        assert parse_user_agent(ua).device in DEVICE_TYPES


def test_lone_surrogates_do_not_raise() -> None:
    """A UA with lone surrogates (not UTF-8 encodable) is parsed instead of raising."""
    parsed = parse_user_agent("Mozilla/5.0 \ud800 (compatible; Googlebot/2.1) \udfff")

    assert parsed.is_bot is True


def test_repeated_user_agent_returns_the_identical_cached_object() -> None:
    """Parsing an equal (not identical) UA string again returns the same cached ParsedUA."""
    first = "".join(["Mozilla/5.0 (cache-identity-test) ", "Firefox/99.0"])
    second = "".join(["Mozilla/5.0 (cache-identity-test) ", "Firefox/99.0"])
    assert first is not second

    assert parse_user_agent(first) is parse_user_agent(second)


def test_warm_up_builds_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """warm_up() performs the lazy resolver initialisation up front."""
    monkeypatch.setattr(useragent, "_resolver", None)

    warm_up()

    assert useragent._resolver is not None


def test_rust_resolver_is_used_when_installed() -> None:
    """With ua-parser-rs installed the resolver is the fast Rust-backed one."""
    from ua_parser.regex import Resolver as RegexResolver

    assert isinstance(useragent._get_resolver(), RegexResolver)


def test_missing_rust_resolver_falls_back_to_basic_resolver(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ua-parser-rs we build ua-parser's pure-Python BasicResolver and log a warning."""
    monkeypatch.setitem(sys.modules, "ua_parser.regex", None)

    with caplog.at_level(logging.WARNING, logger=useragent.__name__):
        resolver = useragent._build_resolver()

    assert isinstance(resolver, ua_parser.BasicResolver)
    assert "ua-parser-rs" in caplog.text


def test_concurrent_first_calls_build_the_resolver_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads racing on the first parse share one resolver build."""
    real_build = useragent._build_resolver
    builds: list[object] = []

    def counting_build() -> ua_parser.Resolver:
        # widens the race window; not synchronisation: with the lock, one build whatever
        # the delay; without it, a longer window only makes the extra builds likelier
        time.sleep(0.05)
        resolver = real_build()
        builds.append(resolver)
        return resolver

    monkeypatch.setattr(useragent, "_resolver", None)
    monkeypatch.setattr(useragent, "_build_resolver", counting_build)
    barrier = threading.Barrier(8)

    def first_call() -> None:
        barrier.wait()
        useragent._get_resolver()

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(builds) == 1


def test_never_seen_user_agents_parse_at_least_10x_faster_than_user_agents() -> None:
    """2,000 uncached UAs cost at most a tenth of user_agents.parse's per-UA time each."""
    uas = _never_seen_uas(2050, random.Random(8675309))
    legacy_sample, ours = uas[:50], uas[50:]
    warm_up()
    user_agents.parse("Mozilla/5.0 (warm-up) Chrome/1.0")  # legacy regexes compiled at import
    legacy_cache = getattr(ua_parser.user_agent_parser, "_PARSE_CACHE", None)
    if legacy_cache is not None:
        legacy_cache.clear()
    misses_before = useragent._parse_cached.cache_info().misses

    # CPU time of this process, not wall time: on a busy machine either loop can be
    # preempted for tens of milliseconds, as long as the whole loop; CPU time leaves those out
    start = time.process_time()
    for ua in legacy_sample:
        user_agents.parse(ua)
    legacy_per_ua = (time.process_time() - start) / len(legacy_sample)

    start = time.process_time()
    for ua in ours:
        parse_user_agent(ua)
    ours_total = time.process_time() - start

    assert useragent._parse_cached.cache_info().misses - misses_before == len(ours)
    assert ours_total <= len(ours) * legacy_per_ua / 10, (
        f"ours {ours_total / len(ours) * 1e6:.1f} us/UA vs "
        f"user_agents {legacy_per_ua * 1e6:.1f} us/UA"
    )
