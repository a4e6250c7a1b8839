"""Tests for services/assistant.py: every check of a turn, in order, before any backend is asked, then the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from services.access import MOCK_TOKEN, Access
from services.assistant import Assistant, Caller, TurnPlan
from services.chat import ChatOptions, Reply
from services.config import Settings
from services.conversation import Turn
from services.errors import RateLimitedError, ReplyTimeoutError, SignInRequiredError, ValidationError
from services.llm.base import BackendStatus, ChatRequest, Delta, GenerationParams, Usage
from services.ratelimit import ChatRateLimits

pytestmark = pytest.mark.unit

SETTINGS = Settings(system_prompt="sys")


class ScriptedBackend:
    """A `ChatBackend` in memory: records what it is asked, and streams the given pieces."""

    name = "openai"
    concurrency_limit: int | None = None

    def __init__(
        self,
        pieces: Sequence[str] = (),
        *,
        stream_interval: float = 0.0,
        models: tuple[str, ...] = ("m1", "m2"),
        forever: bool = False,
    ) -> None:
        self.pieces = pieces
        self.models = models
        self.forever = forever  # after the pieces, wait for ever instead of ending
        self.stream_interval = stream_interval
        self.calls: list[str] = []
        self.requests: list[ChatRequest] = []

    def status(self) -> BackendStatus:
        return BackendStatus("openai", "scripted", "")

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        self.calls.append("fit")
        self.requests.append(request)
        return request, 0

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return 7

    async def start(self) -> None:
        """Nothing to learn."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.calls.append("stream")
        for piece in self.pieces:
            await asyncio.sleep(0)
            yield Delta(text=piece)
        if self.forever:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.calls.append("aclose")


def assistant(
    *,
    owner: ScriptedBackend | None = None,
    router: ScriptedBackend | None = None,
    per_session: int | None = None,
    per_ip: int | None = None,
    anonymous: str = "owner",
) -> Assistant:
    """An assistant on scripted backends: the owner's with two models, and optionally a router for visitors."""
    access = Access(owner=owner or ScriptedBackend(), router=router, anonymous=anonymous)
    return Assistant(SETTINGS, access, ChatRateLimits(per_session=per_session, per_ip=per_ip))


CALLER = Caller(session="s1", address="1.2.3.4")


def planned(helper: Assistant, *args: Any, **kwargs: Any) -> TurnPlan:
    """`Assistant.plan`, awaited (it reads attachments off the event loop)."""
    return asyncio.run(helper.plan(*args, **kwargs))


class TestPlan:
    def test_a_turn_ready_to_stream(self):
        """A valid turn gives the user's message as kept, the request, the route and the parameters."""
        owner = ScriptedBackend()
        history = [Turn("user", "q1"), Turn("assistant", "a1", thinking="t")]
        plan = planned(
            assistant(owner=owner), CALLER, "q2\x00", history, ChatOptions(temperature=0.2, max_tokens=32, model="m2")
        )
        assert plan.user == Turn("user", "q2")
        assert plan.params == GenerationParams(temperature=0.2, max_tokens=32)
        assert plan.dropped == 0
        assert plan.route.backend is owner
        assert plan.route.payer == "owner"
        assert plan.request == ChatRequest(
            [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"},
            ],
            GenerationParams(temperature=0.2, max_tokens=32),
            model="m2",
            api_key=None,
        )
        assert owner.calls == ["fit"]

    def test_defaults(self):
        """Nothing but the message given: the configured prompt and parameters, and the first model."""
        plan = planned(assistant(), CALLER, "hi", [])
        assert plan.request.model == "m1"
        assert plan.params == GenerationParams(temperature=0.7, max_tokens=512)
        assert list(plan.request.messages) == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
        ]

    def test_the_visitor_token_lands_in_the_request(self):
        """A signed-in visitor's token travels in the request, to their router, with the router's models."""
        owner, router = ScriptedBackend(), ScriptedBackend(models=("r1", "r2"))
        caller = Caller(session="s1", address="1.2.3.4", token="hf_visitor")
        plan = planned(assistant(owner=owner, router=router), caller, "hi", [])
        assert plan.request.api_key == "hf_visitor"
        assert plan.request.model == "r1"
        assert plan.route.payer == "visitor"
        assert router.calls == ["fit"]
        assert owner.calls == []

    def test_the_mock_token_without_dev_token_needs_sign_in(self):
        """Gradio's stand-in token with no developer token is refused before any backend is asked."""
        owner, router = ScriptedBackend(), ScriptedBackend()
        caller = Caller(session="s1", address="1.2.3.4", token=MOCK_TOKEN)
        with pytest.raises(SignInRequiredError):
            planned(assistant(owner=owner, router=router), caller, "hi", [])
        assert owner.calls == router.calls == []

    def test_sign_in_required_for_anonymous(self):
        """ANONYMOUS_CHAT=signin refuses a visitor without a token, before any backend."""
        owner = ScriptedBackend()
        with pytest.raises(SignInRequiredError):
            planned(assistant(owner=owner, router=ScriptedBackend(), anonymous="signin"), CALLER, "hi", [])
        assert owner.calls == []


class TestOrder:
    def test_rate_limit_comes_before_validation(self):
        """A caller over the limit is refused as such, even with a message that would fail validation."""
        helper = assistant(per_session=1)
        planned(helper, CALLER, "hi", [])
        with pytest.raises(RateLimitedError):
            planned(helper, CALLER, "", [], ChatOptions(temperature=99))

    def test_an_invalid_message_still_counts(self):
        """Each call counts against the limit before anything else is looked at: bad calls are not free."""
        helper = assistant(per_ip=1)
        with pytest.raises(ValidationError, match="^message:"):
            planned(helper, CALLER, "", [])
        with pytest.raises(RateLimitedError, match="per address"):
            planned(helper, CALLER, "hi", [])

    def test_stateless_callers_are_limited_by_address(self):
        """A call with no session (the MCP tool) is bound by the address limit alone."""
        helper = assistant(per_session=1, per_ip=2)
        stateless = Caller(session=None, address="1.2.3.4")
        planned(helper, stateless, "hi", [])
        planned(helper, stateless, "hi", [])
        with pytest.raises(RateLimitedError, match="per address"):
            planned(helper, stateless, "hi", [])

    @pytest.mark.parametrize(
        ("arguments", "field"),
        [
            ({"message": ""}, "message"),  # empty
            ({"message": None}, "message"),  # not text
            ({"message": "x" * 32_001}, "message"),  # too long
            ({"message": "hi", "temperature": 3}, "temperature"),  # out of range
            ({"message": "hi", "max_tokens": 0}, "max_tokens"),  # out of range
            ({"message": "hi", "system_prompt": 5}, "system_prompt"),  # not text
            ({"message": "hi", "model": "gpt-5"}, "model"),  # not offered
            ({"message": "hi", "model": 1}, "model"),  # not text
        ],
    )
    def test_validation_errors_reach_no_backend(self, arguments, field):
        """Every invalid input is refused with the field's name, and no backend is asked anything."""
        owner = ScriptedBackend()
        message = arguments.pop("message")
        with pytest.raises(ValidationError) as info:
            planned(assistant(owner=owner), CALLER, message, [], ChatOptions(**arguments))
        assert info.value.field == field
        assert owner.calls == []

    def test_owner_models_are_not_offered_to_visitors(self):
        """A signed-in visitor may pick only the router's models, not the owner's."""
        owner, router = ScriptedBackend(), ScriptedBackend(models=("r1", "r2"))
        caller = Caller(session="s1", address="1.2.3.4", token="hf_visitor")
        with pytest.raises(ValidationError, match="^model: 'm1' is not offered here; choose one of: r1, r2.$"):
            planned(assistant(owner=owner, router=router), caller, "hi", [], ChatOptions(model="m1"))
        assert owner.calls == router.calls == []


class TestStream:
    def test_streams_from_the_route_backend(self):
        """The plan's reply comes from the backend that was chosen, ending with the whole text."""
        owner, router = ScriptedBackend(["no"]), ScriptedBackend(["Hel", "lo"])
        helper = assistant(owner=owner, router=router)
        plan = planned(helper, Caller(session="s1", address="1.2.3.4", token="hf_visitor"), "hi", [])

        async def run() -> list[Reply]:
            return [reply async for reply in helper.stream(plan)]

        done = Reply("Hello", done=True, usage=Usage(7, 2, estimated=True))
        assert asyncio.run(run()) == [Reply("Hel"), Reply("Hello"), done]
        assert router.calls == ["fit", "stream"]
        assert owner.calls == []

    def test_uses_the_backends_interval(self):
        """Updates are coalesced at the answering backend's own stream interval."""
        owner = ScriptedBackend(["a", "b", "c"], stream_interval=60.0)
        helper = assistant(owner=owner)
        plan = planned(helper, CALLER, "hi", [])

        async def run() -> list[Reply]:
            return [reply async for reply in helper.stream(plan)]

        assert asyncio.run(run()) == [Reply("a"), Reply("abc", done=True, usage=Usage(7, 1, estimated=True))]

    def test_replies_end_at_reply_timeout(self):
        """The stream is cut at the settings' REPLY_TIMEOUT, whichever backend answers."""
        owner = ScriptedBackend(["a"], forever=True, models=("m1",))
        settings = Settings(system_prompt="sys", reply_timeout=0.2)
        helper = Assistant(settings, Access(owner=owner), ChatRateLimits(per_session=None, per_ip=None))
        plan = planned(helper, CALLER, "hi", [])

        async def run() -> None:
            async for _ in helper.stream(plan):
                pass

        with pytest.raises(ReplyTimeoutError, match=r"longer than 0\.2 s"):
            asyncio.run(asyncio.wait_for(run(), 5))
