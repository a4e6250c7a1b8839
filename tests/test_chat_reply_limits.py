"""Tests for services/chat.py `stream_reply`: every reply ends (its deadline, a server that ignores max_tokens) and
every reply's tokens are counted, against the fake OpenAI server over loopback and the tiny local model."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.chat import Reply, stream_reply
from services.config import Settings
from services.errors import BackendAuthError, ReplyOverrunError, ReplyTimeoutError, StreamInterruptedError
from services.llm.base import (
    BackendStatus,
    ChatBackend,
    ChatRequest,
    Delta,
    GenerationParams,
    Message,
    Usage,
    estimate_prompt_tokens,
)
from services.llm.local_backend import LocalBackend
from services.llm.openai_backend import OpenAIBackend, OpenAIEndpoint
from services.redact import Scrubber
from tests.support.fake_openai import FakeOpenAI, Fault, prompt_tokens
from tests.support.tiny_model import build_tiny_model, live_threads, wait_for_threads

pytestmark = pytest.mark.unit

MESSAGES: list[Message] = [{"role": "user", "content": "hello there"}]
REQUEST = ChatRequest(MESSAGES, GenerationParams(temperature=0, max_tokens=100), model="m")
ECHO = "You said: hello there"


def backend_for(fake: FakeOpenAI, *, timeout: float = 10.0) -> OpenAIBackend:
    return OpenAIBackend(
        OpenAIEndpoint(fake.base_url, "not-needed", ("m",), "the key"),
        timeout=timeout,
        connect_timeout=timeout,
        max_retries=0,
        scrubber=Scrubber(()),
    )


@dataclass
class Outcome:
    """What one reply came to: its updates, the error it ended with, what `on_usage` was told, and when."""

    replies: list[Reply] = field(default_factory=list)
    error: BaseException | None = None
    usages: list[Usage] = field(default_factory=list)
    seconds: float = 0.0
    ended_at: float = 0.0


def run(
    backend: ChatBackend, request: ChatRequest = REQUEST, *, timeout: float | None = None, within: float = 10.0
) -> Outcome:
    """Stream one reply through `stream_reply`; a reply still going after `within` seconds fails the test."""
    outcome = Outcome()

    async def go() -> None:
        started = time.monotonic()
        try:
            async for reply in stream_reply(backend, request, timeout=timeout, on_usage=outcome.usages.append):
                outcome.replies.append(reply)
        except StreamInterruptedError as error:
            outcome.error = error
        outcome.ended_at = time.monotonic()
        outcome.seconds = outcome.ended_at - started

    async def main() -> None:
        try:
            await asyncio.wait_for(go(), within)
        finally:
            await backend.aclose()

    asyncio.run(main())
    return outcome


class Silent:
    """A backend that sends one piece and then waits for ever; `closed` once its stream was closed."""

    name = "openai"
    stream_interval = 0.0
    concurrency_limit: int | None = None

    def __init__(self) -> None:
        self.closed = False

    def status(self) -> BackendStatus:
        return BackendStatus("openai", "silent", "")

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        return request, 0

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return estimate_prompt_tokens(request.messages)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        try:
            yield Delta("Hmm")
            await asyncio.Event().wait()
        finally:
            self.closed = True

    async def aclose(self) -> None:
        """Nothing to close."""


def cut_off(seconds: float) -> str:
    return (
        f"The reply was cut off: it took longer than {seconds:g} s, the longest a reply may take here "
        "(REPLY_TIMEOUT). Ask for a shorter reply (lower Max tokens), or raise REPLY_TIMEOUT."
    )


class TestDeadline:
    def test_a_reply_that_streams_for_ever_ends_at_the_deadline(self, fake: FakeOpenAI):
        """A server that keeps writing (and ignores max_tokens) is cut at the deadline, what arrived is kept, and the
        connection to it is closed at once."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.endless, fake.behaviour.delay = True, True, 0.02
        outcome = run(backend_for(fake), timeout=0.6)
        assert type(outcome.error) is ReplyTimeoutError
        assert str(outcome.error) == cut_off(0.6)
        assert 0.6 <= outcome.seconds < 1.5
        assert outcome.error.partial == outcome.replies[-1].text
        assert outcome.error.partial.startswith(ECHO)
        left = fake.wait_for_disconnect(1)
        assert left is not None
        assert left - outcome.ended_at < 1

    def test_a_server_sending_only_comments_ends_at_the_deadline(self, fake: FakeOpenAI):
        """The deadline cuts a wait for the server too: keep-alive comments under a long LLM_TIMEOUT."""
        fake.behaviour.faults.append(Fault(stall_after=2))
        outcome = run(backend_for(fake, timeout=30), timeout=0.5)
        assert type(outcome.error) is ReplyTimeoutError
        assert [reply.text for reply in outcome.replies] == ["You", "You said:"]
        assert 0.5 <= outcome.seconds < 1.5
        assert fake.wait_for_disconnect(1) is not None

    def test_any_backend(self):
        """The deadline is the shared path's: a backend that never ends is closed at it."""
        backend = Silent()
        outcome = run(backend, timeout=0.3)
        assert type(outcome.error) is ReplyTimeoutError
        assert outcome.error.partial == "Hmm"
        assert backend.closed

    def test_a_reply_within_the_deadline_leaves_nothing_behind(self, fake: FakeOpenAI):
        """A reply that ends in time ends as usual, and the deadline's timer goes with it: the task that read the
        reply is not cancelled later."""

        async def go() -> tuple[list[Reply], bool]:
            backend = backend_for(fake)
            try:
                replies = [reply async for reply in stream_reply(backend, REQUEST, timeout=0.6)]
                await asyncio.sleep(0.7)  # cancelled here if the timer had outlived the reply
                return replies, asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
            finally:
                await backend.aclose()

        replies, clean = asyncio.run(go())
        assert replies[-1].text == ECHO
        assert replies[-1].done
        assert clean

    def test_the_local_model_ends_at_the_deadline(self, tmp_path: Path):
        """The local model obeys max_new_tokens, but a long reply on a slow machine is still cut at the deadline,
        and its generation stops."""
        slow = build_tiny_model(tmp_path, hidden_size=256, num_layers=4, context=4096)
        backend = LocalBackend.from_settings(Settings(llm_backend="local", local_model=str(slow)))
        request = ChatRequest(MESSAGES, GenerationParams(temperature=0, max_tokens=4000))
        outcome = run(backend, request, timeout=1.0)
        assert type(outcome.error) is ReplyTimeoutError
        assert 1.0 <= outcome.seconds < 3
        wait_for_threads(time.monotonic() + 5)
        assert live_threads() == []
        assert len(outcome.usages) == 1
        assert outcome.usages[0].estimated


OVERRUN = (
    "The reply was stopped: the model server went on writing well past max_tokens (16 tokens), a limit it should "
    "keep to. Raise Max tokens for a longer reply; if this happens again, the server ignores max_tokens."
)
SHORT = ChatRequest(MESSAGES, GenerationParams(temperature=0, max_tokens=16), model="m")


class TestOverrun:
    def test_a_server_that_ignores_max_tokens_is_stopped(self, fake: FakeOpenAI):
        """Characters of answer and thinking count: past 8 a token and 1,000 more, the reply stops with what arrived,
        says why, and the connection closes."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.endless = True, True
        fake.behaviour.thinking, fake.behaviour.delay = "let me think", 0.0
        outcome = run(backend_for(fake), SHORT)
        assert type(outcome.error) is ReplyOverrunError
        assert str(outcome.error) == OVERRUN
        last = outcome.replies[-1]
        assert 16 * 8 + 1000 - 10 < len(last.text) + len(last.thinking) <= 16 * 8 + 1000
        assert fake.wait_for_disconnect(1) is not None
        assert outcome.usages[0].estimated

    def test_the_servers_own_count_decides_when_it_streams_one(self, fake: FakeOpenAI):
        """A server that counts its tokens as it goes (vLLM's continuous usage) is stopped by its own count, long
        before the characters would stop it."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.endless = True, True
        fake.behaviour.usage_every_chunk, fake.behaviour.delay = True, 0.0
        outcome = run(backend_for(fake), SHORT)
        assert type(outcome.error) is ReplyOverrunError
        assert outcome.usages == [Usage(prompt_tokens(fake.requests[-1]), 16 + 16 + 1)]
        assert fake.wait_for_disconnect(1) is not None

    def test_a_little_over_is_no_overrun(self, fake: FakeOpenAI):
        """A server that writes a few tokens more than asked, and counts them at the end, ends normally: the count
        that comes with the end is accounting, not a runaway."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.tokens = True, 40
        outcome = run(backend_for(fake), SHORT)
        assert outcome.error is None
        assert outcome.replies[-1].done
        assert outcome.replies[-1].usage == Usage(prompt_tokens(fake.requests[-1]), 40)


class TestUsage:
    def test_the_servers_count(self, fake: FakeOpenAI):
        """The last reply carries the server's usage, and `on_usage` is told it once."""
        outcome = run(backend_for(fake))
        usage = Usage(prompt_tokens(fake.requests[-1]), 4)
        assert outcome.replies[-1] == Reply(ECHO, finish_reason="stop", done=True, usage=usage)
        assert outcome.usages == [usage]

    def test_estimated_when_the_server_sends_none(self, fake: FakeOpenAI):
        """No usage from the server: 4 characters a token, rounded up, for the prompt (and 4 a message, 3 for the
        reply's cue) and for the reply, thinking included; marked as estimated."""
        fake.behaviour.usage = False
        fake.behaviour.thinking = "so"
        outcome = run(backend_for(fake))
        expected = Usage(math.ceil(len("hello there") / 4) + 4 + 3, math.ceil(len("so" + ECHO) / 4), estimated=True)
        assert outcome.replies[-1].usage == expected
        assert outcome.usages == [expected]

    def test_a_cut_reply_is_counted(self, fake: FakeOpenAI):
        """A reply cut mid-way cost what it wrote: estimated, since the server's count never came."""
        fake.behaviour.faults.append(Fault(cut_after=2))
        outcome = run(backend_for(fake))
        assert type(outcome.error) is StreamInterruptedError
        assert outcome.usages == [Usage(estimate_prompt_tokens(MESSAGES), math.ceil(len("You said:") / 4), True)]

    def test_a_caller_who_leaves_is_counted(self, fake: FakeOpenAI):
        """A consumer that stops reading (Stop, a closed tab) still gets the reply's cost to its `on_usage`."""
        fake.behaviour.tokens = 200
        usages: list[Usage] = []

        async def go() -> None:
            backend = backend_for(fake)
            stream = stream_reply(backend, REQUEST, on_usage=usages.append)
            await anext(stream)
            await stream.aclose()  # type: ignore[attr-defined]
            await backend.aclose()

        asyncio.run(go())
        assert len(usages) == 1
        assert usages[0].estimated
        assert usages[0].completion_tokens >= 1

    def test_a_refused_request_costs_nothing(self, fake: FakeOpenAI):
        """A request the server refused before writing (here, rejected credentials) is not counted."""
        fake.behaviour.faults.append(Fault(status=401))
        usages: list[Usage] = []

        async def go() -> None:
            backend = backend_for(fake)
            try:
                async for _ in stream_reply(backend, REQUEST, on_usage=usages.append):
                    pass
            finally:
                await backend.aclose()

        with pytest.raises(BackendAuthError):
            asyncio.run(go())
        assert usages == []
