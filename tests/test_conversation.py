"""Tests for services/conversation.py: the strict parser of a client's conversation, what the model sees of it,
the JSON form, and the bounds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from services.conversation import Limits, Turn, bound_turns, parse_turns, to_messages, total_chars, turns_to_json
from services.errors import ConversationError, ValidationError

pytestmark = pytest.mark.unit

LIMITS = Limits(max_messages=10, max_chars=1_000)


class Exploding(Mapping[str, object]):
    """A message that fails the test if the parser reads it."""

    def __getitem__(self, key: str) -> object:
        raise AssertionError("the parser read a message it should have refused unread")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the parser read a message it should have refused unread")

    def __len__(self) -> int:
        raise AssertionError("the parser read a message it should have refused unread")


class TestTurn:
    def test_size_counts_everything_shown(self):
        """A turn's size is its text, thinking and notice together."""
        assert Turn("assistant", "abc", thinking="de", notice="f").size == 6
        assert total_chars([Turn("user", "ab"), Turn("assistant", "cde", notice="!")]) == 6
        assert total_chars([]) == 0


class TestParseTurns:
    def test_user_and_assistant_turns(self):
        """Each field the app itself produces is read into its Turn."""
        value = [
            {"role": "user", "text": "hi"},
            {"role": "assistant", "text": "hello", "thinking": "greet", "thinking_seconds": 2, "notice": "cut"},
        ]
        assert parse_turns(value, limits=LIMITS) == (
            Turn("user", "hi"),
            Turn("assistant", "hello", thinking="greet", thinking_seconds=2.0, notice="cut"),
        )

    def test_content_is_accepted_for_text(self):
        """The OpenAI and Gradio name of the text, `content`, is read as `text`."""
        value = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        assert parse_turns(value, limits=LIMITS) == (Turn("user", "hi"), Turn("assistant", "yo"))

    def test_missing_text_is_empty(self):
        """A turn with only its role is an empty turn."""
        assert parse_turns([{"role": "assistant"}], limits=LIMITS) == (Turn("assistant", ""),)

    @pytest.mark.parametrize("value", [None, [], ()])
    def test_nothing_is_an_empty_conversation(self, value):
        """None and an empty list both mean no history."""
        assert parse_turns(value, limits=LIMITS) == ()

    def test_thinking_seconds_is_a_float(self):
        """Whole seconds come back as a float, and zero is allowed."""
        (turn,) = parse_turns([{"role": "assistant", "text": "a", "thinking_seconds": 0}], limits=LIMITS)
        assert turn.thinking_seconds == 0.0
        assert type(turn.thinking_seconds) is float

    def test_nul_and_lone_surrogates_are_cleaned(self):
        """Every text field arrives without NUL, and with lone surrogates replaced."""
        value = [{"role": "assistant", "text": "a\x00b", "thinking": "\ud800x", "notice": "n\x00\udfff"}]
        assert parse_turns(value, limits=LIMITS) == (Turn("assistant", "ab", thinking="\ufffdx", notice="n\ufffd"),)

    INVALID = (
        ("hello", "history: must be a list of messages, got str."),  # text, not a list
        (b"[]", "history: must be a list of messages, got bytes."),  # bytes, not a list
        ({"role": "user"}, "history: must be a list of messages, got dict."),  # one object, not a list
        (42, "history: must be a list of messages, got int."),  # a number
        (["hi"], "history: message 1 must be an object, got str."),  # a message that is not an object
        ([["user", "hi"]], "history: message 1 must be an object, got list."),  # a pair, not an object
        (
            [{"role": "user", "text": "a"}, {"role": "user", "text": "b", "metadata": {}}],
            "history: message 2 has unknown field(s): metadata.",
        ),  # Gradio's metadata is not the app's
        (
            [{"role": "user", "text": "a", "z": 1, "files": []}],
            "history: message 1 has unknown field(s): files, z.",
        ),  # several unknown fields, sorted
        ([{"text": "a"}], "history: message 1: 'role' must be 'user' or 'assistant'."),  # no role
        ([{"role": "system", "text": "a"}], "history: message 1: 'role' must be 'user' or 'assistant'."),  # system
        ([{"role": "tool", "text": "a"}], "history: message 1: 'role' must be 'user' or 'assistant'."),  # tool
        ([{"role": "User", "text": "a"}], "history: message 1: 'role' must be 'user' or 'assistant'."),  # case
        ([{"role": ["user"], "text": "a"}], "history: message 1: 'role' must be 'user' or 'assistant'."),  # a list
        (
            [{"role": "user", "text": "a", "content": "b"}],
            "history: message 1 has both 'text' and 'content'.",
        ),  # which one is meant?
        (
            [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
            "history: message 1: 'content' must be text, got list.",
        ),  # Gradio's typed parts are not text
        ([{"role": "user", "text": None}], "history: message 1: 'text' must be text, got NoneType."),  # null text
        (
            [{"role": "assistant", "text": "a", "thinking": 5}],
            "history: message 1: 'thinking' must be text, got int.",
        ),  # thinking that is not text
        (
            [{"role": "assistant", "text": "a", "notice": ["x"]}],
            "history: message 1: 'notice' must be text, got list.",
        ),  # a notice that is not text
        (
            [{"role": "user", "text": "a", "thinking": "b"}],
            "history: message 1: a user message carries only its text and attachments.",
        ),  # users do not think, in this app
        (
            [{"role": "user", "text": "a", "notice": ""}],
            "history: message 1: a user message carries only its text and attachments.",
        ),  # even an empty notice
        (
            [{"role": "user", "text": "a", "thinking_seconds": None}],
            "history: message 1: a user message carries only its text and attachments.",
        ),  # even a null time
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": -1}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # negative
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": True}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # a bool
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": "3"}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # text
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": float("inf")}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # infinite
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": float("nan")}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # NaN
        (
            [{"role": "assistant", "text": "a", "thinking_seconds": 10**400}],
            "history: message 1: 'thinking_seconds' must be a number of seconds.",
        ),  # an integer beyond any float, as JSON allows
    )

    @pytest.mark.parametrize(("value", "message"), INVALID, ids=range(len(INVALID)))
    def test_refuses_what_the_app_never_produces(self, value, message):
        """Wrong shapes, unknown fields and roles, and misplaced fields are refused, naming the message."""
        with pytest.raises(ConversationError) as info:
            parse_turns(value, limits=LIMITS)
        assert str(info.value) == message
        assert info.value.field == "history"

    def test_conversation_error_is_a_validation_error(self):
        """Callers that handle ValidationError handle a bad conversation too."""
        with pytest.raises(ValidationError):
            parse_turns("x", limits=LIMITS)

    def test_unknown_field_names_are_shortened(self):
        """A client cannot make the error message as long as it likes."""
        with pytest.raises(ConversationError) as info:
            parse_turns([{"role": "user", "x" * 1000: 1}], limits=LIMITS)
        assert str(info.value) == f"history: message 1 has unknown field(s): {'x' * 200}."

    def test_too_many_messages_is_refused_before_any_is_read(self):
        """The count is checked first: no message of an oversized list is looked at."""
        value = [Exploding()] * 11
        with pytest.raises(ConversationError) as info:
            parse_turns(value, limits=LIMITS)
        assert str(info.value) == "history: has 11 messages; at most 10 are accepted."

    def test_exactly_the_message_limit_is_accepted(self):
        """MAX_HISTORY_MESSAGES messages pass."""
        value = [{"role": "user", "text": "a"}] * 10
        assert len(parse_turns(value, limits=LIMITS)) == 10

    def test_too_many_characters_is_refused_as_read(self):
        """Characters are counted as messages are read: going over stops the parse before later messages are read."""
        value = [{"role": "user", "text": "a" * 600}, {"role": "assistant", "text": "b" * 401}, Exploding()]
        with pytest.raises(ConversationError) as info:
            parse_turns(value, limits=LIMITS)
        assert str(info.value) == "history: is over 1,000 characters."

    def test_characters_count_thinking_and_notices(self):
        """Every shown field counts towards the limit, not only the text."""
        value = [{"role": "assistant", "text": "a" * 400, "thinking": "b" * 400, "notice": "c" * 201}]
        with pytest.raises(ConversationError, match=r"^history: is over 1,000 characters\.$"):
            parse_turns(value, limits=LIMITS)

    def test_exactly_the_character_limit_is_accepted(self):
        """A conversation of exactly max_chars passes."""
        value = [{"role": "user", "text": "a" * 500}, {"role": "assistant", "text": "b" * 500}]
        assert total_chars(parse_turns(value, limits=LIMITS)) == 1_000


class TestToMessages:
    def test_text_only(self):
        """The model sees each turn's text, never its thinking or notice."""
        turns = [Turn("user", "q"), Turn("assistant", "a", thinking="plan", thinking_seconds=1.0, notice="cut")]
        assert to_messages(turns) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]

    def test_same_side_turns_are_joined(self):
        """Two turns in a row from one side become one message, joined by a blank line."""
        turns = [Turn("user", "first"), Turn("user", "again"), Turn("assistant", "a1"), Turn("assistant", "a2")]
        assert to_messages(turns) == [
            {"role": "user", "content": "first\n\nagain"},
            {"role": "assistant", "content": "a1\n\na2"},
        ]

    def test_empty_turns_are_skipped(self):
        """A blank turn (a reply stopped before its first token) is left out, and its neighbours are joined."""
        turns = [Turn("user", "q1"), Turn("assistant", "  ", notice="Stopped."), Turn("user", "q2")]
        assert to_messages(turns) == [{"role": "user", "content": "q1\n\nq2"}]

    def test_no_turns(self):
        """An empty conversation gives no messages."""
        assert to_messages([]) == []


class TestTurnsToJson:
    def test_empty_fields_are_left_out(self):
        """Only fields with a value are written, `text` always."""
        turns = [Turn("user", ""), Turn("assistant", "a", thinking="t", thinking_seconds=0.0, notice="n")]
        assert turns_to_json(turns) == [
            {"role": "user", "text": ""},
            {"role": "assistant", "text": "a", "thinking": "t", "thinking_seconds": 0.0, "notice": "n"},
        ]

    def test_round_trip_through_the_parser(self):
        """What turns_to_json writes, parse_turns reads back as the same turns."""
        turns = (
            Turn("user", "q"),
            Turn("assistant", "a", thinking="t", thinking_seconds=1.5, notice="n"),
            Turn("assistant", ""),
            Turn("user", "ü ✓ 😀"),
        )
        assert parse_turns(turns_to_json(turns), limits=LIMITS) == turns


class TestBoundTurns:
    TURNS = (
        Turn("user", "a" * 10),
        Turn("assistant", "b" * 10),
        Turn("user", "c" * 10),
        Turn("assistant", "d" * 10),
    )

    def test_within_bounds_untouched(self):
        """A conversation within both bounds is kept whole, the bounds themselves included."""
        assert bound_turns(self.TURNS, max_messages=4, max_chars=40) == list(self.TURNS)

    def test_message_bound_keeps_the_newest_whole_exchanges(self):
        """Past max_messages the oldest go first, and a leading answer goes with its question."""
        assert bound_turns(self.TURNS, max_messages=3, max_chars=1_000) == list(self.TURNS[2:])
        assert bound_turns(self.TURNS, max_messages=2, max_chars=1_000) == list(self.TURNS[2:])

    def test_character_bound_keeps_the_newest(self):
        """Past max_chars the oldest go first, never leaving an answer first."""
        assert bound_turns(self.TURNS, max_messages=10, max_chars=35) == list(self.TURNS[2:])
        assert bound_turns(self.TURNS, max_messages=10, max_chars=15) == []

    def test_thinking_counts(self):
        """The size of a turn includes its thinking."""
        turns = [Turn("user", "q"), Turn("assistant", "a", thinking="t" * 100), Turn("user", "q2")]
        assert bound_turns(turns, max_messages=10, max_chars=50) == [Turn("user", "q2")]

    def test_no_turns(self):
        """Nothing in, nothing out."""
        assert bound_turns([], max_messages=10, max_chars=10) == []
