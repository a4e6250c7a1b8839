"""The caller's address, derived once per request from the socket peer and the proxies trusted in front of the app."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["client_address"]


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
