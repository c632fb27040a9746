"""The client's IP address: who sent the request, and how much of the address we keep.

Behind a reverse proxy the TCP peer is the proxy. ``X-Forwarded-For`` is believed only when
the peer is a configured trusted proxy, and then read from the right, skipping trusted hops,
so a client cannot choose its own address by sending the header itself.

Anonymisation happens here, before the hit is queued: by default IPv4 keeps its /24 and IPv6
its /48 (the last octet or 80 bits become zero), as Matomo, Shlink and Universal Analytics do.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .config import split_list

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=8192)
def anonymise(text: str, mode: str) -> str | None:
    """Return the address as stored under ``mode`` (truncate, full, none); None if unusable."""
    if mode == "none":
        return None
    ip = parse_ip(text)
    if ip is None:
        return None
    if mode == "full":
        return str(ip)
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


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
            hop_ip = parse_ip(hop)
            if hop_ip is None:
                break  # junk in the chain: trust nothing further left
            client = str(hop_ip)
            if not self._is_trusted(hop_ip):
                break
        return client

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = self.resolve(peer, forwarded_for)
        return None if address is None else anonymise(address, self.mode)
