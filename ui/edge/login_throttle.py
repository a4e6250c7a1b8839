"""Failed logins throttled per address: past the limit, 429 with `Retry-After`.

A window, never a lockout: the right password works again once the window has passed, and another address (the
right user elsewhere) is never held back by an attacker's failures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import RateLimitedError
from services.network import address_block
from services.ratelimit import RateLimiter
from ui.edge._http import refusal, route_path

__all__ = ["LoginThrottle"]

logger = logging.getLogger(__name__)


class LoginThrottle:
    """Counts the failures (`failed` statuses) of POSTs to `path` per address block, `attempts` a minute."""

    def __init__(
        self, app: ASGIApp, *, attempts: int, path: str = "/login", failed: Collection[int] = (400, 401)
    ) -> None:
        self.app = app
        self.path = path
        self.failed = frozenset(failed)
        self._failures = RateLimiter(
            attempts, what="address", message="Too many failed logins from this address: try again in {retry} s."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        caller = address_block(scope["client"][0] if scope.get("client") else "unknown")
        try:
            self._failures.refuse_if_over(caller)
        except RateLimitedError as error:
            retry = str(max(1, math.ceil(error.retry_after)))
            await refusal(429, str(error), {"retry-after": retry})(scope, receive, send)
            return
        status = 0

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, observe)
        if status in self.failed:
            self._failures.count(caller)
            logger.info("Failed login from %s", caller)
