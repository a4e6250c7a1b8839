"""Answers chat turns for every caller (the page, `/chat`, the MCP tool) with one set of rules.

In order, before anything reaches a backend: the caller's rate limits (cheapest first, so an abusive caller costs
nothing more), the message and parameters, who answers and on whose account (`services.access`), the model asked
for, today's free budget (when the owner pays), the attached files read and checked (an image only for a model
that sees), and the budget's reservation for the whole request. Then the reply streams, its tokens are counted,
and the finished turn is what the caller keeps.

A model that calls tools (the MCP servers' tools, offered only to a model that can call them) gets their results
and writes on, round after round: each round counts against the caller's rate limits and today's budget, as a
message would, and at most MAX_TOOL_STEPS rounds run. The calls of one round run together; a tool that does not
answer within TOOL_TIMEOUT ends the reply with a notice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from services.access import Access, Route
from services.attachments import AttachmentReader, DocumentPart, ImagePart, document_chars
from services.attachments.held import HeldAttachments
from services.budget import DailyBudgets, Grant
from services.chat import (
    ChatOptions,
    Reply,
    ToolCall,
    choose_model,
    prepare_chat,
    stream_reply,
    validate_message,
    validate_params,
)
from services.config import Settings
from services.conversation import MAX_STEP_CHARS, Attached, StepStatus, ToolStep, Turn
from services.errors import BudgetExceededError, RateLimitedError, StreamInterruptedError, ValidationError
from services.llm.base import ChatRequest, GenerationParams, Message, ToolCallMessage, Usage
from services.mcp_tools import ToolRegistry, ToolResult
from services.ratelimit import ChatRateLimits

__all__ = ["Assistant", "Caller", "TurnPlan"]


_DEFAULTS = ChatOptions()


@dataclass(frozen=True)
class Caller:
    """Who asks: their session (None for stateless calls), their address, and a signed-in visitor's token."""

    session: str | None
    address: str
    token: str | None = None


@dataclass(frozen=True)
class TurnPlan:
    """A turn checked and ready to stream: the user's message as kept, the request (with the tools the model may
    call), what was left out, who asks, and the tokens reserved for it on the owner's account (`grant`, None when
    the owner does not pay)."""

    user: Turn
    request: ChatRequest
    route: Route
    params: GenerationParams
    dropped: int
    grant: Grant | None = None
    caller: Caller | None = None


class Assistant:
    def __init__(
        self,
        settings: Settings,
        access: Access,
        limits: ChatRateLimits,
        *,
        budgets: DailyBudgets | None = None,
        reader: AttachmentReader | None = None,
        held: HeldAttachments | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.access = access
        self.tools = tools
        self._limits = limits
        self.budgets = budgets or DailyBudgets(owner_daily=None, per_address_daily=None, sign_in_offered=False)
        self._reader = reader
        self._held = held or HeldAttachments(max_bytes=settings.attachment_memory)

    def admit(self, caller: Caller) -> None:
        """Count this turn against the caller's rate limits, or raise `RateLimitedError`: the first check of a
        turn, before anything the caller sent (a history to parse) costs work."""
        self._limits.check(session=caller.session, address=caller.address)

    async def plan(
        self,
        caller: Caller,
        message: object,
        history: Sequence[Turn] | Callable[[], Sequence[Turn]],
        options: ChatOptions = _DEFAULTS,
    ) -> TurnPlan:
        """Check everything about one turn; raises a `ServiceError` before any backend is asked.

        `history` may be given as a function (parsing a client's history), run only once the caller is admitted.
        """
        self.admit(caller)
        if callable(history):
            history = history()
        text = validate_message(message, settings=self.settings, attached=bool(options.files or options.attached))
        system, params = validate_params(
            options.system_prompt, options.temperature, options.max_tokens, settings=self.settings
        )
        route = self.access.route(caller.token)
        chosen = choose_model(options.model, route.models)
        owner_pays = route.payer == "owner" and self.budgets.enabled
        if owner_pays and self.budgets.remaining(caller.address).tokens == 0:
            self.budgets.reserve(caller.address, prompt_tokens=0, max_tokens=0)  # refuses, saying which and when
        await route.backend.start()  # what the models take: the start-up's listing may still be on its way
        attached, parts = await self._attachments(options, route, chosen)
        user = Turn("user", text, attachments=attached)
        prepared = prepare_chat(
            route.backend,
            user,
            history,
            system_prompt=system,
            params=params,
            model=chosen,
            api_key=route.api_key,
            settings=self.settings,
            held=self._held.get,
            attached_chars=document_chars([p for p in parts if isinstance(p, DocumentPart)]),
        )
        request = prepared.request
        if self.tools is not None and route.backend.calls_tools(chosen):
            request = dataclasses.replace(request, tools=self.tools.tools())
        request, grant = self._reserve(caller, route, request, params)
        return TurnPlan(user, request, route, request.params, prepared.dropped, grant, caller)

    def _reserve(
        self, caller: Caller, route: Route, request: ChatRequest, params: GenerationParams
    ) -> tuple[ChatRequest, Grant | None]:
        """Reserve a request's tokens on the owner's account, when the owner pays; `BudgetExceededError` when
        today's budget cannot take its prompt. Less left than max_tokens: the request asks for what is left."""
        if route.payer != "owner" or not self.budgets.enabled:
            return request, None
        prompt = route.backend.estimate_prompt_tokens(request)
        grant = self.budgets.reserve(caller.address, prompt_tokens=prompt, max_tokens=params.max_tokens)
        if grant.max_tokens < params.max_tokens:
            request = dataclasses.replace(request, params=dataclasses.replace(params, max_tokens=grant.max_tokens))
        return request, grant

    async def _attachments(
        self, options: ChatOptions, route: Route, model: str | None
    ) -> tuple[tuple[Attached, ...], list[ImagePart | DocumentPart]]:
        """The files read (off the event loop, each under ATTACHMENT_TIMEOUT), held for later turns, and named in
        the message, after those a retried message had; an image for a model that cannot see is refused, naming
        the models that can."""
        kept = [part for part in map(self._held.get, (a.key for a in options.attached)) if part is not None]
        if not options.files:
            parts: list[ImagePart | DocumentPart] = []
        elif self._reader is None or self.settings.max_attachments == 0:
            raise ValidationError("files", "this Space takes no attachments.")
        else:
            parts = await self._reader.read(options.files)
        if any(isinstance(part, ImagePart) for part in [*kept, *parts]) and not route.backend.sees_images(model):
            name = model or route.backend.status().model
            seeing = [m for m in route.models if route.backend.sees_images(m)]
            also = f"; the models here that can: {', '.join(seeing)}" if seeing else ""
            raise ValidationError("files", f"{name} cannot see images: send documents or text to it{also}.")
        attached = options.attached + tuple(
            Attached(
                part.name,
                "image" if isinstance(part, ImagePart) else part.kind,
                part.thumbnail if isinstance(part, ImagePart) else "",
                key=self._held.hold(part),
            )
            for part in parts
        )
        return attached, [*kept, *parts]

    async def stream(self, plan: TurnPlan) -> AsyncIterator[Reply]:
        """The reply so far, coalesced at the answering backend's interval (`services.chat.stream_reply`), cut at
        REPLY_TIMEOUT, its tokens counted once each round ends (against today's budget when the owner pays; a
        request the server refused before writing anything costs nothing); with tools, round after round, its
        `steps` the calls made so far. Only the last value is `done`."""
        request, grant = plan.request, plan.grant
        steps: tuple[ToolStep, ...] = ()
        before = ""  # what the model wrote in earlier rounds, before it called tools
        for round_number in itertools.count(1):
            reply = Reply()
            async for reply in self._round(plan, request, grant):
                shown = dataclasses.replace(reply, text=_joined(before, reply.text), steps=steps)
                if not reply.done:
                    yield shown
            if not reply.calls or not request.tools:
                yield dataclasses.replace(shown, calls=())
                return
            if round_number >= self.settings.max_tool_steps:
                yield dataclasses.replace(shown, done=False, calls=())
                raise StreamInterruptedError(
                    f"The model was still calling tools after {round_number} rounds (MAX_TOOL_STEPS): the reply "
                    "ends here.",
                    partial=shown.text,
                )
            before = _joined(before, reply.text)
            pending = tuple(ToolStep(call.name, _shown(call.arguments)) for call in reply.calls)
            yield Reply(before, reply.thinking, reply.thinking_seconds, steps=steps + pending)
            results = await self._call_tools(plan, reply.calls)
            steps += tuple(_step(call, result) for call, result in zip(reply.calls, results, strict=True))
            yield Reply(before, reply.thinking, reply.thinking_seconds, steps=steps)
            timed_out = next((result for result in results if result.outcome == "timeout"), None)
            if timed_out is not None:
                raise StreamInterruptedError(
                    f"The tool {timed_out.name} did not answer within {self.settings.tool_timeout:g} s "
                    "(TOOL_TIMEOUT): the reply ends here.",
                    partial=before,
                )
            request = _next_round(request, reply, results)
            try:
                if plan.caller is not None:
                    self.admit(plan.caller)
                    request, grant = self._reserve(plan.caller, plan.route, request, plan.params)
            except (RateLimitedError, BudgetExceededError) as error:
                # Between rounds: the tools' results stay shown, and the reply ends with why.
                raise StreamInterruptedError(str(error), partial=before) from error

    async def _round(self, plan: TurnPlan, request: ChatRequest, grant: Grant | None) -> AsyncIterator[Reply]:
        """One request to the model, its usage settled when it ends."""
        backend = plan.route.backend
        settled = False

        def counted(usage: Usage) -> None:
            nonlocal settled
            settled = True
            if grant is not None:
                self.budgets.settle(grant, used=usage.total_tokens)
            else:
                self.budgets.note_paid(plan.route.payer, usage.total_tokens)

        replies = stream_reply(
            backend,
            request,
            interval=backend.stream_interval,
            timeout=self.settings.reply_timeout,
            on_usage=counted,
        )
        try:
            async with aclosing(replies):  # type: ignore[type-var]
                async for reply in replies:
                    yield reply
        finally:
            if not settled and grant is not None:
                self.budgets.settle(grant, used=0)

    async def _call_tools(self, plan: TurnPlan, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """The calls of one round, run together; the caller's token is masked in what comes back."""
        assert self.tools is not None
        secrets = (plan.request.api_key,) if plan.request.api_key else ()
        return list(await asyncio.gather(*(self.tools.call(c.name, c.arguments, secrets=secrets) for c in calls)))

    def attachment(self, attached: Attached) -> ImagePart | DocumentPart | None:
        """What the model still has of an attachment (None once let go, or after a reload)."""
        return self._held.get(attached.key)


def _joined(before: str, text: str) -> str:
    return f"{before}\n\n{text}" if before and text else before or text


def _shown(text: str) -> str:
    """A tool's arguments or result as a step shows and a saved chat keeps them: at most MAX_STEP_CHARS."""
    return text if len(text) <= MAX_STEP_CHARS else text[: MAX_STEP_CHARS - 1] + "…"


def _step(call: ToolCall, result: ToolResult) -> ToolStep:
    status: StepStatus = "failed" if result.failed else "done"
    return ToolStep(call.name, _shown(call.arguments), status, _shown(result.text), round(result.duration, 2))


def _next_round(request: ChatRequest, reply: Reply, results: Sequence[ToolResult]) -> ChatRequest:
    """The request again, with the model's calls and their results after it, as the protocol carries them."""
    calls: list[ToolCallMessage] = [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in reply.calls
    ]
    asked: Message = {"role": "assistant", "content": reply.text, "tool_calls": calls}
    answered: list[Message] = [
        {"role": "tool", "tool_call_id": call.id, "content": result.text}
        for call, result in zip(reply.calls, results, strict=True)
    ]
    return dataclasses.replace(request, messages=[*request.messages, asked, *answered])
