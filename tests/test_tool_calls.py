"""Tool calls in-process: as the OpenAI backend reads them from a stream, as a reply gathers them, and as a
conversation keeps the steps (parsed strictly when a client sends them back)."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.chat import Reply, ToolCall, stream_reply
from services.conversation import Limits, ToolStep, Turn, parse_turns, turns_to_json
from services.errors import ConversationError, StreamInterruptedError
from services.llm.base import ChatRequest, GenerationParams
from services.llm.openai_backend import OpenAIBackend, OpenAIEndpoint, _read_chunk
from services.redact import Scrubber
from tests.support.fake_openai import MODEL, Behaviour, FakeOpenAI

pytestmark = pytest.mark.unit

LIMITS = Limits(max_messages=20, max_chars=100_000)
TOOLS = [{"type": "function", "function": {"name": "calc__add", "parameters": {"type": "object"}}}]


def chunk(delta: dict[str, object], finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class TestReadingToolCalls:
    def test_pieces_of_a_call(self):
        first = chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "add"}}]})
        rest = chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}, "tool_calls")
        assert _read_chunk(first)[4][0].name == "add"
        *_, finish, _, calls = _read_chunk(rest)
        assert (finish, calls[0].index, calls[0].arguments) == ("tool_calls", 0, '{"a": 1}')

    @pytest.mark.parametrize(
        "tool_calls",
        [
            "not a list",
            [1],
            [{"index": "0"}],  # an index that is not a number
            [{"index": -1}],
            [{"index": 0, "function": {"name": 5}}],  # a name that is not text
            [{"index": 0, "function": {"arguments": {"a": 1}}}],  # arguments that are not JSON text
            [{"index": i} for i in range(65)],  # more calls in one chunk than any model makes
        ],
    )
    def test_hostile_shapes_are_unreadable(self, tool_calls):
        """A shape the protocol lacks ends the reply as unreadable (a ValueError), never a crash."""
        with pytest.raises(ValueError, match="tool call|tool_calls"):
            _read_chunk(chunk({"tool_calls": tool_calls}))


def backend(server: FakeOpenAI) -> OpenAIBackend:
    endpoint = OpenAIEndpoint(server.base_url, "k", (MODEL,), "the key")
    return OpenAIBackend(endpoint, timeout=10, connect_timeout=5, max_retries=0, scrubber=Scrubber([]))


def replies(server: FakeOpenAI, request: ChatRequest) -> list[Reply]:
    async def run() -> list[Reply]:
        model = backend(server)
        try:
            return [reply async for reply in stream_reply(model, request)]
        finally:
            await model.aclose()

    return asyncio.run(run())


class TestAReplysCalls:
    def test_the_round_ends_with_its_calls_whole(self):
        """Streamed in pieces, each call arrives whole on the last reply, in order; the tools are sent."""
        calls = (("calc__add", '{"a": 2, "b": 3}'), ("calc__lookup", '{"city": "oslo"}'))
        with FakeOpenAI(Behaviour(tool_calls=calls)) as server:
            request = ChatRequest([{"role": "user", "content": "go"}], GenerationParams(0, 50), tools=TOOLS)
            last = replies(server, request)[-1]
            assert server.requests[0]["tools"] == TOOLS
        assert last.finish_reason == "tool_calls"
        assert last.calls == (
            ToolCall("call_0_0", "calc__add", '{"a": 2, "b": 3}'),
            ToolCall("call_0_1", "calc__lookup", '{"city": "oslo"}'),
        )

    def test_arguments_past_max_tokens_are_a_runaway(self):
        """A model that streams megabytes of arguments is stopped like one that ignores max_tokens."""
        with FakeOpenAI(Behaviour(tool_calls=(("calc__add", "x" * 20_000),))) as server:
            request = ChatRequest([{"role": "user", "content": "go"}], GenerationParams(0, 50), tools=TOOLS)
            with pytest.raises(StreamInterruptedError, match="past max_tokens"):
                replies(server, request)

    def test_without_tools_no_call(self):
        with FakeOpenAI(Behaviour(tool_calls=(("calc__add", "{}"),))) as server:
            last = replies(server, ChatRequest([{"role": "user", "content": "hi"}], GenerationParams(0, 50)))[-1]
            assert "tools" not in server.requests[0]
        assert (last.text, last.calls) == ("You said: hi", ())


class TestSteps:
    STEP = ToolStep("calc__add", '{"a": 2}', "done", "5", 0.12)

    def test_an_answers_steps_round_trip(self):
        turns = (Turn("user", "add"), Turn("assistant", "5", steps=(self.STEP, ToolStep("x", "{}", "failed", "no"))))
        assert parse_turns(turns_to_json(turns), limits=LIMITS) == turns

    @pytest.mark.parametrize(
        "steps",
        [
            "many",  # not a list
            [{"tool": "x", "status": "pending"}],  # a step still running is never saved
            [{"tool": "x", "result": "r" * 4001}],  # longer than a saved step keeps
            [{"tool": 5}],
            [{"tool": "x", "run": "rm -rf /"}],  # a field the app never writes
            [{"tool": "x", "seconds": -1}],
        ],
    )
    def test_what_the_app_never_saves_is_refused(self, steps):
        with pytest.raises(ConversationError):
            parse_turns([{"role": "assistant", "text": "a", "steps": steps}], limits=LIMITS)

    def test_a_user_message_carries_no_steps(self):
        with pytest.raises(ConversationError, match="a user message carries only its text and attachments"):
            parse_turns([{"role": "user", "text": "a", "steps": []}], limits=LIMITS)
