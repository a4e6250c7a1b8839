"""Property tests: the services' invariants on arbitrary Unicode, and validation's exact accept/reject boundaries."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from services import tools
from services.chat import trim_history, validate_message, validate_params
from services.config import Settings
from services.conversation import Limits, Turn, bound_turns, parse_turns, to_messages, turns_to_json
from services.errors import RateLimitedError, ValidationError
from services.markdown import safe_markdown
from services.ratelimit import RateLimiter
from services.reasoning import ThinkSplitter
from services.redact import Scrubber
from services.text import clean

pytestmark = pytest.mark.unit

LIMIT = 10_000
SETTINGS = Settings()
text = st.text(max_size=300)
# Text valid as the app keeps it: no NUL, no lone surrogate (what `clean` guarantees).
clean_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)
turn_lists = st.lists(
    st.one_of(
        st.builds(Turn, st.just("user"), clean_text),
        st.builds(
            Turn,
            st.just("assistant"),
            clean_text,
            thinking=clean_text,
            thinking_seconds=st.none() | st.floats(min_value=0, max_value=86_400),
            notice=clean_text,
        ),
    ),
    max_size=20,
)


class TestClean:
    @given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xE000)))
    @example("lone \ud800 and \udfff surrogates\x00")
    def test_result_is_always_utf8_encodable(self, value):
        """Whatever arrives, what leaves can be sent as UTF-8 JSON, without NUL."""
        cleaned = clean(value)
        assert cleaned.encode("utf-8").decode("utf-8") == cleaned
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
        for fn in (tool.run for tool in tools.TOOLS):
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
            _, params = validate_params(None, value, None, settings=SETTINGS)
        except ValidationError as error:
            assert not ok
            assert str(error).startswith("temperature:")
        else:
            assert ok
            assert params.temperature == value

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
        """Any text with a visible character is accepted, cleaned; blank text is refused."""
        if clean(value).strip():
            assert validate_message(value, settings=SETTINGS) == clean(value)
        else:
            with pytest.raises(ValidationError, match="^message:"):
                validate_message(value, settings=SETTINGS)


class TestConversation:
    @given(turn_lists)
    def test_json_round_trip(self, turns):
        """What turns_to_json writes, parse_turns reads back unchanged."""
        limits = Limits(max_messages=len(turns), max_chars=sum(turn.size for turn in turns))
        assert parse_turns(turns_to_json(turns), limits=limits) == tuple(turns)

    @given(turn_lists)
    def test_roles_alternate_after_conversion(self, turns):
        """Whatever the conversation, the model never sees two messages in a row from one side, nor a blank one."""
        messages = to_messages(turns)
        assert all(a["role"] != b["role"] for a, b in itertools.pairwise(messages))
        assert all(message["content"].strip() for message in messages)

    @settings(max_examples=200)
    @given(turn_lists, st.integers(min_value=1, max_value=400))
    def test_trim_keeps_the_newest_within_budget(self, turns, budget):
        """Trimming keeps a suffix of the history, within the budget, never starting with an answer."""
        messages = to_messages(turns)
        kept, dropped = trim_history(messages, max_chars=budget)
        assert kept == messages[dropped:]
        assert sum(len(m["content"]) for m in kept) <= budget or not kept
        assert not kept or kept[0]["role"] == "user" or dropped == 0

    @given(turn_lists, st.integers(min_value=1, max_value=25), st.integers(min_value=0, max_value=400))
    def test_bound_keeps_a_suffix_within_both_bounds(self, turns, max_messages, max_chars):
        """bound_turns keeps the newest turns, within both bounds, never starting with an answer it cut the
        question of."""
        kept = bound_turns(turns, max_messages=max_messages, max_chars=max_chars)
        assert kept == turns[len(turns) - len(kept) :]
        assert len(kept) <= max_messages
        assert sum(turn.size for turn in kept) <= max_chars
        assert not kept or kept[0].role == "user" or len(kept) == len(turns)


# Text rich in what matters to the splitter: the tags, their pieces, white space and newlines.
think_text = st.lists(
    st.sampled_from(["<think>", "</think>", "<", "</", "think", ">", " ", "\n", "a", "b"]), max_size=12
).map("".join)


class TestThinkSplitter:
    @given(think_text, st.lists(st.integers(min_value=0, max_value=60), max_size=5))
    @example("<think>a</think>\n\nb", [16])  # `</think>` and the newlines after it in separate pieces
    def test_splitting_into_pieces_changes_nothing(self, value, cuts):
        """However the reply is cut into pieces, the answer and the thinking are those of the reply in one piece."""

        def run(pieces: list[str]) -> tuple[str, str]:
            splitter = ThinkSplitter()
            outputs = [splitter.feed(piece) for piece in pieces] + [splitter.flush()]
            return "".join(a for a, _ in outputs), "".join(t for _, t in outputs)

        points = sorted({min(cut, len(value)) for cut in cuts})
        pieces = [value[i:j] for i, j in itertools.pairwise([0, *points, len(value)])]
        assert run(pieces) == run([value])

    @given(think_text)
    def test_nothing_is_lost_without_tags(self, value):
        """A reply that does not start with `<think>` (after white space) is all answer, exactly as sent."""
        assume(not value.lstrip().startswith("<think>"))
        splitter = ThinkSplitter()
        answer, thinking = splitter.feed(value)
        rest, more = splitter.flush()
        assert (answer + rest, thinking + more) == (value, "")


markdown_text = st.lists(
    st.sampled_from(["!", "[", "]", "(", ")", "<", ">", "img", " src=", '"u"', "x", " ", "\n", "b>", "/"]),
    max_size=20,
).map("".join)
RENDER = MarkdownIt("commonmark").render
# The tags CommonMark itself writes for this alphabet: anything else in the rendering came from raw HTML.
MARKDOWN_TAGS = {"p", "a", "br", "blockquote", "pre", "code", "hr", "ul", "ol", "li", "h1", "h2"}


class TestSafeMarkdown:
    @given(markdown_text)
    @example("!![x](x)")
    def test_no_image_and_no_raw_tag_is_rendered(self, value):
        """Outside code, whatever the Markdown, its rendering holds no image and no HTML tag of its own."""
        rendered = RENDER(safe_markdown(value))
        assert "<img" not in rendered
        assert {tag.lower() for tag in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", rendered)} <= MARKDOWN_TAGS

    @given(st.text(alphabet=st.characters(blacklist_characters="!<"), max_size=200))
    def test_text_without_bang_or_angle_is_untouched(self, value):
        """The fast path gives back the very text (but for a mermaid fence, which is always neutralised)."""
        assume("```mermaid" not in value)
        assert safe_markdown(value) is value


secrets_strategy = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.~@:/+ ", min_size=8, max_size=30)


class TestScrubber:
    @given(secrets_strategy, st.text(max_size=40), st.text(max_size=40))
    def test_a_known_secret_never_shows(self, secret, before, after):
        """A secret the app holds, anywhere in a text, exactly or upper-cased, is gone from what comes out."""
        scrubber = Scrubber([secret])
        for form in (secret, secret.upper()):
            assert form not in scrubber.scrub_known(before + form + after)


class TestRateLimiter:
    @given(st.integers(min_value=1, max_value=5), st.lists(st.floats(min_value=0, max_value=30), max_size=40))
    def test_never_more_than_the_limit_in_any_window(self, limit, gaps):
        """Whatever the timing of the calls, no 60 s window holds more accepted calls than the limit."""
        now = [0.0]
        limiter = RateLimiter(limit, clock=lambda: now[0])
        accepted: list[float] = []
        for gap in gaps:
            now[0] += gap
            try:
                limiter.check("k")
            except RateLimitedError as error:
                assert 0 < error.retry_after <= 60
            else:
                accepted.append(now[0])
        for i, start in enumerate(accepted):
            assert sum(1 for t in accepted[i:] if t - start < 60) <= limit
