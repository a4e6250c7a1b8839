"""Per-caller rate limits, so that one visitor or script cannot spend the Space owner's key alone."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from services.config import Settings
from services.errors import RateLimitedError

__all__ = ["ChatRateLimits", "RateLimiter", "client_address"]


class RateLimiter:
    """At most `limit` calls per key within any `window` seconds (a sliding window, not fixed minutes).

    A fixed window would let a caller send 2x the limit across a minute boundary; the sliding one keeps the
    timestamps of the last `limit` calls per key, which bounds memory at `limit` floats per active key.
    """

    def __init__(
        self, limit: int, *, window: float = 60.0, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.what = what  # "session" or "address": named in the message
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one call for `key`, or raise `RateLimitedError` (and count nothing) when it is over the limit."""
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                retry_after = self.window - (now - calls[0])
                raise RateLimitedError(
                    f"Slow down: at most {self.limit} chat messages a minute per {self.what}. "
                    f"Try again in {max(1, round(retry_after))} s.",
                    retry_after=retry_after,
                )
            calls.append(now)
            if len(self._calls) > 10_000:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop keys with no call in the window, so a stream of one-off callers cannot grow memory forever."""
        idle = [key for key, calls in self._calls.items() if not calls or now - calls[-1] >= self.window]
        for key in idle:
            del self._calls[key]


def client_address(peer: str | None, headers: Mapping[str, str], *, trusted_proxies: int) -> str:
    """The caller's IP address, seen through `trusted_proxies` reverse proxies (a Space has one).

    Each proxy appends the address it saw to X-Forwarded-For, so the entry `trusted_proxies` from the right
    is the one our nearest trusted proxy recorded; anything further left was written by the caller and can be
    forged. With no trusted proxy the header is ignored and the socket's peer address is used.
    """
    if trusted_proxies > 0:
        forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    return peer or "unknown"


class ChatRateLimits:
    """The two limits on chat messages: per session (browser tab or gradio_client.Client) and per IP address."""

    def __init__(self, *, per_session: int | None, per_ip: int | None, trusted_proxies: int) -> None:
        self._session = RateLimiter(per_session, what="session") if per_session else None
        self._ip = RateLimiter(per_ip, what="address") if per_ip else None
        self._trusted_proxies = trusted_proxies

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatRateLimits:
        return cls(
            per_session=settings.rate_limit_session,
            per_ip=settings.rate_limit_ip,
            trusted_proxies=settings.trusted_proxies,
        )

    def check(self, *, session: str | None, peer: str | None, headers: Mapping[str, str]) -> None:
        """Raise `RateLimitedError` when this caller is over either limit."""
        if self._session is not None and session:
            self._session.check(session)
        if self._ip is not None:
            self._ip.check(client_address(peer, headers, trusted_proxies=self._trusted_proxies))
