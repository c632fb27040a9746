"""The client's IP address: who sent the request, and how much of the address we keep.

Behind a reverse proxy the TCP peer is the proxy. ``X-Forwarded-For`` is believed only when
the peer is a configured trusted proxy, and then read from the right, skipping trusted hops,
so a client cannot choose its own address by sending the header itself. Several header lines
are one list (``hits.request_headers`` joins them in order, as RFC 9110 combines fields), so a
client's own line cannot hide the line its proxy appended.

Only a plain address is ever used: no IPv6 zone id (``fe80::1%eth0``, which ``ipaddress``
accepts with any text after the ``%``), no port, no brackets. Such a hop ends the walk.

Anonymisation happens here, before the hit is queued: by default IPv4 keeps its /24 and IPv6
its /48 (the last octet or 80 bits become zero), as Matomo, Shlink and Universal Analytics do.
An IPv4 address carried inside an IPv6 one keeps no more than its /24 either: 6to4
(``2002:AABB:CCDD::/48`` holds a whole IPv4) keeps ``2002:AABB:CC00::``, Teredo keeps its
prefix and the /24 of its relay server (flags, port and the client's address become zero),
NAT64 (``64:ff9b::/96``) keeps the IPv4 /24, and IPv4-mapped addresses are stored as IPv4.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .config import split_list
from .salts import ip_hash

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    """A plain IPv4/IPv6 address (IPv4-mapped IPv6 as IPv4), or None for anything else."""
    text = text.strip(" \t")
    # ipaddress accepts a zone id after "%" and keeps it in str(): never let one through
    if "%" in text or not text.isascii():
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=8192)
def anonymise(text: str, mode: str) -> str | None:
    """Return the address as stored under ``mode`` (truncate, full, none); None if unusable.
    (``hash`` needs the day's salt: :func:`stored_ip`.)"""
    if mode == "none" or mode == "hash":
        return None
    ip = parse_ip(text)
    if ip is None:
        return None
    if mode == "full":
        return str(ip)
    if ip.version == 4:
        return str(ipaddress.IPv4Address(int(ip) & _V4_KEEP))
    value = int(ip)
    return str(ipaddress.IPv6Address(value & _v6_mask(value)))


def stored_ip(address: str | None, mode: str, salt: bytes) -> str | None:
    """``address`` (full, not yet anonymised) as stored under ``mode``; ``salt`` keys ``hash``."""
    if address is None:
        return None
    if mode != "hash":
        return anonymise(address, mode)
    ip = parse_ip(address)
    return None if ip is None else ip_hash(salt, str(ip))


def _keep(bits: int, width: int = 128) -> int:
    """A mask that keeps the first ``bits`` of a ``width``-bit address."""
    return ((1 << bits) - 1) << (width - bits)


_V4_KEEP = _keep(24, 32)
_V6_KEEP = _keep(48)
# 2002:AABB:CCDD::/48: prefix (16 bits) + the whole IPv4; keep the IPv4's /24
_6TO4, _6TO4_KEEP = 0x2002, _keep(16 + 24)
# 2001:0:SSSS:SSSS:flags:port:client: prefix (32) + relay server /24; the rest identifies
_TEREDO, _TEREDO_KEEP = 0x20010000, _keep(32 + 24)
# 64:ff9b::AABB:CCDD (RFC 6052 well-known prefix, /96): keep the IPv4's /24
_NAT64, _NAT64_KEEP = 0x0064FF9B_0000_0000_0000_0000, _keep(96 + 24)


def _v6_mask(value: int) -> int:
    if value >> 112 == _6TO4:
        return _6TO4_KEEP
    if value >> 96 == _TEREDO:
        return _TEREDO_KEEP
    if value >> 32 == _NAT64:
        return _NAT64_KEEP
    return _V6_KEEP


class ClientIP:
    """Resolves and anonymises the client address of a request."""

    def __init__(self, mode: str, trusted_proxies: str = "") -> None:
        self.mode = mode
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in split_list(trusted_proxies)
        )

    def _is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The real client address (not yet anonymised), or None if unknown."""
        if peer is None:
            return None
        if not self._trusted or forwarded_for is None:
            return peer
        peer_ip = parse_ip(peer)
        if peer_ip is None or not self._is_trusted(peer_ip):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            if not hop.strip(" \t"):
                continue  # an empty list element, which RFC 9110 says to ignore
            hop_ip = parse_ip(hop)
            if hop_ip is None:
                break  # junk in the chain: trust nothing further left
            client = str(hop_ip)
            if not self._is_trusted(hop_ip):
                break
        return client

    def __call__(
        self, peer: str | None, forwarded_for: str | None, salt: bytes = b""
    ) -> str | None:
        return stored_ip(self.resolve(peer, forwarded_for), self.mode, salt)


class Networks:
    """A set of networks (``PIXEL_EXCLUDE_NETWORKS``): ``address in networks`` for a full,
    not yet anonymised, address; empty, it is false (``if networks:`` skips the check)."""

    def __init__(self, text: str) -> None:
        self._nets: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in split_list(text)
        )

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, address: object) -> bool:
        ip = parse_ip(address) if isinstance(address, str) else None
        return ip is not None and any(ip in net for net in self._nets)
