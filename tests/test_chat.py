"""Tests for services/chat.py: validation, the model choice, trimming, the request, the coalesced reply stream with
its thinking, and the turn kept at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import types
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from services import chat
from services.chat import (
    PreparedChat,
    Reply,
    choose_model,
    finished_turn,
    prepare_chat,
    stream_reply,
    trim_history,
    validate_message,
    validate_params,
)
from services.config import Settings
from services.conversation import Turn
from services.errors import BackendUnavailableError, StreamInterruptedError, ValidationError
from services.llm.base import BackendStatus, ChatRequest, Delta, GenerationParams, Message, estimate_prompt_tokens

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit

SETTINGS = Settings()
PARAMS = GenerationParams(temperature=0.5, max_tokens=64)


@dataclass(frozen=True)
class Wait:
    """A step of a script: the (fake) clock moves on by `seconds` before the next piece."""

    seconds: float


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedBackend:
    """A `ChatBackend` that streams given pieces (text, `Delta`s, `Wait`s on a clock), then fails if told to.

    `fit` leaves out the `drop` oldest messages after the system prompt, as a backend with a small context would.
    """

    name = "openai"
    stream_interval = 0.0
    concurrency_limit: int | None = None

    def __init__(
        self,
        pieces: Sequence[str | Delta | Wait] = (),
        *,
        fail: Exception | None = None,
        drop: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.pieces = pieces
        self.fail = fail
        self.drop = drop
        self.clock = clock
        self.fitted: list[ChatRequest] = []
        self.streamed: list[ChatRequest] = []
        self.closed = False
        self.aclosed = False

    def status(self) -> BackendStatus:
        return BackendStatus("openai", "scripted", "")

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        self.fitted.append(request)
        if not self.drop:
            return request, 0
        head = 1 if request.messages and request.messages[0]["role"] == "system" else 0
        messages = [*request.messages[:head], *request.messages[head + self.drop :]]
        return ChatRequest(messages, request.params, model=request.model, api_key=request.api_key), self.drop

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return estimate_prompt_tokens(request.messages)

    async def start(self) -> None:
        """Nothing to learn."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.streamed.append(request)
        try:
            for piece in self.pieces:
                if isinstance(piece, Wait):
                    assert self.clock is not None
                    self.clock.now += piece.seconds
                    continue
                await asyncio.sleep(0)
                yield Delta(text=piece) if isinstance(piece, str) else piece
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True

    async def aclose(self) -> None:
        self.aclosed = True


REQUEST = ChatRequest([{"role": "user", "content": "hi"}], PARAMS)


def replies(backend: ScriptedBackend, *, interval: float = 0.0) -> list[Reply]:
    """Every update `stream_reply` yields for one request to `backend`, without the last one's usage (see
    tests/test_chat_reply_limits.py)."""

    async def run() -> list[Reply]:
        return [
            dataclasses.replace(reply, usage=None) async for reply in stream_reply(backend, REQUEST, interval=interval)
        ]

    return asyncio.run(run())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A fake clock in place of the one `services.chat` times the stream with."""
    fake = Clock()
    monkeypatch.setattr(chat, "time", types.SimpleNamespace(monotonic=fake))
    return fake


def prepare(
    backend: ScriptedBackend,
    message: str,
    history: Sequence[Turn],
    *,
    system_prompt: str = "sys",
    model: str | None = None,
    api_key: str | None = None,
    settings: Settings = SETTINGS,
) -> PreparedChat:
    """`prepare_chat` with the usual inputs."""
    return prepare_chat(
        backend,
        Turn("user", message),
        history,
        system_prompt=system_prompt,
        params=PARAMS,
        model=model,
        api_key=api_key,
        settings=settings,
    )


class TestValidateParams:
    def test_none_takes_the_configured_defaults(self):
        """No system prompt, temperature or max_tokens given: the settings' defaults."""
        settings = Settings(system_prompt="Be brief.", default_temperature=0.3, default_max_tokens=99)
        assert validate_params(None, None, None, settings=settings) == (
            "Be brief.",
            GenerationParams(temperature=0.3, max_tokens=99),
        )

    VALID = (
        ("", 0, 1, ("", GenerationParams(0.0, 1))),  # lowest bounds; an empty system prompt is allowed
        ("be short", 2, SETTINGS.max_tokens_cap, ("be short", GenerationParams(2.0, SETTINGS.max_tokens_cap))),
        ("x", 1, 64.0, ("x", GenerationParams(1.0, 64))),  # Gradio sliders send floats
        ("a\x00b", 0.5, 8, ("ab", GenerationParams(0.5, 8))),  # NUL removed from the system prompt
        ("\ud800", 0.5, 8, ("\ufffd", GenerationParams(0.5, 8))),  # a lone surrogate replaced
    )

    @pytest.mark.parametrize(("system_prompt", "temperature", "max_tokens", "expected"), VALID)
    def test_accepts(self, system_prompt, temperature, max_tokens, expected):
        """Values inside the documented ranges pass, cleaned and typed."""
        result = validate_params(system_prompt, temperature, max_tokens, settings=SETTINGS)
        assert result == expected
        assert type(result[1].temperature) is float
        assert type(result[1].max_tokens) is int

    INVALID = (
        (None, -0.1, None, "temperature: must be between 0 and 2, got -0.1."),  # below 0
        (None, 2.01, None, "temperature: must be between 0 and 2, got 2.01."),  # above 2
        (None, float("nan"), None, "temperature: expected a finite number, got nan."),  # not finite
        (None, float("inf"), None, "temperature: expected a finite number, got inf."),  # not finite
        (None, "hot", None, "temperature: expected a number, got str."),  # not a number
        (None, True, None, "temperature: expected a number, got bool."),  # a bool is not a temperature
        (None, None, 0, "max_tokens: must be a whole number from 1 to 4096, got 0."),  # below 1
        (None, None, 4097, "max_tokens: must be a whole number from 1 to 4096, got 4097."),  # above the cap
        (None, None, 10.5, "max_tokens: must be a whole number from 1 to 4096, got 10.5."),  # not whole
        (None, None, "8", "max_tokens: expected a number, got str."),  # text, not a number
        (None, None, False, "max_tokens: expected a number, got bool."),  # a bool is not a count
        (
            "x" * 8001,
            None,
            None,
            "system_prompt: is 8,001 characters; at most 8,000 are allowed.",
        ),  # too long
        (42, None, None, "system_prompt: expected text, got int."),  # not text
    )

    @pytest.mark.parametrize(("system_prompt", "temperature", "max_tokens", "message"), INVALID)
    def test_rejects_naming_the_field(self, system_prompt, temperature, max_tokens, message):
        """Out-of-range values raise ValidationError naming the field and the allowed range."""
        with pytest.raises(ValidationError) as info:
            validate_params(system_prompt, temperature, max_tokens, settings=SETTINGS)
        assert str(info.value) == message
        assert info.value.field == message.split(":")[0]

    @pytest.mark.parametrize(
        ("temperature", "max_tokens", "field"),
        [
            pytest.param(10**400, None, "temperature", id="temperature"),  # JSON allows integers beyond any float
            pytest.param(None, 10**400, "max_tokens", id="max_tokens"),  # the same, as a token count
        ],
    )
    def test_huge_integers_are_validation_errors(self, temperature, max_tokens, field):
        """An integer too large for a float is refused like any out-of-range value, not with an OverflowError."""
        with pytest.raises(ValidationError) as info:
            validate_params(None, temperature, max_tokens, settings=SETTINGS)
        assert info.value.field == field


class TestValidateMessage:
    def test_returns_the_message_cleaned(self):
        """NUL is removed and a lone surrogate replaced; everything else is kept as sent."""
        assert validate_message("  hi\x00 there \ud800 ", settings=SETTINGS) == "  hi there \ufffd "

    def test_the_limit_itself_is_accepted(self):
        """A message of exactly MAX_MESSAGE_CHARS passes."""
        settings = Settings(max_message_chars=5)
        assert validate_message("x" * 5, settings=settings) == "xxxxx"

    @pytest.mark.parametrize(
        ("message", "error"),
        [
            ("", "message: is empty: type something to send."),  # empty
            ("  \n ", "message: is empty: type something to send."),  # only white space
            ("\x00", "message: is empty: type something to send."),  # only NUL, which is stripped
            ("x" * 32_001, "message: is 32,001 characters; at most 32,000 are allowed."),  # too long
            ("\x00" * 32_001, "message: is 32,001 characters; at most 32,000 are allowed."),  # length checked first
            (None, "message: expected text, got NoneType."),  # not text
            (["hi"], "message: expected text, got list."),  # not text
        ],
    )
    def test_rejects(self, message, error):
        """A bad message gets a ValidationError naming the field."""
        with pytest.raises(ValidationError) as info:
            validate_message(message, settings=SETTINGS)
        assert str(info.value) == error


class TestChooseModel:
    MODELS = ("m1", "m2")

    @pytest.mark.parametrize("model", [None, ""])
    def test_nothing_asked_takes_the_first(self, model):
        """No model, or an empty one, is the default: the first offered."""
        assert choose_model(model, self.MODELS) == "m1"

    def test_an_offered_model_is_taken(self):
        """A model from the list is passed on as asked."""
        assert choose_model("m2", self.MODELS) == "m2"

    def test_no_list_means_the_backend_default(self):
        """With nothing offered (the local model), only the default exists, as None."""
        assert choose_model(None, ()) is None
        assert choose_model("", ()) is None

    @pytest.mark.parametrize(
        ("model", "models", "error"),
        [
            ("m3", MODELS, "model: 'm3' is not offered here; choose one of: m1, m2."),  # not in the list
            ("M1", MODELS, "model: 'M1' is not offered here; choose one of: m1, m2."),  # ids are case-sensitive
            (
                "m1",
                (),
                "model: 'm1' is not offered here; choose one of: only the default (leave it empty).",
            ),  # nothing may be picked
            (3, MODELS, "model: expected text, got int."),  # not text
        ],
    )
    def test_refuses(self, model, models, error):
        """A model outside the offered list is refused, and the message lists what is offered."""
        with pytest.raises(ValidationError) as info:
            choose_model(model, models)
        assert str(info.value) == error

    def test_a_long_name_is_shortened_in_the_message(self):
        """The refused name is quoted to at most 100 characters."""
        with pytest.raises(ValidationError) as info:
            choose_model("x" * 5000, self.MODELS)
        assert f"'{'x' * 100}' is not offered" in str(info.value)
        assert "x" * 101 not in str(info.value)


class TestTrimHistory:
    HISTORY: tuple[Message, ...] = (
        {"role": "user", "content": "a" * 10},
        {"role": "assistant", "content": "b" * 10},
        {"role": "user", "content": "c" * 10},
        {"role": "assistant", "content": "d" * 10},
    )

    def test_fits_untouched(self):
        """A history within the budget is kept whole, the budget itself included."""
        assert trim_history(self.HISTORY, max_chars=40) == (list(self.HISTORY), 0)

    def test_drops_oldest_pairs(self):
        """The oldest question goes with its answer, never leaving an orphan answer first."""
        assert trim_history(self.HISTORY, max_chars=25) == (list(self.HISTORY[2:]), 2)
        assert trim_history(self.HISTORY, max_chars=39) == (list(self.HISTORY[2:]), 2)

    def test_may_drop_everything(self):
        """When not even the last exchange fits, nothing is kept."""
        assert trim_history(self.HISTORY, max_chars=5) == ([], 4)

    def test_empty_history(self):
        """Nothing to trim."""
        assert trim_history([], max_chars=1) == ([], 0)


class TestPrepareChat:
    def test_builds_system_history_and_message(self):
        """The backend gets the system prompt, the past turns, then the new message, with params and model."""
        backend = ScriptedBackend()
        history = [Turn("user", "q1"), Turn("assistant", "a1")]
        prepared = prepare(backend, "q2", history, model="m1", api_key="visitor-token")
        assert prepared.dropped == 0
        assert list(prepared.request.messages) == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]
        assert prepared.request.params == PARAMS
        assert prepared.request.model == "m1"
        assert prepared.request.api_key == "visitor-token"
        assert backend.fitted == [prepared.request]
        assert backend.streamed == []

    @pytest.mark.parametrize("system_prompt", ["", "  \n"])
    def test_blank_system_prompt_is_left_out(self, system_prompt):
        """No system message at all rather than an empty one."""
        prepared = prepare(ScriptedBackend(), "q", [], system_prompt=system_prompt)
        assert list(prepared.request.messages) == [{"role": "user", "content": "q"}]

    def test_thinking_and_notices_are_not_sent(self):
        """The model sees only the text of past replies."""
        history = [Turn("user", "q1"), Turn("assistant", "a1", thinking="secret plan", notice="cut")]
        prepared = prepare(ScriptedBackend(), "q2", history, system_prompt="")
        assert list(prepared.request.messages) == [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]

    def test_a_message_left_unanswered_is_joined_with_the_next(self):
        """After a failed turn (a user message with no reply) the next message joins it, so the roles alternate."""
        history = [Turn("user", "q1"), Turn("assistant", "a1"), Turn("user", "q2, which failed")]
        prepared = prepare(ScriptedBackend(), "q3", history, system_prompt="")
        assert list(prepared.request.messages) == [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2, which failed\n\nq3"},
        ]

    def test_old_turns_past_the_history_budget_are_left_out(self):
        """MAX_HISTORY_CHARS trims the oldest exchanges; the count says how many messages went."""
        settings = Settings(max_history_chars=25)
        history = [Turn("user", "a" * 10), Turn("assistant", "b" * 10), Turn("user", "c" * 10), Turn("assistant", "d")]
        prepared = prepare(ScriptedBackend(), "q", history, settings=settings)
        assert prepared.dropped == 2
        assert list(prepared.request.messages) == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "c" * 10},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "q"},
        ]

    def test_what_the_backend_leaves_out_is_counted_too(self):
        """Messages the backend's own fit drops add to those the budget dropped."""
        settings = Settings(max_history_chars=25)
        history = [Turn("user", "a" * 10), Turn("assistant", "b" * 10), Turn("user", "c" * 10), Turn("assistant", "d")]
        prepared = prepare(ScriptedBackend(drop=2), "q", history, settings=settings)
        assert prepared.dropped == 4
        assert list(prepared.request.messages) == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q"},
        ]


class TestReply:
    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            (Reply(thinking="hmm"), True),  # thinking, no answer yet
            (Reply(text="Hi", thinking="hmm"), False),  # the answer has started
            (Reply(thinking="hmm", done=True), False),  # the reply ended while thinking
            (Reply(), False),  # nothing yet
        ],
    )
    def test_thinking_now(self, reply, expected):
        """The model is thinking while thinking has come and neither the answer nor the end has."""
        assert reply.thinking_now is expected


class TestStreamReply:
    def test_yields_the_growing_text(self):
        """Without coalescing every piece is an update, each the text so far, then the end."""
        assert replies(ScriptedBackend(["a", "b", "c"])) == [
            Reply("a"),
            Reply("ab"),
            Reply("abc"),
            Reply("abc", done=True),
        ]

    def test_the_backend_gets_the_request(self):
        """The request is streamed as given, once."""
        backend = ScriptedBackend(["a"])
        replies(backend)
        assert backend.streamed == [REQUEST]

    def test_coalesces_fast_pieces_but_sends_first_and_last(self):
        """Pieces closer than the interval are merged; the first is immediate and the last is never lost."""
        assert replies(ScriptedBackend(["a", "b", "c", "d"]), interval=10) == [Reply("a"), Reply("abcd", done=True)]

    def test_an_update_goes_out_once_the_interval_has_passed(self, clock):
        """Coalescing goes by time since the last update sent, measured on the clock."""
        backend = ScriptedBackend(["a", Wait(0.25), "b", Wait(0.5), "c", Wait(0.25), "d", "e"], clock=clock)
        assert replies(backend, interval=1.0) == [Reply("a"), Reply("abcd"), Reply("abcde", done=True)]

    def test_empty_reply_yields_once(self):
        """A backend that says nothing still ends the stream with a value."""
        assert replies(ScriptedBackend([])) == [Reply(done=True)]

    def test_empty_pieces_are_not_updates(self):
        """A piece with no text and no thinking (a keep-alive, the end marker) yields nothing of its own."""
        assert replies(ScriptedBackend(["a", "", Delta(), "b"])) == [Reply("a"), Reply("ab"), Reply("ab", done=True)]

    def test_finish_reason_comes_with_the_end(self):
        """The server's finish reason, sent on the last piece, is on the final reply only."""
        backend = ScriptedBackend(["a", Delta(text="b", finish_reason="length")])
        assert replies(backend) == [Reply("a"), Reply("ab"), Reply("ab", finish_reason="length", done=True)]

    def test_finish_reason_on_a_piece_without_text(self):
        """A last piece that carries only the finish reason still sets it."""
        backend = ScriptedBackend(["a", Delta(finish_reason="stop")])
        assert replies(backend)[-1] == Reply("a", finish_reason="stop", done=True)

    def test_thinking_from_delta(self, clock):
        """Thinking the backend separates arrives as thinking, timed from its first piece to the answer's."""
        backend = ScriptedBackend(
            [Delta(thinking="Let me"), Wait(0.5), Delta(thinking=" see."), Wait(2.0), "Hi", Wait(1.0), "!"],
            clock=clock,
        )
        assert replies(backend) == [
            Reply("", "Let me"),
            Reply("", "Let me see."),
            Reply("Hi", "Let me see.", 2.5),
            Reply("Hi!", "Let me see.", 2.5),
            Reply("Hi!", "Let me see.", 2.5, done=True),
        ]

    def test_thinking_from_think_tags(self, clock):
        """Thinking inside `<think>` tags in the text is split from the answer, even with tags cut in pieces."""
        backend = ScriptedBackend(["<thi", "nk>Plan", Wait(1.5), " it.</th", "ink>\n\nAnswer"], clock=clock)
        assert replies(backend) == [
            Reply("", "Plan"),
            Reply("", "Plan it."),
            Reply("Answer", "Plan it.", 1.5),
            Reply("Answer", "Plan it.", 1.5, done=True),
        ]

    def test_answer_start_after_thinking_is_sent_at_once(self, clock):
        """The moment the answer starts is an update even within the interval, so the page can close the thinking."""
        backend = ScriptedBackend(
            [Delta(thinking="t"), Wait(0.25), Delta(thinking="u"), Wait(0.25), "A", "B"], clock=clock
        )
        assert replies(backend, interval=10) == [
            Reply("", "t"),
            Reply("A", "tu", 0.5),
            Reply("AB", "tu", 0.5, done=True),
        ]

    def test_thinking_only_is_timed_to_the_end(self, clock):
        """A reply that never got past thinking (cut at the token limit) is timed to its end."""
        backend = ScriptedBackend([Delta(thinking="hmm"), Wait(3.0), Delta(finish_reason="length")], clock=clock)
        assert replies(backend) == [Reply("", "hmm"), Reply("", "hmm", 3.0, "length", done=True)]

    def test_no_thinking_no_time(self):
        """A reply without thinking has no thinking time."""
        assert replies(ScriptedBackend(["a"]))[-1].thinking_seconds is None

    def test_unclosed_think_tag_is_all_thinking(self):
        """A reply cut inside `<think>` keeps it all as thinking, the held-back tag start included."""
        final = replies(ScriptedBackend(["<think>still going</th"]))[-1]
        assert (final.text, final.thinking, final.done) == ("", "still going</th", True)

    def test_a_held_back_tag_start_is_released_at_the_end(self):
        """A reply that is only the start of a tag is text once it ends."""
        assert replies(ScriptedBackend(["<thi"])) == [Reply("<thi", done=True)]

    def test_think_tag_later_in_the_answer_stays_text(self):
        """Only a tag at the very start opens thinking."""
        backend = ScriptedBackend(["Use ", "<think>", " tags"])
        assert replies(backend)[-1] == Reply("Use <think> tags", done=True)

    def test_interruption_keeps_the_partial_text(self):
        """A cut stream shows what arrived, then raises with it."""
        backend = ScriptedBackend(["a", "b"], fail=StreamInterruptedError("cut"))
        updates: list[Reply] = []

        async def run() -> None:
            async for reply in stream_reply(backend, REQUEST, interval=10):
                updates.append(reply)

        with pytest.raises(StreamInterruptedError) as info:
            asyncio.run(run())
        assert updates == [Reply("a"), Reply("ab")]
        assert info.value.partial == "ab"

    def test_interruption_after_everything_was_sent_adds_no_update(self):
        """When the last update already shows everything, the error follows it directly."""
        backend = ScriptedBackend(["a", "b"], fail=StreamInterruptedError("cut"))
        updates: list[Reply] = []

        async def run() -> None:
            async for reply in stream_reply(backend, REQUEST):
                updates.append(reply)

        with pytest.raises(StreamInterruptedError) as info:
            asyncio.run(run())
        assert updates == [Reply("a"), Reply("ab")]
        assert info.value.partial == "ab"

    def test_partial_is_the_answer_without_thinking(self):
        """What is kept of a cut reply is its answer text; the thinking is not part of it."""
        backend = ScriptedBackend([Delta(thinking="plan"), "ans"], fail=StreamInterruptedError("cut"))

        async def run() -> None:
            async for _ in stream_reply(backend, REQUEST, interval=10):
                pass

        with pytest.raises(StreamInterruptedError) as info:
            asyncio.run(run())
        assert info.value.partial == "ans"

    def test_other_backend_errors_pass_through(self):
        """A failure that is not an interruption is raised as it is, with no extra update."""
        backend = ScriptedBackend(["a", "b"], fail=BackendUnavailableError("down", status_code=503))
        updates: list[Reply] = []

        async def run() -> None:
            async for reply in stream_reply(backend, REQUEST, interval=10):
                updates.append(reply)

        with pytest.raises(BackendUnavailableError, match="^down$"):
            asyncio.run(run())
        assert updates == [Reply("a")]
        assert backend.closed

    def test_closing_early_closes_the_backend(self):
        """Stop (the consumer closing the stream) reaches the backend's own cleanup at once."""
        backend = ScriptedBackend(["a", "b", "c"])

        async def run() -> tuple[Reply, bool]:
            stream = stream_reply(backend, REQUEST)
            first = await anext(stream)
            before = backend.closed
            await stream.aclose()
            return first, before

        first, closed_before = asyncio.run(run())
        assert first == Reply("a")
        assert closed_before is False
        assert backend.closed is True
        assert backend.aclosed is False  # the stream is closed, not the whole backend


class TestFinishedTurn:
    def test_a_normal_reply(self):
        """A reply that ended normally is kept as it is, without a notice."""
        reply = Reply("Hi", "hmm", 1.5, "stop", done=True)
        assert finished_turn(reply, params=PARAMS) == Turn("assistant", "Hi", thinking="hmm", thinking_seconds=1.5)

    def test_cut_at_the_token_limit(self):
        """finish_reason 'length' with an answer says the reply was cut, and how to get more."""
        turn = finished_turn(Reply("Half an ans", finish_reason="length", done=True), params=PARAMS)
        assert turn == Turn(
            "assistant",
            "Half an ans",
            notice="The reply was cut at the token limit (64 tokens): raise Max tokens for more.",
        )

    @pytest.mark.parametrize("text", ["", " \n"])
    def test_all_tokens_spent_thinking(self, text):
        """finish_reason 'length' with thinking and no answer says the model never got to answer."""
        turn = finished_turn(Reply(text, "long thoughts", 4.0, "length", done=True), params=PARAMS)
        assert turn == Turn(
            "assistant",
            text,
            thinking="long thoughts",
            thinking_seconds=4.0,
            notice="The model spent all 64 tokens thinking and wrote no answer: raise Max tokens and try again.",
        )

    def test_cut_with_nothing_at_all(self):
        """finish_reason 'length' with neither answer nor thinking still names the token limit."""
        turn = finished_turn(Reply(finish_reason="length", done=True), params=PARAMS)
        assert turn.notice == "The reply was cut at the token limit (64 tokens): raise Max tokens for more."

    @pytest.mark.parametrize("text", ["", "  \n"])
    def test_empty_reply(self, text):
        """A reply that ended with no text says so."""
        turn = finished_turn(Reply(text, finish_reason="stop", done=True), params=PARAMS)
        assert turn == Turn("assistant", text, notice="The model sent an empty reply.")

    def test_unfinished_empty_reply_has_no_notice(self):
        """A reply stopped before anything arrived is not called empty: the caller gives its own notice."""
        assert finished_turn(Reply(), params=PARAMS) == Turn("assistant", "")

    def test_the_callers_notice_wins(self):
        """A notice given (Stopped, failed) replaces the one the finish reason would give."""
        turn = finished_turn(Reply("a", finish_reason="length", done=True), params=PARAMS, notice="Stopped.")
        assert turn == Turn("assistant", "a", notice="Stopped.")
