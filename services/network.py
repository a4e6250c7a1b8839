"""The caller's address, derived once per request from the socket peer and the proxies trusted in front of the app."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["address_block", "client_address"]


def _normalise(entry: str) -> str:
    """An X-Forwarded-For entry as a plain address: '[::1]:80' -> '::1', '1.2.3.4:5' -> '1.2.3.4'; other text is
    kept (shortened) so that it still counts as one caller."""
    value = entry.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value[:64] or "unknown"


def client_address(peer: str | None, forwarded_for: Iterable[str], *, trusted_proxies: int) -> str:
    """The caller's IP address, seen through exactly `trusted_proxies` reverse proxies (a Space has one).

    Each proxy appends the address it saw to X-Forwarded-For, so, with every X-Forwarded-For header line taken
    together in order, the entry `trusted_proxies` from the right is the one our outermost trusted proxy recorded;
    anything further left was written by the caller and can be forged. With no trusted proxy, or fewer entries
    than proxies, the headers are ignored and the socket's peer address is used.
    """
    if trusted_proxies > 0:
        hops = [part for line in forwarded_for for part in line.split(",") if part.strip()]
        if len(hops) >= trusted_proxies:
            return _normalise(hops[-trusted_proxies])
    return _normalise(peer) if peer else "unknown"


def address_block(address: str) -> str:
    """What one caller is, for the limits: an IPv4 address itself, an IPv6 address's /64 network.

    An IPv6 host usually holds a whole /64 (SLAAC, privacy addresses that change every day), so counting single
    IPv6 addresses would give one caller 2^64 allowances. An IPv4-mapped IPv6 address counts as its IPv4 address.
    Anything else (the "unknown" of a request without a peer) is its own block.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
