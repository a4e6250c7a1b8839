"""Property tests: the services' invariants on arbitrary Unicode, and validation's exact accept/reject boundaries."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services import tools
from services.chat import history_to_messages, prepare_chat, trim_history, validate_params
from services.config import Settings
from services.errors import ValidationError
from services.text import clean
from tests.test_chat import ScriptedBackend

LIMIT = 10_000
SETTINGS = Settings()
text = st.text(max_size=300)
message_lists = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(min_size=1, max_size=50)}
    ),
    max_size=20,
)


class TestClean:
    @given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xE000)))
    @example("lone \ud800 and \udfff surrogates\x00")
    def test_result_is_always_utf8_encodable(self, value):
        """Whatever arrives, what leaves can be sent as UTF-8 JSON, without NUL."""
        cleaned = clean(value)
        cleaned.encode("utf-8")
        assert "\x00" not in cleaned

    @given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
    def test_valid_text_is_untouched(self, value):
        """Valid text without NUL passes unchanged."""
        assert clean(value) == value


class TestTextTools:
    @given(text)
    def test_reverse_keeps_every_character(self, value):
        """Reversal reorders, never adds or loses a code point (beyond the NUL that every input drops)."""
        assert Counter(tools.reverse(value, max_chars=LIMIT)) == Counter(clean(value))

    @given(st.text(alphabet=st.characters(blacklist_categories=["Mn", "Me", "Mc"]), max_size=300))
    def test_reverse_twice_is_identity_without_combining_marks(self, value):
        """With no combining marks, reversing twice gives the text back."""
        assert tools.reverse(tools.reverse(value, max_chars=LIMIT), max_chars=LIMIT) == clean(value)

    @given(text)
    def test_slug_is_url_safe(self, value):
        """A slug is lowercase ASCII letters, digits and single inner dashes."""
        slug = tools.slugify(value, max_chars=LIMIT)
        assert re.fullmatch(r"([a-z0-9]+(-[a-z0-9]+)*)?", slug)

    @given(text)
    def test_counts_are_consistent(self, value):
        """Characters equal the length; words and lines never exceed what the text can hold."""
        stats = tools.count(value, max_chars=LIMIT)
        assert stats.characters == len(clean(value))
        assert stats.words <= len(value)
        assert stats.lines <= len(value)

    @given(text)
    def test_case_tools_never_fail(self, value):
        """Any Unicode goes through every tool without an exception."""
        for _, fn in tools.TOOLS.values():
            assert isinstance(fn(value, max_chars=LIMIT), str)

    @given(st.integers(min_value=0, max_value=50))
    def test_limit_boundary(self, extra):
        """Exactly the limit passes, one over fails."""
        assert tools.reverse("x" * 50, max_chars=50) == "x" * 50
        if extra:
            with pytest.raises(ValidationError):
                tools.reverse("x" * (50 + extra), max_chars=50)


class TestValidationBoundaries:
    @given(st.floats(allow_nan=True, allow_infinity=True))
    def test_temperature_accepted_iff_in_range(self, value):
        """A temperature passes exactly when it is a finite number in [0, 2]."""
        ok = math.isfinite(value) and 0 <= value <= 2
        try:
            validate_params(None, value, None, settings=SETTINGS)
        except ValidationError as error:
            assert not ok
            assert str(error).startswith("temperature:")
        else:
            assert ok

    @given(st.one_of(st.integers(min_value=-10, max_value=SETTINGS.max_tokens_cap + 10), st.floats()))
    def test_max_tokens_accepted_iff_whole_and_in_range(self, value):
        """max_tokens passes exactly when it is a whole number in [1, MAX_TOKENS_CAP]."""
        ok = math.isfinite(value) and value == int(value) and 1 <= value <= SETTINGS.max_tokens_cap
        try:
            _, params = validate_params(None, None, value, settings=SETTINGS)
        except ValidationError as error:
            assert not ok
            assert str(error).startswith("max_tokens:")
        else:
            assert ok
            assert params.max_tokens == int(value)

    @given(st.text(max_size=200))
    def test_messages_are_accepted_unless_blank(self, value):
        """Any text with a visible character is accepted as sent (NUL removed); blank text is refused."""
        backend = ScriptedBackend([])
        if value.replace("\x00", "").strip():
            request = prepare_chat(backend, value, [], settings=SETTINGS)
            assert request.messages[-1] == {"role": "user", "content": value.replace("\x00", "")}
        else:
            with pytest.raises(ValidationError, match="^message:"):
                prepare_chat(backend, value, [], settings=SETTINGS)


class TestHistory:
    @given(message_lists)
    def test_roles_alternate_after_conversion(self, history):
        """Whatever the history, the model never sees two turns in a row from one side."""
        messages = history_to_messages(history)
        assert all(a["role"] != b["role"] for a, b in itertools.pairwise(messages))

    @settings(max_examples=200)
    @given(message_lists, st.integers(min_value=1, max_value=400))
    def test_trim_keeps_the_newest_within_budget(self, history, budget):
        """Trimming keeps a suffix of the history, within the budget, never starting with an answer."""
        messages = history_to_messages(history)
        kept, dropped = trim_history(messages, max_chars=budget)
        assert kept == messages[dropped:]
        assert sum(len(m["content"]) for m in kept) <= budget or not kept
        assert not kept or kept[0]["role"] == "user" or dropped == 0
