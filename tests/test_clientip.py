"""Client IP: trusted-proxy resolution and anonymisation before anything is queued."""

from __future__ import annotations

import ipaddress
import itertools
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pixel_server.clientip import ClientIP, anonymise, parse_ip, stored_ip
from pixel_server.hits import request_headers

# IPv6 ranges that carry an IPv4 address (RFC 3056, RFC 4380, RFC 6052)
TUNNELS = {
    "6to4": ipaddress.IPv6Network("2002::/16"),
    "teredo": ipaddress.IPv6Network("2001::/32"),
    "nat64": ipaddress.IPv6Network("64:ff9b::/96"),
}


@pytest.mark.parametrize(
    ("address", "mode", "stored"),
    [
        ("203.0.113.77", "truncate", "203.0.113.0"),
        ("2001:db8:abcd:1234::1", "truncate", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "truncate", "198.51.100.0"),
        ("203.0.113.77", "full", "203.0.113.77"),
        ("203.0.113.77", "none", None),
        ("not-an-ip", "truncate", None),
    ],
)
def test_address_is_stored_per_mode(address: str, mode: str, stored: str | None) -> None:
    """truncate keeps /24 or /48, full keeps all, none keeps nothing, junk keeps nothing."""
    assert anonymise(address, mode) == stored


@given(st.ip_addresses())
def test_truncated_address_is_always_the_network_prefix(ip: object) -> None:
    """For any address without an embedded IPv4 the stored value is its /24 or /48 network."""
    address = ipaddress.ip_address(str(ip))
    assume(not any(address in net for net in TUNNELS.values()))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    expected = ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address
    assert anonymise(str(ip), "truncate") == str(expected)


def test_forwarded_for_is_ignored_from_untrusted_peer() -> None:
    """A client cannot choose its address by sending X-Forwarded-For itself."""
    resolve = ClientIP("full", "10.0.0.1")
    assert resolve("198.51.100.5", "1.2.3.4") == "198.51.100.5"


def test_forwarded_for_is_believed_from_trusted_proxy() -> None:
    """Behind a trusted proxy the client is the rightmost untrusted hop."""
    resolve = ClientIP("full", "10.0.0.0/8")
    assert resolve("10.0.0.1", "6.6.6.6, 198.51.100.5, 10.0.0.2") == "198.51.100.5"


def test_junk_in_forwarded_for_stops_the_walk() -> None:
    """An unparsable hop ends the walk at the last address we could trust."""
    resolve = ClientIP("full", "10.0.0.0/8")
    assert resolve("10.0.0.1", "198.51.100.5, garbage") == "10.0.0.1"


def test_no_peer_means_no_address() -> None:
    """Without a TCP peer (e.g. a Unix socket) nothing is stored."""
    assert ClientIP("full")(None, None) is None


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        # 6to4: 2002:AABB:CCDD::/48 is 203.0.113.119's own /48; only its /24 is kept
        ("2002:cb00:7177:1234::1", "2002:cb00:7100::"),
        # Teredo: relay 65.54.227.120 (kept as /24), flags, port and client become zero
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e300::"),
        # NAT64 well-known prefix around 203.0.113.77: its /24
        ("64:ff9b::203.0.113.77", "64:ff9b::cb00:7100"),
        ("::203.0.113.77", "::"),  # IPv4-compatible (deprecated): nothing of it is left
    ],
)
def test_an_ipv4_inside_an_ipv6_address_keeps_only_its_24(address: str, stored: str) -> None:
    """Tunnelled and translated addresses do not smuggle the whole IPv4 past truncation."""
    assert anonymise(address, "truncate") == stored


@pytest.mark.parametrize(
    "text",
    [
        "fe80::1%eth0",
        "fe80::1%<img src=x onerror=alert(1)>\x85\x9b",
        "1.2.3.4:80",
        "[::1]",
        "[2001:db8::1]:443",
        "\u0661.2.3.4",  # ARABIC-INDIC DIGIT ONE
        "<b>1.2.3.4</b>",
        "unknown",
        "",
    ],
)
def test_anything_but_a_plain_address_is_never_stored(text: str) -> None:
    """Zone ids, ports, brackets and junk are no address, in every mode."""
    assert parse_ip(text) is None
    assert anonymise(text, "full") is None
    assert anonymise(text, "truncate") is None


@pytest.mark.parametrize("hop", ["fe80::1%eth0", "fe80::1%<script>", "198.51.100.5:443", "[::1]"])
def test_a_hop_that_is_not_a_plain_address_ends_the_walk(hop: str) -> None:
    """In full mode an unusable hop is never stored: the last trusted address is."""
    resolve = ClientIP("full", "10.0.0.0/8")
    assert resolve("10.0.0.1", f"198.51.100.7, {hop}, 10.0.0.2") == "10.0.0.2"


def test_every_forwarded_for_line_is_read_in_order() -> None:
    """A client's own X-Forwarded-For line cannot hide the line its proxy appended."""
    headers = request_headers(
        [
            (b"x-forwarded-for", b"6.6.6.6"),  # sent by the client
            (b"user-agent", b"x"),
            (b"x-forwarded-for", b"198.51.100.5"),  # appended by the trusted proxy
        ]
    )
    assert headers[b"x-forwarded-for"] == b"6.6.6.6,198.51.100.5"
    resolve = ClientIP("full", "10.0.0.0/8")
    assert resolve("10.0.0.1", headers[b"x-forwarded-for"].decode()) == "198.51.100.5"


def test_empty_list_elements_are_skipped() -> None:
    """RFC 9110 list syntax: empty elements (",,", a trailing ",") are ignored, not junk."""
    resolve = ClientIP("full", "10.0.0.0/8")
    assert resolve("10.0.0.1", "198.51.100.5,, 10.0.0.2 ,") == "198.51.100.5"


# --- properties: what truncate mode stores, and who chooses it --------------------------------


def host_bits(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The bits that truncation must clear: below an IPv4 /24 or an IPv6 /48, and in an IPv6
    address that carries an IPv4, everything below that IPv4's /24 (and Teredo's client)."""
    value = int(address)
    if address.version == 4:
        return value & 0xFF
    if address in TUNNELS["6to4"]:  # 2002:AABB:CCDD:...: bits below 2002:AABB:CC
        return value & ((1 << 88) - 1)
    if address in TUNNELS["teredo"]:  # 2001:0:relay:flags:port:client: below the relay's /24
        return value & ((1 << 72) - 1)
    if address in TUNNELS["nat64"]:  # 64:ff9b::AABB:CCDD: the IPv4's last octet
        return value & 0xFF
    return value & ((1 << 80) - 1)


addresses = st.one_of(
    st.ip_addresses(),
    *(st.ip_addresses(network=str(net)) for net in TUNNELS.values()),
    st.ip_addresses(network="::ffff:0:0/96"),
)


@given(addresses)
def test_truncate_never_stores_a_whole_address(ip: object) -> None:
    """Truncated: never the input when it has host bits, and no host bits of its own, so no
    embedded IPv4 survives whole (IPv4-mapped addresses become IPv4)."""
    text = str(ip)
    stored = anonymise(text, "truncate")
    assert stored is not None
    stored_ip = ipaddress.ip_address(stored)
    original = parse_ip(text)
    assert original is not None
    if host_bits(original):
        assert stored_ip != original
    assert host_bits(stored_ip) == 0
    if isinstance(stored_ip, ipaddress.IPv6Address):
        assert stored_ip.ipv4_mapped is None
        if stored_ip.sixtofour is not None:
            assert stored_ip.sixtofour.packed[3] == 0
        if stored_ip.teredo is not None:
            assert stored_ip.teredo[0].packed[3] == 0  # the relay's /24
            assert int(stored_ip) & 0xFFFFFFFF == 0  # the (obfuscated) client


TRUSTED = "10.0.0.0/8, fd00::/8"
trusted_hops = st.one_of(
    st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="fd00::/8")
).map(str)
TRUSTED_NETS = [ipaddress.ip_network(net.strip()) for net in TRUSTED.split(",")]


def outside_trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    address = parse_ip(str(ip))
    return address is not None and not any(address in net for net in TRUSTED_NETS)


untrusted_hops = st.ip_addresses().filter(outside_trusted).map(str)
attacker_text = st.one_of(
    untrusted_hops,
    trusted_hops,
    st.text(alphabet=st.characters(codec="latin-1", exclude_characters=","), max_size=20),
    st.sampled_from(["fe80::1%eth0", "1.2.3.4:80", "[::1]", "<script>", "unknown"]),
)


def as_lines(chain: list[str], cuts: list[int]) -> list[tuple[bytes, bytes]]:
    """``chain`` sent as several X-Forwarded-For lines, split at ``cuts``."""
    bounds = sorted({0, len(chain), *(c % (len(chain) + 1) for c in cuts)})
    return [
        (b"x-forwarded-for", ", ".join(chain[a:b]).encode("latin-1"))
        for a, b in itertools.pairwise(bounds)
    ]


@given(
    st.lists(attacker_text, max_size=5),
    untrusted_hops,
    st.lists(trusted_hops, max_size=3),
    trusted_hops,
    st.lists(st.integers(0, 10), max_size=3),
)
def test_behind_trusted_proxies_the_client_is_the_first_untrusted_hop_from_the_right(
    forged: list[str], client: str, proxies: list[str], peer: str, cuts: list[int]
) -> None:
    """Whatever a client puts left of its own address, over any number of lines, the stored
    address is the client's own (truncated) one."""
    headers = request_headers(as_lines([*forged, client, *proxies], cuts))
    resolve = ClientIP("truncate", TRUSTED)
    assert resolve(peer, headers[b"x-forwarded-for"].decode("latin-1")) == anonymise(
        client, "truncate"
    )


@given(st.lists(attacker_text, min_size=1, max_size=6), untrusted_hops)
def test_an_untrusted_peer_cannot_choose_its_address(forged: list[str], peer: str) -> None:
    """From a peer that is not a trusted proxy, X-Forwarded-For is ignored altogether."""
    headers = request_headers(as_lines(forged, [2]))
    resolve = ClientIP("truncate", TRUSTED)
    assert resolve(peer, headers[b"x-forwarded-for"].decode("latin-1")) == anonymise(
        peer, "truncate"
    )


SALT = bytes(range(16))


@given(
    st.lists(attacker_text, max_size=5),
    untrusted_hops,
    st.lists(trusted_hops, max_size=3),
    trusted_hops,
)
def test_hash_mode_stores_a_keyed_hash_of_the_clients_own_address(
    forged: list[str], client: str, proxies: list[str], peer: str
) -> None:
    """PIXEL_IP_MODE=hash: the stored value is "hash:" and 16 hex digits, never holds the
    address, is the hash of the client's own address (not of what it forged to its left), and
    changes with the day's salt."""
    chain = ", ".join([*forged, client, *proxies])
    stored = ClientIP("hash", TRUSTED)(peer, chain, SALT)
    assert stored is not None
    assert re.fullmatch(r"hash:[0-9a-f]{16}", stored)
    assert stored == stored_ip(client, "hash", SALT)
    assert str(parse_ip(client)) not in stored
    assert stored != stored_ip(client, "hash", bytes(16))
    for hop in forged:
        if parse_ip(hop) is not None and parse_ip(hop) != parse_ip(client):
            assert stored != stored_ip(hop, "hash", SALT)
