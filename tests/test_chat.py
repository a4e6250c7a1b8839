"""Tests for services/chat.py: history conversion, validation, trimming, and the coalesced reply stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from services.chat import history_to_messages, prepare_chat, stream_reply, trim_history, validate_params
from services.config import Settings
from services.errors import StreamInterruptedError, ValidationError
from services.llm.base import GenerationParams, Message

SETTINGS = Settings()


class ScriptedBackend:
    """A backend that yields given pieces, with an optional pause before each and a failure at the end."""

    name = "scripted"
    model = "scripted"

    def __init__(self, pieces: Sequence[str], *, pause: float = 0.0, fail: Exception | None = None) -> None:
        self.pieces = pieces
        self.pause = pause
        self.fail = fail
        self.closed = False
        self.seen: list[Message] = []

    def fit(self, messages: Sequence[Message], params: GenerationParams) -> tuple[list[Message], int]:
        return list(messages), 0

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        self.seen = list(messages)
        try:
            for piece in self.pieces:
                if self.pause:
                    await asyncio.sleep(self.pause)
                yield piece
            if self.fail:
                raise self.fail
        finally:
            self.closed = True


def collect(backend: ScriptedBackend, *, interval: float = 0.0, message: str = "hi") -> list[str]:
    async def run() -> list[str]:
        request = prepare_chat(backend, message, [], settings=SETTINGS)
        return [text async for text in stream_reply(backend, request, interval=interval)]

    return asyncio.run(run())


class TestHistory:
    def test_gradio6_content_blocks_become_text(self):
        """A gr.Chatbot history holds lists of typed parts; only text parts are kept."""
        history = [
            {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "file", "file": {"path": "x"}}]},
            {"role": "assistant", "content": "hi!", "metadata": None},
            {"role": "tool", "content": "ignored"},
            {"role": "user", "content": {"path": "image.png"}},
        ]
        assert history_to_messages(history) == [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi!"},
        ]

    def test_two_turns_from_one_side_are_joined(self):
        """A user message left without a reply (the backend failed) merges with the next one."""
        history = [{"role": "user", "content": "first"}, {"role": "user", "content": "again"}]
        assert history_to_messages(history) == [{"role": "user", "content": "first\n\nagain"}]

    def test_trim_drops_oldest_pairs(self):
        """The oldest question goes with its answer, never leaving an orphan answer first."""
        history: list[Message] = [
            {"role": "user", "content": "a" * 10},
            {"role": "assistant", "content": "b" * 10},
            {"role": "user", "content": "c" * 10},
            {"role": "assistant", "content": "d" * 10},
        ]
        kept, dropped = trim_history(history, max_chars=25)
        assert kept == history[2:]
        assert dropped == 2
        assert trim_history(history, max_chars=40) == (history, 0)


class TestValidation:
    VALID = (
        (None, None, None),  # every default
        ("", 0, 1),  # lowest bounds; an empty system prompt is allowed
        ("be short", 2, SETTINGS.max_tokens_cap),  # highest bounds
        ("x", 1, 64.0),  # gradio sliders send floats
    )
    INVALID = (
        (None, -0.1, None, "temperature"),  # below 0
        (None, 2.01, None, "temperature"),  # above 2
        (None, float("nan"), None, "temperature"),  # not finite
        (None, "hot", None, "temperature"),  # not a number
        (None, True, None, "temperature"),  # a bool is not a temperature
        (None, None, 0, "max_tokens"),  # below 1
        (None, None, SETTINGS.max_tokens_cap + 1, "max_tokens"),  # above the cap
        (None, None, 10.5, "max_tokens"),  # not whole
        ("x" * (SETTINGS.max_system_prompt_chars + 1), None, None, "system_prompt"),  # too long
        (42, None, None, "system_prompt"),  # not text
    )

    @pytest.mark.parametrize(("system_prompt", "temperature", "max_tokens"), VALID)
    def test_accepts(self, system_prompt, temperature, max_tokens):
        """Values inside the documented ranges pass."""
        validate_params(system_prompt, temperature, max_tokens, settings=SETTINGS)

    @pytest.mark.parametrize(("system_prompt", "temperature", "max_tokens", "field"), INVALID)
    def test_rejects_naming_the_field(self, system_prompt, temperature, max_tokens, field):
        """Out-of-range values raise ValidationError naming the field."""
        with pytest.raises(ValidationError, match=f"^{field}:"):
            validate_params(system_prompt, temperature, max_tokens, settings=SETTINGS)

    @pytest.mark.parametrize(
        "message",
        [
            "",  # empty
            "  \n ",  # only white space
            "\x00",  # only NUL, which is stripped
            "x" * (SETTINGS.max_message_chars + 1),  # too long
            None,  # not text
        ],
    )
    def test_rejects_bad_messages_before_the_backend(self, message):
        """A bad message never reaches the backend."""
        backend = ScriptedBackend(["never"])
        with pytest.raises(ValidationError, match="^message:"):
            prepare_chat(backend, message, [], settings=SETTINGS)
        assert backend.seen == []

    def test_builds_system_history_and_message(self):
        """The backend gets the system prompt, the past turns, then the new message."""
        history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
        request = prepare_chat(
            ScriptedBackend([]), "q2", history, system_prompt="sys", temperature=0, max_tokens=5, settings=SETTINGS
        )
        assert request.messages == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]
        assert request.params == GenerationParams(temperature=0.0, max_tokens=5)

    def test_a_message_left_unanswered_is_joined_with_the_next(self):
        """After a turn that failed (the page keeps the user's message, with no reply), the next message is joined
        to it, so user and assistant still alternate, as several chat templates require."""
        history = [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2, which failed"},
        ]
        request = prepare_chat(ScriptedBackend([]), "q3", history, system_prompt="", settings=SETTINGS)
        assert request.messages == [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2, which failed\n\nq3"},
        ]


class TestStreamReply:
    def test_yields_the_growing_text(self):
        """Without coalescing every piece is an update, each the text so far."""
        assert collect(ScriptedBackend(["a", "b", "c"])) == ["a", "ab", "abc"]

    def test_coalesces_fast_pieces_but_sends_first_and_last(self):
        """Pieces closer than the interval are merged; the first is immediate and the last is never lost."""
        updates = collect(ScriptedBackend(["a", "b", "c", "d"]), interval=10)
        assert updates == ["a", "abcd"]

    def test_slow_pieces_are_not_held(self):
        """Pieces further apart than the interval each go out."""
        assert collect(ScriptedBackend(["a", "b", "c"], pause=0.03), interval=0.01) == ["a", "ab", "abc"]

    def test_empty_reply_yields_once(self):
        """A backend that says nothing still ends the stream with a value."""
        assert collect(ScriptedBackend([])) == [""]

    def test_interruption_keeps_the_partial_text(self):
        """A cut stream shows what arrived, then raises with it."""
        backend = ScriptedBackend(["a", "b"], fail=StreamInterruptedError("cut"))

        updates: list[str] = []

        async def run() -> None:
            request = prepare_chat(backend, "hi", [], settings=SETTINGS)
            async for text in stream_reply(backend, request, interval=10):
                updates.append(text)

        with pytest.raises(StreamInterruptedError) as info:
            asyncio.run(run())
        error = info.value
        assert updates == ["a", "ab"]
        assert error.partial == "ab"

    def test_closing_early_closes_the_backend(self):
        """Stop (GeneratorExit) reaches the backend's own cleanup at once."""
        backend = ScriptedBackend(["a", "b", "c"])

        async def run() -> None:
            request = prepare_chat(backend, "hi", [], settings=SETTINGS)
            stream = stream_reply(backend, request)
            assert await anext(stream) == "a"
            await stream.aclose()

        asyncio.run(run())
        assert backend.closed
