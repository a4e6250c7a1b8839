"""Tests for services/tools.py: the greeting, the text tools and the counter."""

from __future__ import annotations

import pytest

from services import tools
from services.errors import ValidationError

pytestmark = pytest.mark.unit

LIMIT = 1000


class TestGreet:
    def test_greets_by_name(self):
        """The seed's contract: Hello, {name}!"""
        assert tools.greet("Ada") == "Hello, Ada!"

    def test_trims_spaces(self):
        """Stray spaces from a form do not end up in the greeting."""
        assert tools.greet("  Ada ") == "Hello, Ada!"

    @pytest.mark.parametrize(
        "name",
        [
            "",  # nothing typed
            "   ",  # only spaces
            "x" * (tools.MAX_NAME_CHARS + 1),  # too long
            None,  # not text
        ],
    )
    def test_rejects_bad_names(self, name):
        """Bad input gets a ValidationError naming the field."""
        with pytest.raises(ValidationError, match="^name:"):
            tools.greet(name)


class TestTextTools:
    def test_reverse(self):
        """Plain text reverses."""
        assert tools.reverse("stressed", max_chars=LIMIT) == "desserts"

    def test_reverse_keeps_accents_on_their_letter(self):
        """A combining accent stays on its base letter."""
        assert tools.reverse("cafe\u0301!", max_chars=LIMIT) == "!e\u0301fac"

    def test_case_tools(self):
        """Upper, lower and title case."""
        assert tools.upper("Straße", max_chars=LIMIT) == "STRASSE"
        assert tools.lower("ÀBC", max_chars=LIMIT) == "àbc"
        assert tools.title("don't stop me now", max_chars=LIMIT) == "Don't Stop Me Now"

    def test_slugify(self):
        """Accents fold to ASCII, runs of other characters become one dash."""
        assert tools.slugify("  Héllo, World! 2026 ", max_chars=LIMIT) == "hello-world-2026"

    def test_count(self):
        """Characters, words and lines."""
        assert tools.count("one two\nthree\n", max_chars=LIMIT) == tools.TextStats(characters=14, words=3, lines=2)
        assert tools.count("", max_chars=LIMIT) == tools.TextStats(characters=0, words=0, lines=0)

    @pytest.mark.parametrize("fn", [tool.run for tool in tools.TOOLS] + [tools.count])
    def test_size_limit(self, fn):
        """Every tool refuses text over the limit, naming the field and the limit."""
        with pytest.raises(ValidationError, match=r"^text: is 1,001 characters; at most 1,000"):
            fn("x" * 1001, max_chars=LIMIT)


class TestCounter:
    def test_counts_up(self):
        """Each call adds one."""
        assert tools.increment(0) == 1
        assert tools.increment(41) == 42

    @pytest.mark.parametrize("value", [None, -3, "7", True])
    def test_restarts_on_nonsense(self, value):
        """A state that is not a count starts over at 1."""
        assert tools.increment(value) == 1
