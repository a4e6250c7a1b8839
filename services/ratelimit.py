"""Per-caller rate limits, so that one visitor or script cannot spend the Space owner's key alone."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from services.config import Settings
from services.errors import RateLimitedError

__all__ = ["ChatRateLimits", "RateLimiter", "RequestRate"]


class RateLimiter:
    """At most `limit` calls per key within any `window` seconds (a sliding window, not fixed minutes).

    A fixed window would let a caller send 2x the limit across a minute boundary; the sliding one keeps the
    timestamps of the last `limit` calls per key, which bounds memory at `limit` floats per active key.
    """

    def __init__(
        self,
        limit: int,
        *,
        window: float = 60.0,
        message: str = "Slow down: at most {limit} chat messages a minute per {what}. Try again in {retry} s.",
        what: str = "session",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.what = what  # "session" or "address": named in the message
        self._message = message
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one call for `key`, or raise `RateLimitedError` (and count nothing) when it is over the limit."""
        self.refuse_if_over(key)
        self.count(key)

    def refuse_if_over(self, key: str) -> None:
        """Raise `RateLimitedError` when `key` has used up its calls in the window; counts nothing."""
        now = self._clock()
        with self._lock:
            calls = self._calls.get(key)
            if calls is None:
                return
            while calls and now - calls[0] >= self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                retry_after = self.window - (now - calls[0])
                text = self._message.format(limit=self.limit, what=self.what, retry=max(1, math.ceil(retry_after)))
                raise RateLimitedError(text, retry_after=retry_after)

    def count(self, key: str) -> None:
        """Count one call for `key` (a failed login, a chat message)."""
        now = self._clock()
        with self._lock:
            self._calls.setdefault(key, deque()).append(now)
            if len(self._calls[key]) > self.limit:
                self._calls[key].popleft()
            if len(self._calls) > 10_000:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop keys with no call in the window, so a stream of one-off callers cannot grow memory forever."""
        idle = [key for key, calls in self._calls.items() if not calls or now - calls[-1] >= self.window]
        for key in idle:
            del self._calls[key]


class ChatRateLimits:
    """The two limits on chat messages: per session (browser tab or gradio_client.Client) and per IP address."""

    def __init__(self, *, per_session: int | None, per_ip: int | None) -> None:
        self._session = RateLimiter(per_session, what="session") if per_session else None
        self._ip = RateLimiter(per_ip, what="address") if per_ip else None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatRateLimits:
        return cls(per_session=settings.rate_limit_session, per_ip=settings.rate_limit_ip)

    def check(self, *, session: str | None, address: str) -> None:
        """Raise `RateLimitedError` when this caller is over either limit; counts the message against both.

        `session` is None for stateless calls (the MCP tool), which only the per-address limit can bound.
        """
        if self._session is not None and session:
            self._session.refuse_if_over(session)
        if self._ip is not None:
            self._ip.refuse_if_over(address)
        if self._session is not None and session:
            self._session.count(session)
        if self._ip is not None:
            self._ip.count(address)


class RequestRate:
    """At most `limit` requests per key a `window`, with bursts up to `limit`: a token bucket per key.

    For the limits that count every request (thousands a minute per caller): two numbers per key instead of a
    timestamp per request, and O(1) per check. A bucket refills at `limit / window` a second; a key whose bucket
    is full again is forgotten, so memory follows the callers active within one window.
    """

    def __init__(
        self,
        limit: int,
        *,
        window: float = 60.0,
        message: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._rate = limit / window
        self._message = message
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._sweep_at = 10_000
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` from `key`'s bucket, or raise `RateLimitedError` (and take nothing) when it has too little."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - then) * self._rate)
            if tokens < cost:
                retry_after = (cost - tokens) / self._rate
                self._buckets[key] = (tokens, now)
                raise RateLimitedError(
                    self._message.format(limit=self.limit, retry=max(1, math.ceil(retry_after))),
                    retry_after=retry_after,
                )
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > self._sweep_at:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full = [key for key, (left, then) in self._buckets.items() if left + (now - then) * self._rate >= self.limit]
        for key in full:
            del self._buckets[key]
        # Many callers at once: sweep again only once they have doubled, so that the sweeps stay O(1) a request.
        self._sweep_at = max(10_000, 2 * len(self._buckets))
