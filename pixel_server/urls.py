"""Redirect-target validation, shared by link signing and the redirect handler.

Both sides call :func:`normalize_target`.  The redirect handler runs it again on the
already-signed target and insists the result is unchanged, so every accepted URL must be
a fixed point: the output is pure printable ASCII that re-validates to itself.

The host that is approved must be the host a browser goes to.  Browsers parse URLs by the
WHATWG URL standard, Python's tools and ``idna`` do not, so every accepted target is read
again by ada (the WHATWG parser of Node.js) before and after canonicalisation, and refused
when the two readings of scheme, host or port differ.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote

import ada_url
import idna

from .config import ConfigError, Settings, split_list

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = ["Target", "TargetPolicy", "TargetRejected", "normalize_target", "parse_target"]

# Every printable ASCII character except space.  The path, query and fragment keep these
# exactly as given (existing %XX escapes are never decoded, so the signer's bytes survive);
# only non-ASCII is percent-encoded as UTF-8, which makes a second pass a no-op.
_SAFE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
# WHATWG's "ends in a number" check: if the last label is decimal digits or 0x-hex
# ("0x" alone parses as 0), a browser hands the whole host to its IPv4 parser, which
# reads decimal, 0-prefixed octal and 0x-hex parts and lets the last part fill the
# remaining bytes.  So 127.1, 2130706433, 0x7f.1, 0x7f000001 and 017700000001 all mean
# 127.0.0.1 and must be treated as addresses, never as names.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ADA_ORIGIN = ("protocol", "hostname", "host", "port", "username", "password")
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside category Cf, which is
# refused as a whole: combining grapheme joiner, Hangul fillers, Khmer inherent vowels,
# variation selectors (Mongolian, VS1-16, VS17-256) and the reserved ignorable blocks.
# IDNA mapping deletes most of these silently, so "ex\u00adample.com" would be signed as
# "example.com" while the operator saw, and an allowlist was checked against, another text.
_IGNORABLE = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)


class TargetRejected(ValueError):
    """Raised when a redirect target is not a safe absolute http(s) URL; `.reason` is a code."""

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[TargetRejected], tuple[str, str]]:
        # The default reduce would call cls(message) and fail; keep the exception picklable.
        return (type(self), (self.reason, str(self)))


@dataclass(frozen=True)
class Target:
    """An accepted target: its canonical URL and the origin a browser goes to."""

    url: str
    scheme: str
    host: str  # lowercase A-labels, a dotted quad or a bracketed compressed IPv6 address
    port: int  # the effective port: the default of the scheme when none is given


@dataclass(frozen=True)
class TargetPolicy:
    """Which targets are acceptable.  Empty `allow_hosts` means any public host name;
    otherwise the host must equal an entry or be a subdomain of one.  Entries are
    normalised (lowercase, IDNA A-labels) on construction, whichever way it is built.
    """

    allow_hosts: tuple[str, ...] = ()
    allow_ip: bool = False
    max_length: int = 2048

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError("max_length must be positive")
        hosts = tuple(_normalize_entry(h) for h in self.allow_hosts)
        object.__setattr__(self, "allow_hosts", hosts)

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        """The policy of ``PIXEL_REDIRECT_HOSTS`` and ``PIXEL_REDIRECT_ALLOW_IP``.

        Raises ConfigError, naming the variable and the entry, for an entry that is not a
        host name or is a public suffix.
        """
        try:
            return cls.from_strings(
                split_list(settings.redirect_hosts), allow_ip=settings.redirect_allow_ip
            )
        except TargetRejected as exc:
            raise ConfigError(f"PIXEL_REDIRECT_HOSTS: {exc}") from None

    @classmethod
    def from_strings(
        cls, hosts: Iterable[str], allow_ip: bool = False, max_length: int = 2048
    ) -> TargetPolicy:
        """Build a policy from config strings; blank entries are skipped, bad ones raise."""
        if isinstance(hosts, str):
            # A bare string would iterate as single characters and allow-list "e", "x", ...
            raise TypeError("hosts must be an iterable of host names, not one string")
        entries = tuple(h.strip() for h in hosts if h.strip())
        return cls(entries, allow_ip, max_length)


def _check_characters(url: str, max_length: int) -> None:
    # surrogatepass: a lone surrogate must reach the loop below, not crash the count.
    if len(url.encode("utf-8", "surrogatepass")) > max_length:
        raise TargetRejected("too_long", f"target is longer than {max_length} bytes")
    if not url:
        raise TargetRejected("empty", "target is empty")
    for ch in url:
        # Browsers strip or skip tabs/newlines *inside* URLs ("jav\tascript:"), and CR/LF
        # would split the Location header, so no whitespace may appear anywhere at all.
        if ch.isspace():
            raise TargetRejected("whitespace", f"whitespace U+{ord(ch):04X} in target")
        category = unicodedata.category(ch)
        if category == "Cc":  # C0, DEL and C1 controls
            raise TargetRejected("control_character", f"control character U+{ord(ch):04X}")
        if category == "Cs":  # cannot be encoded as UTF-8 at all
            raise TargetRejected("surrogate", f"lone surrogate U+{ord(ch):04X}")
        if ch == "\\":
            # WHATWG parsers read "\" as "/" in http(s) URLs: "/\evil.com" is "//evil.com".
            raise TargetRejected("backslash", "backslash in target")


def _invisible(ch: str) -> bool:
    """Default-ignorable or format (Cf: zero-width, bidi, tag, soft hyphen ...) character."""
    if unicodedata.category(ch) == "Cf":
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in _IGNORABLE)


def _ascii_host(host: str) -> str:
    """Lowercase ASCII (A-label) form of a host name, or raise bad_host."""
    if not host.isascii():
        for ch in host:
            if ch.isascii():
                continue
            if _invisible(ch):
                raise TargetRejected("invisible", f"invisible character U+{ord(ch):04X} in host")
            # Reject characters that fold to URL syntax: U+FF0E/U+2024 become "." under
            # NFKC, U+3002/U+FF61 become "." under UTS46, U+FF0F/U+FF20 become "/" and "@".
            # They are how a host that "looks like" one name is read by a browser as another.
            try:
                folded = unicodedata.normalize("NFKC", ch) + idna.uts46_remap(ch, std3_rules=False)
            except idna.IDNAError:
                raise TargetRejected(
                    "bad_host", f"disallowed character U+{ord(ch):04X} in host"
                ) from None
            if any(c.isascii() and not (c.isalnum() or c == "-") for c in folded):
                raise TargetRejected("bad_host", f"U+{ord(ch):04X} folds to URL syntax in host")
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise TargetRejected("bad_host", f"host is not a valid IDN: {exc}") from None
    host = host.lower()
    if host.endswith("."):
        # "example.com." resolves like "example.com" but dodges naive string comparisons.
        raise TargetRejected("bad_host", "host has a trailing dot")
    labels = host.split(".")
    if len(host) > 253 or not all(len(lb) <= 63 and _LABEL.fullmatch(lb) for lb in labels):
        raise TargetRejected("bad_host", f"invalid host name {host!r}")
    for label in labels:
        if label.startswith("xn--"):
            # An A-label must round-trip, else browsers decode it differently or refuse it.
            try:
                valid = idna.alabel(idna.ulabel(label)).decode("ascii") == label
            except idna.IDNAError:
                valid = False
            if not valid:
                raise TargetRejected("bad_host", f"invalid punycode label {label!r}")
    return host


@lru_cache(maxsize=1)
def _public_suffixes() -> PublicSuffixList:
    # Imported and parsed (~60 ms) only when an allowlist is configured.
    from publicsuffixlist import PublicSuffixList

    # accept_unknown=False: only the list's own rules count, so a single-label intranet
    # name ("localhost", "intranet") is an entry like any other, not an implied TLD.
    return PublicSuffixList(accept_unknown=False)


def _normalize_entry(entry: str) -> str:
    """The canonical form of one allowlist entry, or raise TargetRejected naming it."""
    if entry.startswith("[") and entry.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(entry[1:-1]).compressed}]"
        except ValueError:
            raise TargetRejected("bad_host", f"invalid IPv6 allowlist entry {entry!r}") from None
    if any(c in entry for c in ":/*?#@"):
        raise TargetRejected(
            "bad_host",
            f"allowlist entry {entry!r} is not a host name: give names like example.com"
            " (subdomains are included), with no scheme, port, path or wildcard",
        )
    try:
        host = _ascii_host(entry)
        # Target hosts must read the same to ada and to idna; so must the entries.
        _check_browser_reading(f"https://{entry}/", Target("", "https", host, 443))
    except TargetRejected as exc:
        raise TargetRejected(exc.reason, f"allowlist entry {entry!r}: {exc}") from None
    ip_like = bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))
    if not ip_like and _public_suffixes().is_public(host):
        # "com" or "github.io" as an entry would admit every site registered under it.
        raise TargetRejected(
            "public_suffix",
            f"allowlist entry {entry!r} is a public suffix, which would admit every site"
            " under it: list your own domains",
        )
    return host


def _split_port(authority: str) -> tuple[str, str]:
    """Split "host[:port]" (host may be a bracketed IPv6 literal); port is "" if absent."""
    if authority.startswith("["):
        close = authority.find("]") + 1
        host, after = authority[:close], authority[close:]
        if not close or (after and not after.startswith(":")):
            raise TargetRejected("bad_host", "malformed IPv6 literal")
    else:
        host, colon, port = authority.partition(":")
        after = colon + port
    port = after[1:]
    if after and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise TargetRejected("bad_port", f"invalid port {port!r}")
    return host, port


def _check_host(host: str, policy: TargetPolicy) -> str:
    if "%" in host:
        # "evil%2ecom", "a.com%40evil.com", IPv6 zone ids: some layer decodes these later.
        raise TargetRejected("bad_host", "percent-encoding in host")
    is_ip = host.startswith("[")
    if is_ip:
        if not policy.allow_ip:
            raise TargetRejected("numeric_host", "IP address hosts are not allowed")
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise TargetRejected("bad_host", "invalid IPv6 address") from None
    else:
        host = _ascii_host(host)
        is_ip = bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))
        if is_ip:
            if not policy.allow_ip:
                raise TargetRejected("numeric_host", f"browsers parse {host!r} as IPv4")
            try:
                # Python accepts only the plain dotted quad (no octal/hex/short forms).
                ipaddress.IPv4Address(host)
            except ValueError:
                raise TargetRejected("bad_host", f"{host!r} is not a dotted-quad address") from None
        elif "." not in host and host not in policy.allow_hosts:
            # "localhost", "intranet": resolved via the server's own search domains.
            raise TargetRejected("bad_host", f"single-label host {host!r} is not allow-listed")
    # Label boundary: "example.com" admits "a.example.com", not "evil-example.com".
    allowed = (host == e or (not is_ip and host.endswith("." + e)) for e in policy.allow_hosts)
    if policy.allow_hosts and not any(allowed):
        raise TargetRejected("not_allowed", f"host {host!r} is not allow-listed")
    return host


def _check_browser_reading(url: str, target: Target) -> None:
    """Refuse unless a WHATWG parser reads ``url`` as going to ``target``'s origin."""
    try:
        seen = ada_url.parse_url(url, attributes=_ADA_ORIGIN)
    except ValueError:
        raise TargetRejected(
            "parser_mismatch", f"a browser does not read {url!r} as a URL"
        ) from None
    scheme = seen["protocol"].removesuffix(":")
    port = int(seen["port"]) if seen["port"] else _DEFAULT_PORTS.get(scheme, 0)
    reading = (scheme, seen["hostname"], port, seen["username"], seen["password"])
    if reading != (target.scheme, target.host, target.port, "", ""):
        raise TargetRejected(
            "parser_mismatch",
            f"a browser reads {url!r} as going to {seen['protocol']}//{seen['host']},"
            f" not to {target.host!r}",
        )


def normalize_target(url: str, policy: TargetPolicy) -> str:
    """Return the canonical form of a safe target, or raise TargetRejected.

    Reason codes: too_long, empty, whitespace, control_character, surrogate, backslash,
    scheme, no_host, userinfo, bad_port, bad_host, invisible, numeric_host, not_allowed,
    parser_mismatch.
    """
    return parse_target(url, policy).url


def parse_target(url: str, policy: TargetPolicy) -> Target:
    """Like :func:`normalize_target`, and also say which origin was approved."""
    _check_characters(url, policy.max_length)
    # A literal "http://" / "https://" prefix is the only accepted form: it rules out
    # relative and scheme-relative targets ("//evil", "https:evil", "http:/evil") and
    # every other scheme (javascript:, data:, vbscript:, ...), whatever its casing.
    head = url[:8].lower()
    scheme = "https" if head.startswith("https://") else "http"
    if not head.startswith(scheme + "://"):
        raise TargetRejected("scheme", "target must start with http:// or https://")
    rest = url[len(scheme) + 3 :]
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if not authority:
        raise TargetRejected("no_host", "target has no host")
    if "@" in authority:
        # "https://trusted.com@evil.com" goes to evil.com; we never need credentials.
        raise TargetRejected("userinfo", "userinfo ('@') in target authority")
    host, port = _split_port(authority)
    host = _check_host(host, policy)
    result = f"{scheme}://{host}{':' if port else ''}{port}{quote(tail, safe=_SAFE_ASCII)}"
    if len(result) > policy.max_length:
        # Percent-encoding/punycode can grow the URL; re-check so a second pass agrees.
        raise TargetRejected("too_long", f"canonical form exceeds {policy.max_length} bytes")
    target = Target(result, scheme, host, int(port) if port else _DEFAULT_PORTS[scheme])
    # Both the text as given (what the operator meant) and the canonical form (what goes
    # into the Location header) must lead a browser to the approved origin.
    _check_browser_reading(url, target)
    if result != url:
        _check_browser_reading(result, target)
    return target
