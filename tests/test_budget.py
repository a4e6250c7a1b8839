"""Tests for services/budget.py: the owner's daily token budgets, per address block and for everyone together."""

from __future__ import annotations

import threading

import pytest

from services.budget import DailyBudgets
from services.errors import BudgetExceededError

pytestmark = pytest.mark.unit

NOON = 1_800_000_000 - 1_800_000_000 % 86_400 + 12 * 3600  # midday UTC of some day


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budgets(
    *, owner: int | None = 1000, per_address: int | None = 300, sign_in: bool = True, report_every=3600.0, clock=None
):
    return DailyBudgets(
        owner_daily=owner,
        per_address_daily=per_address,
        sign_in_offered=sign_in,
        report_every=report_every,
        clock=clock or Clock(),
    )


class TestReserve:
    def test_a_reply_reserves_its_prompt_and_max_tokens_then_settles_what_it_used(self):
        daily = budgets()
        grant = daily.reserve("1.2.3.4", prompt_tokens=50, max_tokens=100)
        assert (grant.max_tokens, grant.reserved) == (100, 150)
        assert daily.remaining("1.2.3.4").address == 150
        daily.settle(grant, used=80)
        assert daily.remaining("1.2.3.4").address == 220
        assert daily.remaining("1.2.3.4").owner == 920

    def test_an_address_stops_at_its_budget_and_is_told_why_and_when(self):
        """Past DAILY_TOKENS_PER_IP the next chat is refused before any request, saying which budget, when it
        resets, and that signing in goes on."""
        daily = budgets()
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=200), used=300)
        with pytest.raises(BudgetExceededError) as refused:
            daily.reserve("1.2.3.4", prompt_tokens=10, max_tokens=10)
        assert str(refused.value) == (
            "Your address has used up today's free budget on this Space (DAILY_TOKENS_PER_IP): it resets at "
            "midnight UTC, in 12 h 0 min. Sign in with Hugging Face to chat on your own account."
        )
        assert refused.value.budget == "address"
        assert refused.value.retry_after == 12 * 3600

    def test_another_address_still_chats(self):
        daily = budgets()
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=200), used=300)
        assert daily.reserve("5.6.7.8", prompt_tokens=10, max_tokens=10).max_tokens == 10

    def test_two_addresses_of_one_ipv6_64_share_a_budget(self):
        daily = budgets()
        daily.settle(daily.reserve("2001:db8:1:2::1", prompt_tokens=100, max_tokens=200), used=300)
        with pytest.raises(BudgetExceededError):
            daily.reserve("2001:db8:1:2:ffff::9", prompt_tokens=10, max_tokens=10)
        assert daily.reserve("2001:db8:1:3::1", prompt_tokens=10, max_tokens=10).counted

    def test_the_owners_budget_stops_every_anonymous_caller(self):
        daily = budgets(owner=500, per_address=None)
        daily.settle(daily.reserve("1.1.1.1", prompt_tokens=200, max_tokens=300), used=500)
        for address in ("2.2.2.2", "3.3.3.3"):
            with pytest.raises(BudgetExceededError, match=r"^This Space's free budget for today is used up"):
                daily.reserve(address, prompt_tokens=1, max_tokens=1)

    def test_an_oversized_prompt_is_refused_before_it_is_sent(self):
        """A prompt alone larger than what is left is refused, naming both figures."""
        daily = budgets()
        with pytest.raises(BudgetExceededError, match=r"needs about 400 tokens, more than what your address has left"):
            daily.reserve("1.2.3.4", prompt_tokens=400, max_tokens=10)
        assert daily.remaining("1.2.3.4").address == 300

    def test_a_reply_that_does_not_fit_whole_gets_what_is_left(self):
        daily = budgets()
        grant = daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=4096)
        assert grant.max_tokens == 200

    def test_without_sign_in_no_invitation(self):
        daily = budgets(sign_in=False)
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=200), used=300)
        with pytest.raises(BudgetExceededError) as refused:
            daily.reserve("1.2.3.4", prompt_tokens=1, max_tokens=1)
        assert "Sign in" not in str(refused.value)

    def test_no_budget_counts_nothing(self):
        daily = budgets(owner=None, per_address=None)
        grant = daily.reserve("1.2.3.4", prompt_tokens=10**9, max_tokens=10)
        assert not grant.counted
        assert daily.remaining("1.2.3.4").tokens is None


class TestDays:
    def test_midnight_utc_starts_the_day_again(self):
        clock = Clock()
        daily = budgets(clock=clock)
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=200), used=300)
        clock.now += 12 * 3600
        assert daily.remaining("1.2.3.4").address == 300
        assert daily.reserve("1.2.3.4", prompt_tokens=10, max_tokens=10).counted

    def test_a_reservation_of_yesterday_settles_nothing_today(self):
        clock = Clock(NOON + 12 * 3600 - 1)
        daily = budgets(clock=clock)
        grant = daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=100)
        clock.now += 2
        daily.settle(grant, used=150)
        assert daily.remaining("1.2.3.4").address == 300


class TestLow:
    def test_low_once_a_fifth_is_left(self):
        daily = budgets()
        assert not daily.remaining("1.2.3.4").low
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=150), used=250)
        assert daily.remaining("1.2.3.4").low
        assert daily.remaining("1.2.3.4").tokens == 50


class TestConcurrency:
    def test_replies_at_once_never_spend_past_the_budget(self):
        """However many replies reserve at once, what is reserved stays within the budget."""
        daily = budgets(owner=10_000, per_address=None)
        grants = []
        lock = threading.Lock()

        def chat() -> None:
            try:
                grant = daily.reserve("9.9.9.9", prompt_tokens=100, max_tokens=400)
            except BudgetExceededError:
                return
            with lock:
                grants.append(grant)

        threads = [threading.Thread(target=chat) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(grant.reserved for grant in grants) <= 10_000
        assert len(grants) == 20


class TestLog:
    def test_one_line_an_hour(self, caplog):
        """Past the hour, the next reply writes one line: tokens by who paid since the line before (here, the
        start), refusals, and the day's spend on the owner's account."""
        clock = Clock()
        daily = budgets(clock=clock)
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=10, max_tokens=10), used=20)
        daily.note_paid("visitor", 500)
        assert not [r for r in caplog.records if r.getMessage().startswith("Tokens since")]
        clock.now += 3601
        with caplog.at_level("INFO", logger="services.budget"):
            daily.note_paid("nobody", 5)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Tokens since")]
        assert lines == [
            "Tokens since 2027-01-15 12:00:00 UTC by who paid: nobody 5, owner 20, visitor 500; refused for the "
            "daily budgets: 0; the public's spend on the owner's account today: 20 of 1,000."
        ]

    def test_refusals_write_the_line_too(self, caplog):
        """Once a budget is spent, refusals may be all that happens: the first one past the period writes the
        line, counting itself."""
        clock = Clock()
        daily = budgets(clock=clock, report_every=60)
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=100, max_tokens=200), used=300)
        clock.now += 61
        with caplog.at_level("INFO", logger="services.budget"), pytest.raises(BudgetExceededError):
            daily.reserve("1.2.3.4", prompt_tokens=1, max_tokens=1)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Tokens since")]
        assert lines == [
            "Tokens since 2027-01-15 12:00:00 UTC by who paid: owner 300; refused for the daily budgets: 1; the "
            "public's spend on the owner's account today: 300 of 1,000."
        ]

    def test_the_period_is_the_owners(self, caplog):
        """USAGE_LOG_SECONDS: no line before the period is over, one after, then none until the next."""
        clock = Clock()
        daily = budgets(clock=clock, report_every=10)
        with caplog.at_level("INFO", logger="services.budget"):
            for _ in range(25):
                daily.note_paid("visitor", 1)
                clock.now += 1
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Tokens since")]
        assert [line.split(" by who paid: ")[1].split(";")[0] for line in lines] == ["visitor 11", "visitor 10"]

    def test_a_new_days_line_says_todays_spend(self, caplog):
        """The first line after midnight counts the day that began, even when no chat of the day was reserved."""
        clock = Clock()
        daily = budgets(clock=clock)
        daily.settle(daily.reserve("1.2.3.4", prompt_tokens=10, max_tokens=10), used=20)
        clock.now += 13 * 3600
        with caplog.at_level("INFO", logger="services.budget"):
            daily.note_paid("visitor", 7)
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Tokens since")]
        assert line.endswith("the public's spend on the owner's account today: 0 of 1,000.")
