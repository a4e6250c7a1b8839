"""One client address per request, for everything after it (rate limits, session binding, logs).

The address is the socket peer seen through exactly TRUSTED_PROXIES hops of all X-Forwarded-For lines taken
together (`services.network.client_address`), written into the request's `client`.

A call the app makes to itself on behalf of a caller would otherwise arrive from 127.0.0.1: Gradio's MCP server
runs a queued tool through its own gradio_client, over loopback, with the outer request's headers. For the paths
named in `CallerForwarding`, the edge adds a header naming the caller, signed with a secret made for this process;
a request from a loopback peer that carries a valid one is that caller's. No caller can forge it (the signature),
and any copy a caller sends is removed before anything reads the headers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from services.network import client_address
from ui.edge._http import route_path

__all__ = ["CallerForwarding", "ClientAddress", "connection_address"]

_CONNECTION = "space_edge.connection"


def connection_address(scope: Scope) -> str:
    """The address of what connected: the caller's, except for the app's own loopback calls on a caller's behalf,
    where it is the loopback client's (whose other requests, such as its event stream, name no caller)."""
    address: str = scope.get(_CONNECTION) or (scope["client"][0] if scope.get("client") else "unknown")
    return address


class CallerForwarding:
    """The signed header that carries a caller's address through the app's own loopback calls."""

    header = b"x-space-caller"

    def __init__(self, *, paths: Sequence[str], secret: bytes | None = None) -> None:
        self.paths = tuple(paths)
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, address: str) -> str:
        return hmac.new(self._secret, address.encode(), hashlib.sha256).hexdigest()

    def sign(self, address: str) -> bytes:
        return f"{address} {self._mac(address)}".encode()

    def verify(self, value: bytes) -> str | None:
        """The address a valid header names, else None."""
        address, _, mac = value.decode("latin-1").rpartition(" ")
        if address and hmac.compare_digest(mac, self._mac(address)):
            return address
        return None

    def applies_to(self, path: str) -> bool:
        return path.startswith(self.paths)


def _is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


class ClientAddress:
    """Writes the caller's address into `scope["client"]` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: int, forwarding: CallerForwarding | None = None) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.forwarding = forwarding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer, port = scope["client"] if scope.get("client") else (None, 0)
        raw = scope["headers"]
        forwarded = [value.decode("latin-1") for name, value in raw if name == b"x-forwarded-for"]
        address = client_address(peer, forwarded, trusted_proxies=self.trusted_proxies)
        scope = dict(scope)
        if self.forwarding is not None:
            header = self.forwarding.header
            signed = [value for name, value in raw if name == header]
            raw = [(name, value) for name, value in raw if name != header]
            caller = self.forwarding.verify(signed[0]) if len(signed) == 1 and _is_loopback(peer) else None
            if caller is not None:
                scope[_CONNECTION] = peer
                address = caller
            if self.forwarding.applies_to(route_path(scope)):
                raw = [*raw, (header, self.forwarding.sign(address))]
            scope["headers"] = raw
        scope["client"] = (address, port)
        await self.app(scope, receive, send)
