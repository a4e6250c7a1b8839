"""The one rule for making a sequence fit a budget, used wherever something must shrink to fit.

What the model is sent (`MAX_HISTORY_CHARS`), a session's conversation (`MAX_HISTORY_MESSAGES`,
`HISTORY_CONVERSATION_CHARS`), the local model's context window, and the chats saved in a browser
(`HISTORY_TOTAL_CHARS`) all shrink the same way:

- the oldest items go first, and only as many as it takes;
- the kept part begins where a part may begin (`can_start`: a user message, so that no answer is kept without
  its question), or it is empty; keeping everything needs no such place;
- what must stay whatever happens (a system prompt, the message being sent, the chat that is open) is not among
  the items: the caller takes its size off the budget first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TypeVar

__all__ = ["drop_oldest", "keep_newest"]

T = TypeVar("T")


def drop_oldest(
    items: Sequence[T], *, fits: Callable[[int], bool], can_start: Callable[[T], bool] | None = None
) -> int:
    """How many of the oldest `items` must go for the rest to fit; `fits(n)` says whether it does with `n` gone.

    `fits` must stay true once true (dropping more never makes a thing bigger). The answer is found by bisection
    over the places a kept part may begin, so `fits` runs a logarithmic number of times: it may be costly (the
    local model renders its chat template and counts tokens).
    """
    if fits(0):
        return 0
    cuts = [i for i in range(1, len(items)) if can_start is None or can_start(items[i])] + [len(items)]
    low, high = 0, len(cuts) - 1
    while low < high:
        middle = (low + high) // 2
        if fits(cuts[middle]):
            high = middle
        else:
            low = middle + 1
    return cuts[low]


def keep_newest(
    items: Sequence[T],
    *,
    size: Callable[[T], int],
    budget: int,
    max_items: int | None = None,
    can_start: Callable[[T], bool] | None = None,
) -> tuple[list[T], int]:
    """The newest `items` whose sizes add up to at most `budget` (and number at most `max_items`), by the rules
    above; returns them and how many went."""
    # after[n]: the size of what is left with the n oldest gone.
    after = list(accumulate(reversed([size(item) for item in items]), initial=0))[::-1]
    limit = len(items) if max_items is None else max(max_items, 0)

    def fits(gone: int) -> bool:
        return after[gone] <= budget and len(items) - gone <= limit

    gone = drop_oldest(items, fits=fits, can_start=can_start)
    return list(items[gone:]), gone
