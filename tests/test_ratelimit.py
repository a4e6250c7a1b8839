"""Tests for services/ratelimit.py: the sliding-window limiter on an injected clock, and the two chat limits."""

from __future__ import annotations

import pytest

from services.config import Settings
from services.errors import RateLimitedError
from services.ratelimit import ChatRateLimits, RateLimiter, RequestRate

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRateLimiter:
    def test_allows_the_limit_then_refuses(self):
        """Three calls pass; the fourth within the minute is refused with the exact wait."""
        clock = Clock()
        limiter = RateLimiter(3, what="session", clock=clock)
        for _ in range(3):
            limiter.check("a")
        clock.now += 20
        with pytest.raises(RateLimitedError) as info:
            limiter.check("a")
        assert str(info.value) == "Slow down: at most 3 chat messages a minute per session. Try again in 40 s."
        assert info.value.retry_after == 40.0

    def test_names_what_is_limited(self):
        """The message names the address limit when it is the address that is over."""
        limiter = RateLimiter(1, what="address", clock=Clock())
        limiter.check("1.2.3.4")
        with pytest.raises(RateLimitedError, match=r"^Slow down: at most 1 chat messages a minute per address\."):
            limiter.check("1.2.3.4")

    def test_wait_is_rounded_up_to_at_least_a_second(self):
        """A wait of a fraction of a second says 1 s, and the error carries the exact fraction."""
        clock = Clock()
        limiter = RateLimiter(1, clock=clock)
        limiter.check("a")
        clock.now += 59.75
        with pytest.raises(RateLimitedError) as info:
            limiter.check("a")
        assert str(info.value).endswith("Try again in 1 s.")
        assert info.value.retry_after == 0.25

    def test_wait_of_a_partial_second_rounds_up(self):
        """40.5 seconds to wait is said as 41."""
        clock = Clock()
        limiter = RateLimiter(1, clock=clock)
        limiter.check("a")
        clock.now += 19.5
        with pytest.raises(RateLimitedError, match=r"Try again in 41 s\.$"):
            limiter.check("a")

    def test_custom_message_and_window(self):
        """The message template and the window are the caller's (the login limit uses both)."""
        clock = Clock()
        limiter = RateLimiter(2, window=10.0, message="{limit} per {what}, wait {retry}", what="login", clock=clock)
        limiter.check("a")
        limiter.check("a")
        clock.now += 4
        with pytest.raises(RateLimitedError) as info:
            limiter.check("a")
        assert str(info.value) == "2 per login, wait 6"
        clock.now += 6
        limiter.check("a")

    def test_window_slides(self):
        """A call leaves the window 60 s after it was made, not at a minute boundary."""
        clock = Clock()
        limiter = RateLimiter(2, clock=clock)
        limiter.check("a")
        clock.now += 30
        limiter.check("a")
        clock.now += 29.5
        with pytest.raises(RateLimitedError):
            limiter.check("a")
        clock.now += 0.5  # the first call is now 60 s old
        limiter.check("a")
        with pytest.raises(RateLimitedError) as info:
            limiter.check("a")
        assert info.value.retry_after == 30.0  # until the second call leaves the window

    def test_refused_calls_do_not_count(self):
        """Hammering while refused does not push the window further out."""
        clock = Clock()
        limiter = RateLimiter(1, clock=clock)
        limiter.check("a")
        for _ in range(5):
            clock.now += 1
            with pytest.raises(RateLimitedError):
                limiter.check("a")
        clock.now += 55
        limiter.check("a")

    def test_keys_are_independent(self):
        """One caller's use does not limit another."""
        limiter = RateLimiter(1, clock=Clock())
        limiter.check("a")
        limiter.check("b")
        with pytest.raises(RateLimitedError):
            limiter.check("a")

    def test_refuse_if_over_counts_nothing(self):
        """Asking whether a key is over never uses up one of its calls."""
        limiter = RateLimiter(2, clock=Clock())
        for _ in range(10):
            limiter.refuse_if_over("a")
        limiter.check("a")
        limiter.check("a")
        with pytest.raises(RateLimitedError):
            limiter.refuse_if_over("a")

    def test_count_alone_uses_up_calls(self):
        """count (a failed login) fills the window; refuse_if_over then refuses."""
        clock = Clock()
        limiter = RateLimiter(3, clock=clock)
        for _ in range(3):
            limiter.count("1.2.3.4")
        with pytest.raises(RateLimitedError):
            limiter.refuse_if_over("1.2.3.4")
        clock.now += 60
        limiter.refuse_if_over("1.2.3.4")

    def test_counting_past_the_limit_keeps_only_the_latest(self):
        """Counts beyond the limit replace the oldest: the wait runs from the latest calls."""
        clock = Clock()
        limiter = RateLimiter(2, clock=clock)
        limiter.count("a")
        clock.now += 10
        limiter.count("a")
        clock.now += 10
        limiter.count("a")
        with pytest.raises(RateLimitedError) as info:
            limiter.refuse_if_over("a")
        assert info.value.retry_after == 50.0

    def test_idle_keys_are_forgotten(self):
        """Memory stays bounded under many one-off callers: idle keys go once there are over 10,000."""
        clock = Clock()
        limiter = RateLimiter(1, what="address", clock=clock)
        for i in range(10_000):
            limiter.check(f"ip-{i}")
        clock.now += 61
        limiter.check("new")
        assert len(limiter._calls) == 1
        limiter.check("newer")
        assert set(limiter._calls) == {"new", "newer"}


class TestChatRateLimits:
    def test_ip_limit_spans_sessions(self):
        """New sessions from one address still count against that address."""
        limits = ChatRateLimits(per_session=10, per_ip=2)
        limits.check(session="s1", address="1.1.1.1")
        limits.check(session="s2", address="1.1.1.1")
        with pytest.raises(RateLimitedError) as info:
            limits.check(session="s3", address="1.1.1.1")
        assert str(info.value).startswith("Slow down: at most 2 chat messages a minute per address.")
        limits.check(session="s3", address="2.2.2.2")

    def test_session_limit_spans_addresses(self):
        """One session moving between addresses still counts against that session."""
        limits = ChatRateLimits(per_session=2, per_ip=10)
        limits.check(session="s", address="1.1.1.1")
        limits.check(session="s", address="2.2.2.2")
        with pytest.raises(RateLimitedError, match=r"^Slow down: at most 2 chat messages a minute per session\."):
            limits.check(session="s", address="3.3.3.3")

    def test_a_refused_message_counts_against_neither(self):
        """Refused by the session limit, a message uses up nothing of the address's."""
        limits = ChatRateLimits(per_session=1, per_ip=2)
        limits.check(session="s1", address="1.1.1.1")
        with pytest.raises(RateLimitedError, match="per session"):
            limits.check(session="s1", address="1.1.1.1")
        limits.check(session="s2", address="1.1.1.1")
        with pytest.raises(RateLimitedError, match="per address"):
            limits.check(session="s3", address="1.1.1.1")

    @pytest.mark.parametrize("session", [None, ""])
    def test_stateless_calls_are_bound_by_the_address_only(self, session):
        """A call with no session (the MCP tool) is not refused by the session limit, only by the address."""
        limits = ChatRateLimits(per_session=1, per_ip=3)
        for _ in range(3):
            limits.check(session=session, address="1.1.1.1")
        with pytest.raises(RateLimitedError, match="per address"):
            limits.check(session=session, address="1.1.1.1")

    def test_none_disables(self):
        """None turns a limit off."""
        limits = ChatRateLimits(per_session=None, per_ip=None)
        for _ in range(100):
            limits.check(session="s", address="1.1.1.1")

    def test_only_the_session_limit(self):
        """With the address limit off, the session limit still applies."""
        limits = ChatRateLimits(per_session=1, per_ip=None)
        limits.check(session="s", address="1.1.1.1")
        with pytest.raises(RateLimitedError, match="per session"):
            limits.check(session="s", address="2.2.2.2")

    def test_from_settings(self):
        """RATE_LIMIT_PER_SESSION and RATE_LIMIT_PER_IP set the two limits."""
        limits = ChatRateLimits.from_settings(Settings(rate_limit_session=None, rate_limit_ip=1))
        limits.check(session="s", address="1.1.1.1")
        with pytest.raises(RateLimitedError, match="per address"):
            limits.check(session="t", address="1.1.1.1")


class TestRequestRate:
    def rate(self, clock: Clock, limit: int = 3) -> RequestRate:
        return RequestRate(limit, message="At most {limit} a minute; again in {retry} s.", clock=clock)

    def test_a_burst_of_the_limit_then_refusals(self):
        clock = Clock()
        rate = self.rate(clock)
        for _ in range(3):
            rate.check("a")
        with pytest.raises(RateLimitedError, match=r"^At most 3 a minute; again in 20 s\.$") as refused:
            rate.check("a")
        assert refused.value.retry_after == pytest.approx(20)
        rate.check("b")  # another caller has its own bucket

    def test_it_refills_at_the_limit_a_window(self):
        """One request back every window/limit seconds: 20 s for 3 a minute."""
        clock = Clock()
        rate = self.rate(clock)
        for _ in range(3):
            rate.check("a")
        clock.now += 20
        rate.check("a")
        with pytest.raises(RateLimitedError):
            rate.check("a")

    def test_a_refusal_takes_nothing(self):
        """Refused requests do not dig the bucket deeper: the caller gets the next token on time."""
        clock = Clock()
        rate = self.rate(clock)
        for _ in range(3):
            rate.check("a")
        for _ in range(100):
            with pytest.raises(RateLimitedError):
                rate.check("a")
        clock.now += 20
        rate.check("a")

    def test_idle_callers_are_forgotten(self):
        """Past 10,000 callers (then each time they have doubled, so that sweeps stay rare), those whose bucket is
        full again are dropped: memory follows the callers active within a window."""
        clock = Clock()
        rate = self.rate(clock)
        for i in range(10_001):
            rate.check(f"old-{i}")
        clock.now += 60
        for i in range(10_002):
            rate.check(f"new-{i}")
        assert len(rate._buckets) <= 10_002
