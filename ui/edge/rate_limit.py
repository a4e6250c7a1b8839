"""Requests bounded per caller: past the rate, 429 with `Retry-After`, before the app does any work.

The caller is the address `ClientAddress` wrote into the request, counted by block (an IPv6 /64 is one caller:
`services.network.address_block`). Several instances stack, each with its own requests (`applies`) and rate: the
whole API at a generous rate, uploads at a stricter one.

A loopback caller is not limited: it is the app calling itself (Gradio's MCP server runs tools through its own
client, whose event streams name no caller; the calls themselves are counted for the agent they serve, see
`ClientAddress`) or the machine it runs on. Behind a proxy, a caller's address is the proxy's own entry, which
no caller can make a loopback address.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from services.errors import RateLimitedError
from services.network import address_block
from services.ratelimit import RequestRate
from ui.edge._http import refusal, route_path

__all__ = ["RateLimit"]


class RateLimit:
    """Refuses the requests `applies(method, path)` selects once their caller is past `rate`."""

    def __init__(self, app: ASGIApp, *, rate: RequestRate, applies: Callable[[str, str], bool]) -> None:
        self.app = app
        self.rate = rate
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope["method"], route_path(scope)):
            await self.app(scope, receive, send)
            return
        address = scope["client"][0] if scope.get("client") else "unknown"
        if _is_loopback(address):
            await self.app(scope, receive, send)
            return
        caller = address_block(address)
        try:
            self.rate.check(caller)
        except RateLimitedError as error:
            retry = str(max(1, math.ceil(error.retry_after)))
            await refusal(429, str(error), {"retry-after": retry})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
