"""What ZeroGPU asks of the local model: a GPU lease sized to each reply, and its refusals told as sentences.

On ZeroGPU every call of a `spaces.GPU` function first asks for a lease of some seconds. The request is checked
against the visitor's daily quota (2 minutes not signed in, 5 with a free account, 40 with PRO): quota is charged
for the time used, but a lease longer than what is left is refused outright, a shorter one gets an earlier place
in the queue, and a task that outruns its lease is aborted. So each reply asks for what it needs
(`LeasePlanner`): the prompt to read and `max_tokens` to write at the speed measured on earlier replies of this
process, with a margin, within bounds. Before any reply has been measured a conservative speed stands in.

spaces reports ZeroGPU's refusals as `gradio.Error`s whose text is written for its own toasts, links and all
(spaces 0.51.3: zero/client.py `schedule`, zero/wrappers.py). `refusal` reads them into one sentence each: what
happened, when the quota comes back, and whether signing in gives more.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass

from services.errors import ZeroGPUError

__all__ = ["Lease", "LeasePlanner", "Timing", "overrun", "refusal"]

# The shortest lease asked for: below it, the worker's start and a short reply's first token would not fit.
LEASE_FLOOR_SECONDS = 10
# Seconds of every lease that go before the first token: on a fresh worker, the weights are copied onto the GPU.
START_SECONDS = 5.0
# Speeds assumed before this process has measured any (a 3-4 B model in bf16 under transformers' `generate` on
# half an RTX Pro 6000 Blackwell writes faster; the first reply measures the real speed).
PRIOR_TOKENS_PER_SECOND = 20.0
PRIOR_PROMPT_TOKENS_PER_SECOND = 2_000.0
# The time the speed predicts is stretched by this much: one reply is slower than another (longer context,
# a busier GPU), and a task that outruns its lease is lost.
MARGIN = 1.25
# Speeds are learned from the last few replies, the slowest of them counting: a lease too short loses the reply,
# one too long only costs a place in the queue.
_REMEMBERED = 8
# Replies shorter than this, and prompts shorter than that, are mostly fixed costs: they teach no speed.
_MIN_TOKENS_TO_LEARN = 16
_MIN_PROMPT_TO_LEARN = 512


@dataclass(frozen=True)
class Timing:
    """How fast one reply went, measured where it ran (on ZeroGPU, in the leased worker, then pickled back)."""

    prompt_tokens: int
    prompt_seconds: float  # from the start of `generate` to the first new token
    new_tokens: int
    decode_seconds: float  # from the first new token to the last


@dataclass(frozen=True)
class Lease:
    """The seconds asked for one reply, and what its prompt and max_tokens needed before the bounds."""

    seconds: int
    needed: float

    @property
    def capped(self) -> bool:
        """Whether the ceiling (LOCAL_GPU_DURATION) cut the lease short of what the reply may need."""
        return self.needed > self.seconds


class LeasePlanner:
    """Sizes each reply's ZeroGPU lease from its prompt and max_tokens and the speed measured so far.

    Thread-safe: replies learn and ask from their own threads.
    """

    def __init__(self, *, ceiling: int, floor: int = LEASE_FLOOR_SECONDS) -> None:
        """
        Args:
            ceiling: the longest lease one reply may ask for (LOCAL_GPU_DURATION).
            floor: the shortest; the ceiling wins when it is lower.
        """
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self._lock = threading.Lock()
        self._rates: deque[float] = deque(maxlen=_REMEMBERED)
        self._prompt_rates: deque[float] = deque(maxlen=_REMEMBERED)

    @property
    def tokens_per_second(self) -> float:
        """The writing speed leases are sized for: the slowest of the last replies, or the prior."""
        with self._lock:
            return min(self._rates, default=PRIOR_TOKENS_PER_SECOND)

    @property
    def prompt_tokens_per_second(self) -> float:
        """The reading speed leases are sized for: the slowest of the last long prompts, or the prior."""
        with self._lock:
            return min(self._prompt_rates, default=PRIOR_PROMPT_TOKENS_PER_SECOND)

    def plan(self, *, prompt_tokens: int, new_tokens: int) -> Lease:
        """The lease for a reply that reads `prompt_tokens` and may write up to `new_tokens`."""
        reading = prompt_tokens / self.prompt_tokens_per_second
        writing = new_tokens / self.tokens_per_second
        needed = START_SECONDS + MARGIN * (reading + writing)
        return Lease(min(max(math.ceil(needed), self.floor), self.ceiling), needed)

    def learn(self, timing: Timing) -> None:
        """Take a finished reply's speeds into account; a reply too short to say anything is ignored."""
        with self._lock:
            if timing.new_tokens >= _MIN_TOKENS_TO_LEARN and timing.decode_seconds > 0:
                # The first token's time belongs to reading the prompt.
                self._rates.append((timing.new_tokens - 1) / timing.decode_seconds)
            if timing.prompt_tokens >= _MIN_PROMPT_TO_LEARN and timing.prompt_seconds > 0:
                self._prompt_rates.append(timing.prompt_tokens / timing.prompt_seconds)

    def overran(self) -> None:
        """A reply outran a lease that was not capped: the speed was overestimated; halve it for a while."""
        with self._lock:
            self._rates.append(min(self._rates, default=PRIOR_TOKENS_PER_SECOND) / 2)


# ZeroGPU's texts, as spaces 0.51.3 writes them (zero/client.py, zero/wrappers.py).
_QUOTA_NUMBERS = re.compile(r"\((\d+)s requested vs\. (\d+)s left\)")
# `Try again in {timedelta}`: "1:12:05", "1 day, 2:00:00", "0:00:56.500000".
_RETRY = re.compile(r"(?:try again|retry) in (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)(?:\.\d+)?", re.IGNORECASE)
# "your ZeroGPU quota" (not signed in), "your free ZeroGPU quota", "your Pro ZeroGPU quota".
_TIER = re.compile(r"exceeded your (?:(free|Pro) )?ZeroGPU quota")
_ILLEGAL_DURATION = re.compile(r"requested GPU duration \((\d+)s\)")

_MORE = "signing in to Hugging Face gives more (5 minutes a day instead of 2, 40 with PRO)"
_MORE_FREE = "Hugging Face PRO gives 40 minutes a day"


def refusal(title: str | None, message: str) -> ZeroGPUError | None:
    """ZeroGPU's refusal or failure (a `gradio.Error` from spaces: its title and message) as one sentence.

    Returns None when the error is not ZeroGPU's, so the caller keeps its own wording.
    """
    if not title or not title.startswith("ZeroGPU"):
        return None
    retry_after = _retry_after(message)
    when = f"in {_duration(retry_after)}" if retry_after is not None else "within a day"
    # Checked before the title: with no visitor token, a queue that gave up is titled "quota exceeded".
    if message.startswith("No GPU was available after"):
        if message.endswith("Retry later"):  # a PRO visitor: the queue has no better place to give
            return ZeroGPUError("No GPU came free on ZeroGPU within a minute: try again shortly.", reason="busy")
        return ZeroGPUError(
            "No GPU came free on ZeroGPU within a minute: try again shortly; visitors signed in to Hugging Face "
            "get an earlier place in the queue.",
            reason="busy",
            sign_in_helps=True,
        )
    if message.startswith("No GPU was available"):
        return ZeroGPUError("No GPU is free on ZeroGPU right now: try again in a minute.", reason="busy")
    if title == "ZeroGPU quota exceeded":
        return _quota(message, when=when, retry_after=retry_after)
    if title == "ZeroGPU pending credits exceeded":
        return ZeroGPUError(
            "Your other ZeroGPU tasks still hold your quota: try again when they have finished.", reason="busy"
        )
    if title == "ZeroGPU illegal duration":
        match = _ILLEGAL_DURATION.search(message)
        asked = f" ({match[1]} s)" if match else ""
        return ZeroGPUError(
            f"This reply needs more GPU time{asked} than ZeroGPU gives you at once: ask for a shorter reply (a "
            "lower max tokens), or sign in to Hugging Face, which allows longer tasks.",
            reason="too_long",
            sign_in_helps=True,
        )
    if title == "ZeroGPU worker error":
        if message == "GPU task aborted":
            return ZeroGPUError(
                "ZeroGPU stopped the reply before it was finished (a task that outruns its GPU time, or whose "
                "worker fails, is ended): try again, perhaps with a lower max tokens.",
                reason="aborted",
            )
        # The worker raised: spaces passes on the exception's class name only.
        return ZeroGPUError(
            f"The GPU worker failed ({message}) before the reply was finished: try again.", reason="failed"
        )
    if title == "ZeroGPU client error":
        return ZeroGPUError(f"ZeroGPU refused the reply ({message}): reload the page and try again.", reason="failed")
    return None


def _quota(message: str, *, when: str, retry_after: float | None) -> ZeroGPUError:
    if message.startswith("Space app has reached its GPU limit"):
        # No visitor token came with the request (an API call without one): the Space's shared allowance.
        return ZeroGPUError(
            f"This Space has used the ZeroGPU time it may give visitors who are not signed in: it comes back "
            f"{when}, and signing in to Hugging Face gives you a quota of your own.",
            reason="quota",
            retry_after=retry_after,
            sign_in_helps=True,
        )
    if message.startswith("You have exceeded your ZeroGPU runs limit"):
        return ZeroGPUError(
            f"You have started as many ZeroGPU tasks as Hugging Face allows for now: more are allowed {when}, "
            f"and {_MORE}.",
            reason="quota",
            retry_after=retry_after,
            sign_in_helps=True,
        )
    tier = _TIER.search(message)
    level = tier[1] if tier else None
    more = {None: f", and {_MORE}", "free": f", and {_MORE_FREE}", "Pro": ""}[level]
    numbers = _QUOTA_NUMBERS.search(message)
    requested, left = (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)
    if left > 0:
        sentence = (
            f"This reply asks for {requested} s of GPU time and {left} s of your ZeroGPU quota are left: a lower "
            f"max tokens asks for less, the quota comes back {when}{more}."
        )
    else:
        sentence = (
            f"Your ZeroGPU quota (the GPU time Hugging Face gives each visitor) is used up: it comes back {when}{more}."
        )
    return ZeroGPUError(sentence, reason="quota", retry_after=retry_after, sign_in_helps=level != "Pro")


def overrun(lease: Lease) -> ZeroGPUError:
    """The sentence for a task ZeroGPU aborted after the reply had run for its whole lease."""
    if lease.capped:
        return ZeroGPUError(
            f"The reply needed more than the {lease.seconds} s of GPU time one reply may ask for here "
            "(LOCAL_GPU_DURATION), so ZeroGPU stopped it: ask for a shorter reply (a lower max tokens).",
            reason="aborted",
        )
    return ZeroGPUError(
        f"The reply took longer than the {lease.seconds} s of GPU time it asked for, so ZeroGPU stopped it: try "
        "again, and the next reply asks for more.",
        reason="aborted",
    )


def _retry_after(message: str) -> float | None:
    match = _RETRY.search(message)
    if match is None:
        return None
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 12 min', '2 days 3 h': rounded up, to the minute past the first."""
    total = math.ceil(seconds)
    if total < 60:
        return f"{total} s"
    days, rest = divmod(math.ceil(total / 60), 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' if days > 1 else ''}" if days else "", f"{hours} h" if hours else ""]
    parts.append(f"{minutes} min" if minutes and not days else "")
    return " ".join(part for part in parts if part)
