"""What the public may spend on the owner's account in a day, in tokens, so that the bill cannot run away.

Two budgets per UTC day, for every chat on the owner's account by someone who has not signed in (the page, the API
and MCP alike): `OWNER_DAILY_TOKENS` for all of them together, and `DAILY_TOKENS_PER_IP` per address (an IPv6
address counted by its /64, which one subscriber holds whole). Signed-in visitors chat on their own account, and
are not counted.

A reply reserves its prompt and its `max_tokens` before it is sent, and gives back what it did not use when it
ends: however many replies run at once, what they can spend together stays within what is left. A reply whose
prompt fits but whose `max_tokens` does not is granted the tokens that are left (it may be cut there); one whose
prompt alone does not fit is refused before anything is sent, with a sentence that says which budget, when it
resets, and what to do. The counters live in memory: a restart begins the day again (README, *The owner's bill*).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from services.errors import BudgetExceededError
from services.network import address_block

__all__ = ["DailyBudgets", "Grant", "Remaining"]

logger = logging.getLogger(__name__)

_DAY = 86_400
# The status line speaks of the free budget once less than this share of it is left.
_LOW = 0.2
# Seconds between two lines of usage in the log, by default (USAGE_LOG_SECONDS).
_REPORT_EVERY = 3600.0


@dataclass(frozen=True)
class Grant:
    """Tokens reserved for one reply: `max_tokens` it may write (at most what was asked), and the whole
    reservation, prompt included, to settle when it ends. `counted` is False for a caller no budget applies to."""

    max_tokens: int
    reserved: int
    address: str | None
    counted: bool = True


@dataclass(frozen=True)
class Remaining:
    """What is left of today's free budgets for one address (None: that budget is off), and when they reset."""

    owner: int | None
    address: int | None
    owner_limit: int | None
    address_limit: int | None
    resets_in: float  # seconds

    @property
    def low(self) -> bool:
        """Whether either budget is down to its last fifth: the page then says how much is left."""
        pairs = ((self.owner, self.owner_limit), (self.address, self.address_limit))
        return any(left is not None and limit and left < _LOW * limit for left, limit in pairs)

    @property
    def tokens(self) -> int | None:
        """The tokens this address may still spend today (the smaller of the two), None when no budget applies."""
        lefts = [left for left in (self.owner, self.address) if left is not None]
        return min(lefts) if lefts else None


def _in_words(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class DailyBudgets:
    """The day's counters and the rule above. Thread-safe; every method is a few dictionary operations."""

    def __init__(
        self,
        *,
        owner_daily: int | None,
        per_address_daily: int | None,
        sign_in_offered: bool,
        report_every: float = _REPORT_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner_daily = owner_daily
        self.per_address_daily = per_address_daily
        self._sign_in = sign_in_offered
        self._clock = clock
        self._lock = threading.Lock()
        self._day = self._today()
        self._owner_spent = 0
        self._by_address: Counter[str] = Counter()
        # What the log reports every `report_every` seconds: tokens by who paid, and refusals, since `_since`.
        self._report_every = report_every
        self._since = clock()
        self._report_at = self._since + report_every
        self._paid: Counter[str] = Counter()
        self._refused = 0

    @property
    def enabled(self) -> bool:
        return self.owner_daily is not None or self.per_address_daily is not None

    def _today(self) -> int:
        return int(self._clock() // _DAY)

    def _roll(self) -> None:
        """A new UTC day starts every counter again (called under the lock)."""
        today = self._today()
        if today != self._day:
            self._day, self._owner_spent = today, 0
            self._by_address.clear()

    def _resets_in(self) -> float:
        return (self._day + 1) * _DAY - self._clock()

    def remaining(self, address: str) -> Remaining:
        with self._lock:
            self._roll()
            block = address_block(address)
            owner = None if self.owner_daily is None else max(0, self.owner_daily - self._owner_spent)
            mine = None if self.per_address_daily is None else max(0, self.per_address_daily - self._by_address[block])
            return Remaining(owner, mine, self.owner_daily, self.per_address_daily, self._resets_in())

    def reserve(self, address: str, *, prompt_tokens: int, max_tokens: int) -> Grant:
        """Reserve a reply's tokens, or raise `BudgetExceededError` before anything is sent.

        The grant's `max_tokens` is what the reply may write: `max_tokens`, or less when less is left.
        """
        block = address_block(address)
        with self._lock:
            self._roll()
            left = [
                (name, limit - spent)
                for name, limit, spent in (
                    ("owner", self.owner_daily, self._owner_spent),
                    ("address", self.per_address_daily, self._by_address[block]),
                )
                if limit is not None
            ]
            if not left:
                return Grant(max_tokens, 0, None, counted=False)
            which, room = min(left, key=lambda pair: pair[1])
            if prompt_tokens + 1 > room:
                self._refused += 1
                refusal = self._refusal(which, room=room, prompt_tokens=prompt_tokens)
                # Once a budget is spent, refusals may be all that happens: they write the line too.
                self._report_if_due()
                raise refusal
            granted = min(max_tokens, room - prompt_tokens)
            reserved = prompt_tokens + granted
            self._owner_spent += reserved
            self._by_address[block] += reserved
            return Grant(granted, reserved, block)

    def settle(self, grant: Grant, *, used: int) -> None:
        """A reply has ended (answered, stopped, failed): its reservation becomes what it used."""
        if not grant.counted or grant.address is None:
            return
        with self._lock:
            if self._today() == self._day:  # a reservation of yesterday is gone with its day
                self._owner_spent += used - grant.reserved
                self._by_address[grant.address] += used - grant.reserved
            self._paid["owner"] += used
            self._report_if_due()

    def note_paid(self, payer: str, tokens: int) -> None:
        """Tokens of a reply no budget applies to (a signed-in visitor's, the free local model's), for the log."""
        with self._lock:
            self._paid[payer] += tokens
            self._report_if_due()

    def _report_if_due(self) -> None:
        """The line of usage, with the first reply or refusal past its time (called under the lock): what it
        counts began with the line before, which is more than `report_every` ago when nothing happened since."""
        now = self._clock()
        if now < self._report_at:
            return
        self._roll()  # a new day's first line says today's spend, not yesterday's
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._since))
        self._since, self._report_at = now, now + self._report_every
        paid = ", ".join(f"{payer} {tokens:,}" for payer, tokens in sorted(self._paid.items())) or "none"
        logger.info(
            "Tokens since %s UTC by who paid: %s; refused for the daily budgets: %d; the public's spend on the "
            "owner's account today: %s of %s.",
            since,
            paid,
            self._refused,
            f"{self._owner_spent:,}",
            "no limit" if self.owner_daily is None else f"{self.owner_daily:,}",
        )
        self._paid.clear()
        self._refused = 0

    def _refusal(self, which: str, *, room: int, prompt_tokens: int) -> BudgetExceededError:
        resets = f"it resets at midnight UTC, in {_in_words(self._resets_in())}"
        if room <= 0:
            what = (
                "This Space's free budget for today is used up"
                if which == "owner"
                else "Your address has used up today's free budget on this Space"
            )
        else:
            budget = "what is left of this Space's free budget" if which == "owner" else "what your address has left"
            what = f"This message needs about {prompt_tokens:,} tokens, more than {budget} today ({room:,})"
        variable = "OWNER_DAILY_TOKENS" if which == "owner" else "DAILY_TOKENS_PER_IP"
        advice = " Sign in with Hugging Face to chat on your own account." if self._sign_in else ""
        return BudgetExceededError(
            f"{what} ({variable}): {resets}.{advice}", budget=which, retry_after=self._resets_in()
        )
