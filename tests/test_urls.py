"""Tests for pixel_server.urls: redirect-target validation and canonicalisation."""

from __future__ import annotations

import pickle
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.urls import TargetPolicy, TargetRejected, normalize_target

OPEN = TargetPolicy()
ALLOW_EXAMPLE = TargetPolicy.from_strings(["example.com"])
ALLOW_IP = TargetPolicy(allow_ip=True)

# (target, expected reason) under the default, open policy.
HOSTILE: list[tuple[str, str]] = [
    # Relative / scheme-relative / malformed-scheme forms browsers resolve to another host.
    ("//evil.com", "scheme"),
    ("/\\evil.com", "backslash"),
    ("\\\\evil.com", "backslash"),
    ("https:evil.com", "scheme"),
    ("http:/evil.com", "scheme"),
    ("http:///evil.com", "no_host"),
    ("https:\\\\evil.com", "backslash"),
    ("https://", "no_host"),
    ("https:///", "no_host"),
    ("https://?evil.com", "no_host"),
    ("https://:443/", "bad_host"),
    ("", "empty"),
    # Userinfo: everything before '@' is credentials, the real host comes after it.
    ("https://trusted.com@evil.com", "userinfo"),
    ("https://trusted.com\\@evil.com", "backslash"),
    ("https://trusted.com\\\\@evil.com", "backslash"),
    ("https://user:pass@evil.com/", "userinfo"),
    # Script and other non-http schemes, in any casing or disguise.
    ("javascript:alert(1)", "scheme"),
    ("JAVASCRIPT:alert(1)", "scheme"),
    ("JaVaScRiPt:alert(1)", "scheme"),
    (" javascript:alert(1)", "whitespace"),
    ("jav\tascript:alert(1)", "whitespace"),
    ("data:text/html;base64,PHNjcmlwdD4=", "scheme"),
    ("DaTa:text/html,x", "scheme"),
    ("vbscript:x", "scheme"),
    ("ftp://example.com", "scheme"),
    ("httpx://example.com", "scheme"),
    # Whitespace and control characters (header splitting, browser tab/newline stripping).
    ("https://exa\nmple.com", "whitespace"),
    ("https://exa\tmple.com", "whitespace"),
    ("https://example.com/a b", "whitespace"),
    ("https://example.com/\r\nSet-Cookie:x", "whitespace"),
    ("https://example.com/\x00", "control_character"),
    ("https://example.com/\x7f", "control_character"),
    ("https://example.com/\x1b", "control_character"),
    ("https://example.com/\u0085", "whitespace"),
    ("https://example.com/\u0090", "control_character"),
    ("https://example.com/\u00a0", "whitespace"),
    ("https://example.com/\u2028", "whitespace"),
    ("https://example.com/\u3000", "whitespace"),
    ("https://example.com/\ud800", "surrogate"),
    # Percent-encoded and Unicode look-alike host separators.
    ("https://evil%2ecom", "bad_host"),
    ("https://trusted.com%40evil.com", "bad_host"),
    ("https://evil%252ecom", "bad_host"),
    ("https://evil\uff0ecom", "bad_host"),
    ("https://evil\u3002com", "bad_host"),
    ("https://evil\uff61com", "bad_host"),
    ("https://evil\u2024com", "bad_host"),
    ("https://evil\ufe52com", "bad_host"),
    ("https://evil.com\uff0f.trusted.com", "bad_host"),
    ("https://trusted.com\uff20evil.com", "bad_host"),
    # Invisible code points in the host, which IDNA mapping would silently delete.
    ("https://ex\u00adample.com/", "invisible"),
    ("https://ex\u200bample.com/", "invisible"),
    ("https://ex\u200dample.com/", "invisible"),
    ("https://\u202eexample.com/", "invisible"),
    ("https://example.com\ufeff/", "invisible"),
    ("https://exa\ufe0fmple.com/", "invisible"),
    ("https://ex\U000e0041ample.com/", "invisible"),
    # Hosts browsers parse as IPv4/IPv6 addresses.
    ("http://127.0.0.1/", "numeric_host"),
    ("http://2130706433/", "numeric_host"),
    ("http://0x7f.0.0.1/", "numeric_host"),
    ("http://0x7f000001/", "numeric_host"),
    ("http://017700000001/", "numeric_host"),
    ("http://127.1/", "numeric_host"),
    ("http://\uff11\uff12\uff17.0.0.1/", "numeric_host"),
    ("http://example.0x/", "numeric_host"),
    ("http://[::1]/", "numeric_host"),
    ("http://[::ffff:127.0.0.1]/", "numeric_host"),
    # Malformed host names.
    ("https://example.com./", "bad_host"),
    ("https://example..com/", "bad_host"),
    ("https://-example.com/", "bad_host"),
    ("https://example-.com/", "bad_host"),
    ("https://" + "a" * 64 + ".com/", "bad_host"),
    ("https://ex<ample.com/", "bad_host"),
    ("https://xn--abc-.com/", "bad_host"),
    ("https://localhost/", "bad_host"),
    ("https://intranet/", "bad_host"),
    # Ports.
    ("https://example.com:99999/", "bad_port"),
    ("https://example.com:0/", "bad_port"),
    ("https://example.com:abc/", "bad_port"),
    ("https://example.com:/", "bad_port"),
    ("https://example.com:80:80/", "bad_port"),
    ("https://example.com:\uff18\uff10/", "bad_port"),
    # Length.
    ("https://example.com/" + "a" * 2048, "too_long"),
]

ALLOWLIST_HOSTILE: list[tuple[str, str]] = [
    ("https://example.com.evil.net/", "not_allowed"),
    ("https://evil-example.com/", "not_allowed"),
    ("https://notexample.com/", "not_allowed"),
    ("https://example.com@evil.net/", "userinfo"),
    ("https://evil.net/?next=example.com", "not_allowed"),
    ("https://evil.net#.example.com", "not_allowed"),
    ("https://com/", "bad_host"),
]

ACCEPTED: list[tuple[str, TargetPolicy, str]] = [
    ("https://example.com/a?b=1&c=2#frag", OPEN, "https://example.com/a?b=1&c=2#frag"),
    ("HTTPS://WWW.Example.COM/Path", OPEN, "https://www.example.com/Path"),
    ("https://bücher.example/", OPEN, "https://xn--bcher-kva.example/"),
    ("https://example.com/café?q=ü#ß", OPEN, "https://example.com/caf%C3%A9?q=%C3%BC#%C3%9F"),
    ("https://example.com/a%20b%2F", OPEN, "https://example.com/a%20b%2F"),
    ("https://example.com:8443/x", OPEN, "https://example.com:8443/x"),
    ("https://example.com", OPEN, "https://example.com"),
    ("https://\uff45xample.com/", OPEN, "https://example.com/"),
    ("https://example.com/", ALLOW_EXAMPLE, "https://example.com/"),
    ("https://sub.example.com/x", ALLOW_EXAMPLE, "https://sub.example.com/x"),
    ("http://192.0.2.1/", ALLOW_IP, "http://192.0.2.1/"),
    ("http://[2001:DB8::1]:8080/", ALLOW_IP, "http://[2001:db8::1]:8080/"),
]

SNAKE_CASE = re.compile(r"[a-z]+(?:_[a-z]+)*")


def _authority(url: str) -> str:
    rest = url.split("://", 1)[1]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _reason(target: str, policy: TargetPolicy) -> str:
    with pytest.raises(TargetRejected) as info:
        normalize_target(target, policy)
    return info.value.reason


@pytest.mark.parametrize(("target", "reason"), HOSTILE)
def test_hostile_target_is_rejected_with_its_reason(target: str, reason: str) -> None:
    """Each bypass attempt is refused with the reason code for its class."""
    assert _reason(target, OPEN) == reason


@pytest.mark.parametrize("target", [target for target, _ in HOSTILE])
def test_rejection_reason_is_a_snake_case_code(target: str) -> None:
    """Every rejection carries a non-empty snake_case reason code."""
    assert SNAKE_CASE.fullmatch(_reason(target, OPEN))


@pytest.mark.parametrize(("target", "reason"), ALLOWLIST_HOSTILE)
def test_allowlist_refuses_lookalike_hosts(target: str, reason: str) -> None:
    """An allow-list entry only admits itself and its subdomains on a label boundary."""
    assert _reason(target, ALLOW_EXAMPLE) == reason


@pytest.mark.parametrize(("target", "policy", "expected"), ACCEPTED)
def test_safe_target_is_canonicalised(target: str, policy: TargetPolicy, expected: str) -> None:
    """A safe target comes back in its canonical pure-ASCII form."""
    assert normalize_target(target, policy) == expected


@pytest.mark.parametrize(("target", "policy", "expected"), ACCEPTED)
def test_canonical_target_is_a_fixed_point(
    target: str, policy: TargetPolicy, expected: str
) -> None:
    """Normalising an already-canonical target returns it unchanged."""
    assert normalize_target(normalize_target(target, policy), policy) == expected


def test_ip_policy_still_refuses_non_dotted_quad_forms() -> None:
    """With allow_ip, odd IPv4 spellings such as 127.1 are still refused."""
    assert _reason("http://127.1/", ALLOW_IP) == "bad_host"


def test_ip_policy_refuses_ipv6_zone_ids() -> None:
    """With allow_ip, an IPv6 literal with a %-encoded zone id is refused."""
    assert _reason("http://[fe80::1%25eth0]/", ALLOW_IP) == "bad_host"


def test_ip_policy_canonicalises_ipv6_literals() -> None:
    """With allow_ip, IPv6 literals are rewritten to compressed lowercase form."""
    assert normalize_target("http://[::ffff:127.0.0.1]/", ALLOW_IP) == "http://[::ffff:7f00:1]/"


def test_allowlisted_ip_is_accepted() -> None:
    """With allow_ip, an IP listed in allow_hosts is accepted."""
    policy = TargetPolicy.from_strings(["192.0.2.1"], allow_ip=True)
    assert normalize_target("http://192.0.2.1/", policy) == "http://192.0.2.1/"


def test_unlisted_ip_is_refused_by_allowlist() -> None:
    """With allow_ip and an allow-list, an unlisted IP is refused."""
    policy = TargetPolicy.from_strings(["192.0.2.1"], allow_ip=True)
    assert _reason("http://198.51.100.1/", policy) == "not_allowed"


def test_allowlisted_ipv6_entry_is_normalised() -> None:
    """A bracketed IPv6 allow-list entry matches any spelling of the same address."""
    policy = TargetPolicy.from_strings(["[2001:DB8:0::1]"], allow_ip=True)
    assert normalize_target("http://[2001:db8::1]/", policy) == "http://[2001:db8::1]/"


def test_listed_single_label_host_is_accepted() -> None:
    """A single-label host is accepted when it is listed exactly."""
    policy = TargetPolicy.from_strings(["localhost"])
    assert normalize_target("http://LOCALHOST:8000/", policy) == "http://localhost:8000/"


def test_allowlist_entries_are_normalised() -> None:
    """from_strings lowercases, IDNA-encodes and trims entries, skipping blanks."""
    policy = TargetPolicy.from_strings([" Bücher.Example ", "", "EXAMPLE.com"])
    assert policy.allow_hosts == ("xn--bcher-kva.example", "example.com")


def test_allowlist_matches_idn_host() -> None:
    """A Unicode target host matches its allow-listed A-label form."""
    policy = TargetPolicy.from_strings(["xn--bcher-kva.example"])
    expected = "https://shop.xn--bcher-kva.example/"
    assert normalize_target("https://shop.bücher.example/", policy) == expected


def test_direct_constructor_normalises_entries() -> None:
    """Entries given straight to TargetPolicy are normalised as well."""
    assert TargetPolicy(allow_hosts=("Example.COM",)).allow_hosts == ("example.com",)


def test_non_positive_max_length_is_refused() -> None:
    """A policy with a max_length below one is a configuration error."""
    with pytest.raises(ValueError, match="max_length"):
        TargetPolicy(max_length=0)


def test_invalid_allowlist_entry_is_refused() -> None:
    """from_strings refuses an entry that is not a valid host name."""
    with pytest.raises(ValueError, match="host"):
        TargetPolicy.from_strings(["*.example.com"])


def test_bare_string_allowlist_is_refused() -> None:
    """from_strings refuses a single string, which would iterate as characters."""
    with pytest.raises(TypeError):
        TargetPolicy.from_strings("example.com")


def test_length_limit_counts_utf8_bytes() -> None:
    """The length limit counts UTF-8 bytes, not characters."""
    policy = TargetPolicy(max_length=24)
    assert normalize_target("https://example.com/abcd", policy)
    assert _reason("https://example.com/abcé", policy) == "too_long"


def test_length_limit_applies_to_canonical_form() -> None:
    """A target whose percent-encoded form exceeds the limit is refused, keeping idempotence."""
    policy = TargetPolicy(max_length=30)
    assert _reason("https://example.com/" + "é" * 5, policy) == "too_long"


def test_rejection_survives_pickling() -> None:
    """TargetRejected round-trips through pickle with its reason intact."""
    err = pickle.loads(pickle.dumps(TargetRejected("bad_host", "nope")))  # noqa: S301
    assert (err.reason, str(err)) == ("bad_host", "nope")


_HOST_PIECES = st.sampled_from(
    [
        *"abcXYZ019-_.:@[]%/\\?# ",
        *("ü", "ß", "İ", "\u212a", "\uff45", "\uff0e", "\u3002", "\uff61", "\u2024", "\u00ad"),
        *("\u200b", "\uff0f", "\uff20", "\u00a0", "\x00", "\x85", "\ud800", "0x", "xn--", "::1"),
    ]
)
_TARGETS = st.one_of(
    st.text(),
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["http://", "HTTPS://", "https://", "https:", "//", "https:///"]),
            st.lists(_HOST_PIECES, max_size=12).map("".join),
            st.sampled_from(["", "/", "?", "#", ":443/", ":0/", ".example.com/"]),
            st.text(max_size=20),
        ),
    ),
    # Mostly well-formed targets, so that the accepted branch is exercised too.
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["http://", "HTTPS://", "https://sub."]),
            st.from_regex(
                r"[a-zA-Z0-9\u00fc\u00df\uff45-]{1,8}(\.[a-z0-9\u00fc-]{1,8}){0,2}", fullmatch=True
            ),
            st.sampled_from(["", ".example.com", ".com", ".1", ":8080", ".com:443"]),
            st.sampled_from(["", "/", "?", "#"]),
            st.text(st.characters(exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"]), max_size=20),
        ),
    ),
)
_POLICIES = st.sampled_from([OPEN, ALLOW_EXAMPLE, ALLOW_IP, TargetPolicy(max_length=40)])


def _attempt(target: str, policy: TargetPolicy) -> str | TargetRejected:
    try:
        return normalize_target(target, policy)
    except TargetRejected as err:
        return err


@settings(max_examples=500, deadline=None)
@given(target=_TARGETS, policy=_POLICIES)
def test_any_text_is_rejected_or_canonical_and_idempotent(
    target: str, policy: TargetPolicy
) -> None:
    """For any text the result is a coded rejection or a safe, idempotent http(s) URL."""
    result = _attempt(target, policy)
    if isinstance(result, TargetRejected):
        assert SNAKE_CASE.fullmatch(result.reason)
        return
    assert result.isascii()
    assert result.startswith(("http://", "https://"))
    assert "\\" not in result
    assert not any(c.isspace() or unicodedata.category(c) == "Cc" for c in result)
    authority = _authority(result)
    assert authority
    assert "@" not in authority
    assert "%" not in authority
    assert len(result.encode()) <= policy.max_length
    assert normalize_target(result, policy) == result
