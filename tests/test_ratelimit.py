"""Tests for services/ratelimit.py: sliding-window limits and the client address behind proxies."""

from __future__ import annotations

import pytest

from services.errors import RateLimitedError
from services.ratelimit import ChatRateLimits, RateLimiter, client_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRateLimiter:
    def test_allows_the_limit_then_refuses(self):
        """Three calls pass, the fourth within the minute is refused with the wait."""
        clock = Clock()
        limiter = RateLimiter(3, what="session", clock=clock)
        for _ in range(3):
            limiter.check("a")
        clock.now += 20
        with pytest.raises(RateLimitedError, match=r"at most 3 chat messages a minute per session\. Try again in 40 s"):
            limiter.check("a")

    def test_window_slides(self):
        """A call leaves the window 60 s after it was made, not at a minute boundary."""
        clock = Clock()
        limiter = RateLimiter(2, what="session", clock=clock)
        limiter.check("a")
        clock.now += 30
        limiter.check("a")
        clock.now += 30  # the first call is now 60 s old
        limiter.check("a")
        with pytest.raises(RateLimitedError):
            limiter.check("a")

    def test_refused_calls_do_not_count(self):
        """Hammering while refused does not push the window further out."""
        clock = Clock()
        limiter = RateLimiter(1, what="session", clock=clock)
        limiter.check("a")
        for _ in range(5):
            with pytest.raises(RateLimitedError):
                limiter.check("a")
        clock.now += 60
        limiter.check("a")

    def test_keys_are_independent(self):
        """One caller's use does not limit another."""
        limiter = RateLimiter(1, what="session", clock=Clock())
        limiter.check("a")
        limiter.check("b")

    def test_idle_keys_are_forgotten(self):
        """Memory stays bounded under many one-off callers."""
        clock = Clock()
        limiter = RateLimiter(1, what="address", clock=clock)
        for i in range(10_001):
            limiter.check(f"ip-{i}")
        clock.now += 61
        limiter.check("new")
        assert len(limiter._calls) == 1


class TestClientAddress:
    CASES = (
        ("10.0.0.1", {"x-forwarded-for": "1.2.3.4"}, 0, "10.0.0.1"),  # no proxy trusted: header ignored
        ("10.0.0.1", {"x-forwarded-for": "1.2.3.4"}, 1, "1.2.3.4"),  # one proxy (a Space)
        ("10.0.0.1", {"x-forwarded-for": "6.6.6.6, 1.2.3.4"}, 1, "1.2.3.4"),  # forged left entry ignored
        ("10.0.0.1", {"x-forwarded-for": "1.2.3.4, 5.6.7.8"}, 2, "1.2.3.4"),  # two proxies
        ("10.0.0.1", {}, 1, "10.0.0.1"),  # header missing: the peer
        (None, {}, 0, "unknown"),  # no peer at all
    )

    @pytest.mark.parametrize(("peer", "headers", "hops", "expected"), CASES)
    def test_address(self, peer, headers, hops, expected):
        """The address the nearest trusted proxy saw, never one the caller wrote."""
        assert client_address(peer, headers, trusted_proxies=hops) == expected


class TestChatRateLimits:
    def test_ip_limit_spans_sessions(self):
        """New sessions from one address still count against that address."""
        limits = ChatRateLimits(per_session=10, per_ip=2, trusted_proxies=0)
        limits.check(session="s1", peer="1.1.1.1", headers={})
        limits.check(session="s2", peer="1.1.1.1", headers={})
        with pytest.raises(RateLimitedError, match="per address"):
            limits.check(session="s3", peer="1.1.1.1", headers={})

    def test_none_disables(self):
        """None turns a limit off."""
        limits = ChatRateLimits(per_session=None, per_ip=None, trusted_proxies=0)
        for _ in range(100):
            limits.check(session="s", peer="1.1.1.1", headers={})
