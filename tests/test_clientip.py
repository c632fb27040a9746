"""Client IP: trusted-proxy resolution and anonymisation before anything is queued."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixel_server.clientip import ClientIP, anonymise


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
    """For any IPv4/IPv6 address the stored value is its /24 or /48 network address."""
    address = ipaddress.ip_address(str(ip))
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
