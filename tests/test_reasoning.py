"""Tests for services/reasoning.py: thinking in `<think>` tags split from the answer as the pieces stream in."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from services.reasoning import ThinkSplitter

pytestmark = pytest.mark.unit


def split(pieces: Iterable[str]) -> tuple[str, str]:
    """The whole (answer, thinking) of a reply fed in these pieces, flush included."""
    splitter = ThinkSplitter()
    answer = thinking = ""
    for piece in pieces:
        more_answer, more_thinking = splitter.feed(piece)
        answer, thinking = answer + more_answer, thinking + more_thinking
    more_answer, more_thinking = splitter.flush()
    return answer + more_answer, thinking + more_thinking


def every_split(text: str) -> list[list[str]]:
    """`text` whole, and cut in two and in three pieces at every pair of positions."""
    cuts = [[text]]
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            cuts.append([text[:i], text[i:j], text[j:]])
    return cuts


class TestSplit:
    CASES = (
        ("<think>plan</think>Answer", ("Answer", "plan")),  # the usual shape
        ("<think>plan</think>\n\nAnswer", ("Answer", "plan")),  # the newlines after the tag are not the answer's
        ("<think>plan</think>\n\nAnswer\n\nMore", ("Answer\n\nMore", "plan")),  # later newlines are kept
        ("  \n<think>plan</think>Answer", ("Answer", "plan")),  # white space before the tag
        ("<think></think>Answer", ("Answer", "")),  # empty thinking
        ("<think>a < b and </thin k></think>ok", ("ok", "a < b and </thin k>")),  # tag-like text inside
        ("Plain answer", ("Plain answer", "")),  # no thinking at all
        ("Use <think> tags", ("Use <think> tags", "")),  # a tag later on is text
        ("x<think>y</think>z", ("x<think>y</think>z", "")),  # not at the very start
        ("<thinking>x", ("<thinking>x", "")),  # another tag that starts alike
        ("<b>bold</b>", ("<b>bold</b>", "")),  # other markup
        ("Answer</think>", ("Answer</think>", "")),  # a closing tag with no opening one
        ("<think>never closed", ("", "never closed")),  # cut while thinking
        ("<think>cut at </thi", ("", "cut at </thi")),  # cut inside the closing tag
        ("<thi", ("<thi", "")),  # only the start of a tag
        ("  ", ("  ", "")),  # only white space
        ("", ("", "")),  # nothing
    )

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_whole(self, text, expected):
        """A reply in one piece is split into answer and thinking."""
        assert split([text]) == expected

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_at_every_position(self, text, expected):
        """However the reply is cut into pieces, tags included, the split is the same as in one piece."""
        for pieces in every_split(text):
            assert split(pieces) == expected, pieces

    def test_one_character_at_a_time(self):
        """A server that streams a character per piece gives the same split."""
        assert split("<think>plan</think>Answer") == ("Answer", "plan")

    def test_tokens_as_reasoning_models_stream_them(self):
        """`</think>` and the blank line after it as separate pieces, as most tokenizers send them."""
        assert split(["<think>", "plan", "</think>", "\n\n", "Answer"]) == ("Answer", "plan")


class TestRelease:
    def test_thinking_is_released_as_it_arrives(self):
        """Thinking text goes out at once, holding back only what may start the closing tag."""
        splitter = ThinkSplitter()
        assert splitter.feed("<think>ab") == ("", "ab")
        assert splitter.feed("c</") == ("", "c")
        assert splitter.feed("x") == ("", "</x")
        assert splitter.feed("</think>ans") == ("ans", "")

    def test_answer_passes_straight_through(self):
        """Once the answer has started, every piece is answer, even one that holds a tag."""
        splitter = ThinkSplitter()
        assert splitter.feed("Hi") == ("Hi", "")
        assert splitter.feed("<think>") == ("<think>", "")
        assert splitter.flush() == ("", "")

    def test_a_possible_tag_start_is_held(self):
        """'<thi' at the start may become `<think>`: nothing is released until it is decided."""
        splitter = ThinkSplitter()
        assert splitter.feed(" <thi") == ("", "")
        assert splitter.feed("s is") == (" <this is", "")

    def test_leading_white_space_is_held(self):
        """White space alone at the start waits to see whether a tag follows."""
        splitter = ThinkSplitter()
        assert splitter.feed(" \n") == ("", "")
        assert splitter.feed("<think>x") == ("", "x")

    def test_flush_gives_what_was_held_on_its_side(self):
        """At the end, a held tag start is thinking while thinking and answer otherwise, released once."""
        thinking = ThinkSplitter()
        thinking.feed("<think>abc</thi")
        assert thinking.flush() == ("", "</thi")
        assert thinking.flush() == ("", "")
        start = ThinkSplitter()
        start.feed("<thin")
        assert start.flush() == ("<thin", "")
