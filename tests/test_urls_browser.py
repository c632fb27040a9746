"""The approved host is the host a browser goes to: a differential test against ada (WHATWG).

Every candidate the validator accepts is read again by ada, the WHATWG URL parser of
Node.js, which stands in for the browser that follows the Location header.  Candidates come
from a deterministic generator (thousands of combinations of the classic bypass pieces),
from hypothesis, and from a public open-redirect payload list (tests/data/README.md).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import ada_url
import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.config import Settings
from pixel_server.urls import Target, TargetPolicy, TargetRejected, normalize_target, parse_target

from conftest import running

PAYLOADS = Path(__file__).parent / "data" / "open-redirect-payloads.txt"
ALLOWED = ("example.com", "xn--bcher-kva.example", "whitelisteddomain.tld")
POLICIES = {
    "open": TargetPolicy(),
    "allowlist": TargetPolicy.from_strings(ALLOWED),
    "allowlist+ip": TargetPolicy.from_strings((*ALLOWED, "192.0.2.1", "[2001:db8::1]"), True),
    "ip": TargetPolicy(allow_ip=True),
}

SCHEMES = [
    *("https://", "http://", "HTTPS://", "HtTp://", "hTTpS://", "https:", "https:/", "https:///"),
    *("//", "///", "/\\", "\\\\", "https:\\\\", "https:/\\", " https://", "\thttps://"),
    *("ht\ttps://", "https\n://", "javascript://", "https%3A//", "ftp://", "\u0130https://"),
]
USERINFO = [
    *("", "trusted.example@", "trusted.example%40", "user:pass@", ":@", "@"),
    *("trusted.example\\@", "example.com%2540", "example.com\uff20", "u@example.com@"),
]
HOSTS = [
    # Plain names and their look-alikes on and off label boundaries.
    *("example.com", "EXAMPLE.COM", "sub.example.com", "a.b.example.com", "evil-example.com"),
    *("example.com.evil.net", "notexample.com", "example.com.", ".example.com", "example..com"),
    *("-example.com", "example-.com", "a_b.example.com", "localhost", "intranet", "com"),
    # Percent-encoding, single and double.
    *("evil%2ecom", "evil%252ecom", "ex%41mple.com", "ex%2541mple.com", "%65xample.com"),
    *("example.com%00", "example.com%2f.evil.net", "example.com%23.evil.net"),
    # Unicode dots, slashes, at signs, confusables and compatibility forms.
    *("evil\u3002com", "evil\uff0ecom", "evil\uff61com", "evil\u2024com", "evil\ufe52com"),
    *("example.com\uff0f.evil.net", "evil.net\uff03.example.com", "\uff45xample.com"),
    *("\u0435xample.com", "\u24d4xample.com", "\u212ftest.example.com", "\u212aelvin.example.com"),
    *("\u2170x.example.com", "\u0131example.com", "\u0130stanbul.example.com", "ex\u0101mple.com"),
    # Invisible and default-ignorable code points.
    *("ex\u00adample.com", "ex\u200bample.com", "ex\u200cample.com", "ex\u200dample.com"),
    *("ex\u200eample.com", "ex\u202eample.com", "ex\u2060ample.com", "ex\u2064ample.com"),
    *("ex\ufeffample.com", "ex\u180eample.com", "ex\u180bample.com", "ex\ufe0fample.com"),
    *("ex\U000e0041ample.com", "ex\U000e0100ample.com", "ex\u034fample.com", "ex\u3164ample.com"),
    *("ex\u061cample.com", "ex\u2066ample.com", "example.com\u200b", "\u200bexample.com"),
    # IDNA and punycode edge cases.
    *("b\u00fccher.example", "xn--bcher-kva.example", "XN--BCHER-KVA.example", "xn--a.example"),
    *("xn--.example", "xn--ls8h.la", "\U0001f4a9.la", "stra\u1e9ee.example", "stra\u00dfe.example"),
    *(
        "xn--strae-oqa.example",
        "strasse.example",
        "fa\u00df.de",
        "\u03c2.example",
        "xn--zca.example",
    ),
    *("xn--bcher-kva.example.", "shop.b\u00fccher.example", "b\u00fccher\u3002example"),
    *("a\u0308.example", "\u00e4.example", "\u05d0\u0031.example", "\u0661\u0031.example"),
    # Code points of recent Unicode versions, where IDNA tables of different ages disagree.
    *("a\u209db.example.com", "\u0558.example.com", "a\ua7ddb.example.com", "\U0001d6a6.example"),
    ("a" * 63 + ".example.com"),
    ("a" * 64 + ".example.com"),
    # Hosts a browser reads as IP addresses.
    *("127.0.0.1", "127.1", "0x7f.1", "0x7f000001", "2130706433", "017700000001", "192.0.2.1"),
    *(
        "192.0.2.1.",
        "192.000.2.1",
        "\uff11\uff19\uff12.0.2.1",
        "example.0x",
        "example.1",
        "1.2.3.4.5",
    ),
    *("[::1]", "[::ffff:127.0.0.1]", "[2001:db8::1]", "[2001:DB8:0::1]", "[fe80::1%25eth0]"),
    *("[v1.x]", "[::1", "::1]", "[2001:db8::1].example.com", "[192.0.2.1]"),
    # Whitespace inside the host.
    *("ex\tample.com", "ex\nample.com", "ex\rample.com", "ex ample.com", "ex\u00a0ample.com"),
]
PORTS = [
    *("", ":443", ":80", ":8443", ":0", ":65535", ":65536", ":00443", ":", ":\uff18\uff10"),
    *(":8080:80", ":-1", ":0x50", ":443\t", ":80@evil.net"),
]
TAILS = [
    *("", "/", "/path?q=1#f", "?", "#", "\\evil.net", "/\\evil.net", "?@evil.net", "#@evil.net"),
    *("/%2f%2fevil.net", "/%5cevil.net", "/..%2f..%2fevil.net", "@evil.net", "/caf\u00e9?q=\u00fc"),
    *("/\r\nLocation: https://evil.net", "/%0d%0aLocation:%20https://evil.net", "/\u200b"),
    *("//evil.net", "/.//evil.net", "?next=//evil.net", "#//evil.net/\\"),
]


def generated_candidates(sampled: int = 2500, seed: int = 6) -> list[str]:
    """Every host with plain schemes and ports, every scheme and userinfo, then a seeded
    sample that joins all the pieces (hosts, ports and tails included)."""
    plain = ("https://", "HTTP://")
    out = ["".join(p) for p in itertools.product(plain, HOSTS, PORTS[:6], ("/", ""))]
    out += ["".join(p) for p in itertools.product(SCHEMES, USERINFO, HOSTS[:6], ("/x",))]
    rng = random.Random(seed)
    out += [
        "".join(rng.choice(pieces) for pieces in (SCHEMES, USERINFO, HOSTS, PORTS, TAILS))
        for _ in range(sampled)
    ]
    return out


def payload_candidates() -> list[str]:
    """The payload list as it is, and each payload behind an allowlisted site's URL."""
    lines = [line for line in PAYLOADS.read_text(encoding="utf-8").splitlines() if line]
    return lines + ["https://www.whitelisteddomain.tld" + line for line in lines]


def browser_origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as a WHATWG parser reads url; it must parse."""
    seen = ada_url.parse_url(url, attributes=("protocol", "hostname", "port"))
    scheme = seen["protocol"].removesuffix(":")
    port = int(seen["port"]) if seen["port"] else {"http": 80, "https": 443}[scheme]
    return scheme, seen["hostname"], port


def in_allowlist(host: str, policy: TargetPolicy) -> bool:
    return not policy.allow_hosts or any(
        host == entry or host.endswith("." + entry) for entry in policy.allow_hosts
    )


def host_text(candidate: str) -> str:
    """The raw authority of a candidate the validator accepted (it starts with a scheme)."""
    rest = candidate.split("://", 1)[1]
    return next(iter(rest.replace("?", "/").replace("#", "/").split("/")))


def accepted(candidates: list[str]) -> Iterator[tuple[str, str, TargetPolicy, Target]]:
    for candidate in candidates:
        for name, policy in POLICIES.items():
            try:
                yield candidate, name, policy, parse_target(candidate, policy)
            except TargetRejected:
                continue


def assert_browser_goes_to_approved_host(
    candidate: str, policy: TargetPolicy, target: Target, location: str
) -> None:
    """The invariant of section 7, for one accepted candidate and its Location header."""
    approved = (target.scheme, target.host, target.port)
    assert browser_origin(location) == approved, (candidate, location)
    assert browser_origin(candidate) == approved, candidate
    assert in_allowlist(target.host, policy), (candidate, target.host)
    assert not any(unicodedata.category(c) == "Cf" for c in host_text(candidate)), candidate
    assert normalize_target(target.url, policy) == target.url


def test_generator_covers_thousands_of_candidates_both_ways() -> None:
    """The generated set is large and exercises acceptance and refusal under every policy."""
    candidates = generated_candidates()
    results = list(accepted(candidates))
    assert len(set(candidates)) >= 6000
    assert {name for _, name, _, _ in results} == set(POLICIES)
    assert 300 <= len(results) < len(candidates) * len(POLICIES) // 2


def test_every_generated_target_that_is_accepted_goes_where_it_was_approved() -> None:
    """For each accepted generated candidate a browser goes to the approved, allowed host."""
    for candidate, _, policy, target in accepted(generated_candidates()):
        assert_browser_goes_to_approved_host(candidate, policy, target, target.url)


def test_every_payload_that_is_accepted_goes_where_it_was_approved() -> None:
    """The open-redirect payload list: accepted ones go to the approved, allowed host."""
    results = list(accepted(payload_candidates()))
    for candidate, _, policy, target in results:
        assert_browser_goes_to_approved_host(candidate, policy, target, target.url)
    allowlisted = {t.host for _, name, _, t in results if name.startswith("allowlist")}
    assert allowlisted == {"www.whitelisteddomain.tld"}


_PIECES = st.tuples(
    st.sampled_from(SCHEMES),
    st.sampled_from(USERINFO),
    st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3).map(".".join),
    st.sampled_from(PORTS),
    st.sampled_from(TAILS),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(candidate=_PIECES, name=st.sampled_from(sorted(POLICIES)))
def test_any_combination_of_pieces_that_is_accepted_goes_where_it_was_approved(
    candidate: str, name: str
) -> None:
    """Hypothesis joins pieces (and hosts) freely; an accepted one keeps the invariant."""
    policy = POLICIES[name]
    try:
        target = parse_target(candidate, policy)
    except TargetRejected:
        return
    assert_browser_goes_to_approved_host(candidate, policy, target, target.url)


@pytest.mark.parametrize(
    "host",
    [h for h in HOSTS if any(unicodedata.category(c) == "Cf" or c in "\u034f\u3164" for c in h)]
    + ["ex\u180bample.com", "ex\ufe0fample.com", "ex\U000e0100ample.com"],
)
def test_invisible_code_point_in_host_is_refused(host: str) -> None:
    """Default-ignorable code points in the host are refused, not deleted by IDNA mapping."""
    with pytest.raises(TargetRejected) as info:
        normalize_target(f"https://{host}/", POLICIES["open"])
    assert info.value.reason == "invisible"


def test_invisible_code_point_in_path_is_percent_encoded() -> None:
    """Outside the host an invisible code point is kept, visibly, as its UTF-8 escapes."""
    assert normalize_target("https://example.com/a\u200bb", POLICIES["open"]) == (
        "https://example.com/a%E2%80%8Bb"
    )


def test_capital_sharp_s_is_signed_as_the_host_a_browser_visits() -> None:
    """stra\u1e9ee is signed as the A-label a WHATWG parser derives, shown in the target."""
    target = parse_target("https://stra\u1e9ee.example/", POLICIES["open"])
    assert target.url == "https://xn--strae-oqa.example/"
    assert browser_origin("https://stra\u1e9ee.example/")[1] == target.host


@pytest.mark.parametrize("char", ["\u0558", "\u209d", "\ua7dd", "\U0001b123", "\U0001d6a6"])
def test_host_that_idna_and_a_browser_read_differently_is_refused(char: str) -> None:
    """Where Python's idna and the WHATWG parser disagree on a host, the target is refused."""
    url = f"https://a{char}b.example/"
    try:
        browser_host: str | None = browser_origin(url)[1]
    except ValueError:
        browser_host = None
    try:
        ours: str | None = idna.encode(f"a{char}b.example", uts46=True).decode()
    except idna.IDNAError:
        ours = None
    if ours is not None and ours == browser_host:
        assert parse_target(url, POLICIES["open"]).host == browser_host
    else:
        with pytest.raises(TargetRejected):
            normalize_target(url, POLICIES["open"])


@pytest.fixture
def allowlist_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(redirect_hosts=",".join(ALLOWED))


def _endpoint_sample() -> list[str]:
    """Accepted candidates under the allowlist, one per distinct canonical URL."""
    policy = TargetPolicy.from_strings(ALLOWED)
    seen: dict[str, str] = {}
    for candidate in generated_candidates() + payload_candidates():
        try:
            seen.setdefault(normalize_target(candidate, policy), candidate)
        except TargetRejected:
            continue
    return sorted(seen.values())


async def test_real_redirects_send_browsers_only_to_approved_allowlisted_hosts(
    allowlist_settings: Settings,
) -> None:
    """Signed links through GET /r/<token>: ada reads each Location as the approved host."""
    policy = TargetPolicy.from_settings(allowlist_settings)
    sample = _endpoint_sample()
    assert len(sample) >= 50
    async with running(allowlist_settings) as h:
        for start in range(0, len(sample), 50):
            batch = sample[start : start + 50]
            targets = [parse_target(c, policy) for c in batch]
            tokens = [
                h.rt.link_tokens.dumps({"u": t.url, "a": 1, "utm_source": "n\u00fc"})
                for t in targets
            ]
            answers = await asyncio.gather(*(h.client.get(f"/r/{tok}") for tok in tokens))
            for candidate, target, response in zip(batch, targets, answers, strict=True):
                assert response.status_code == 302, candidate
                location = response.headers["location"]
                assert_browser_goes_to_approved_host(candidate, policy, target, location)


async def test_real_redirect_refuses_a_signed_target_that_fails_the_browser_check(
    allowlist_settings: Settings,
) -> None:
    """A token carrying a refused target (signed before a policy change) gets no Location."""
    refused = [
        "https://ex\u00adample.com/",
        "https://example.com\u200b/",
        "https://evil-example.com/",
        "https://example.com.evil.net/",
        "https://www.whitelisteddomain.tld@google.com/",
    ]
    async with running(allowlist_settings) as h:
        for target in refused:
            response = await h.client.get(f"/r/{h.rt.link_tokens.dumps({'u': target})}")
            assert response.status_code == 403, target
            assert "location" not in response.headers
