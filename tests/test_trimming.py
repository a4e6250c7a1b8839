"""Tests for services/trimming.py: the one rule by which a conversation, a prompt or the saved chats shrink."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.trimming import drop_oldest, keep_newest

pytestmark = pytest.mark.unit


def is_upper(item: str) -> bool:
    return item.isupper()


class TestKeepNewest:
    def test_everything_that_fits_stays(self):
        """Within the budget (the budget itself included), nothing goes."""
        assert keep_newest(["A", "b", "C"], size=len, budget=3) == (["A", "b", "C"], 0)

    def test_the_oldest_go_first_and_only_as_many_as_needed(self):
        assert keep_newest(["a", "bb", "ccc"], size=len, budget=5) == (["bb", "ccc"], 1)

    def test_the_kept_part_begins_where_a_part_may_begin(self):
        """Past the budget, the cut falls only before an item that may start (an answer goes with its question)."""
        assert keep_newest(["A", "b", "C", "d"], size=len, budget=3, can_start=is_upper) == (["C", "d"], 2)

    def test_keeping_everything_needs_no_place_to_begin(self):
        """A conversation that begins with an answer and fits is kept whole."""
        assert keep_newest(["b", "C"], size=len, budget=2, can_start=is_upper) == (["b", "C"], 0)

    def test_a_count_bound_too(self):
        assert keep_newest(["A", "b", "C", "d"], size=len, budget=100, max_items=3, can_start=is_upper) == (
            ["C", "d"],
            2,
        )

    def test_nothing_fits(self):
        assert keep_newest(["AAA", "BBB"], size=len, budget=2) == ([], 2)
        assert keep_newest([], size=len, budget=0) == ([], 0)

    @given(
        st.lists(st.text(alphabet="Aa", min_size=1, max_size=5), max_size=30),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=30),
    )
    def test_the_rule(self, items, budget, max_items):
        """Whatever the input: a suffix, within both bounds, as long as any other suffix the rule allows."""
        kept, gone = keep_newest(items, size=len, budget=budget, max_items=max_items, can_start=is_upper)
        assert kept == items[gone:]
        assert (sum(map(len, kept)) <= budget and len(kept) <= max_items) or not kept
        allowed = [n for n in range(len(items) + 1) if n in (0, len(items)) or is_upper(items[n])]
        fitting = [n for n in allowed if sum(map(len, items[n:])) <= budget and len(items) - n <= max_items]
        assert gone == min(fitting)


class TestDropOldest:
    def test_a_costly_fit_runs_a_logarithmic_number_of_times(self):
        """The local model's check renders a template: bisection asks it about log2(n) times, not n."""
        asked: list[int] = []

        def fits(gone: int) -> bool:
            asked.append(gone)
            return gone >= 700

        assert drop_oldest(list(range(1000)), fits=fits) == 700
        assert len(asked) <= 12
