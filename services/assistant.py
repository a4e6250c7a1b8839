"""Answers chat turns for every caller (the page, `/chat`, the MCP tool) with one set of rules.

In order, before anything reaches a backend: the caller's rate limits (cheapest first, so an abusive caller costs
nothing more), the message and parameters, who answers and on whose account (`services.access`), the model asked
for, today's free budget (when the owner pays), the attached files read and checked (an image only for a model
that sees), and the budget's reservation for the whole request. Then the reply streams, its tokens are counted,
and the finished turn is what the caller keeps.
"""

from __future__ import annotations

import dataclasses
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
    choose_model,
    prepare_chat,
    stream_reply,
    validate_message,
    validate_params,
)
from services.config import Settings
from services.conversation import Attached, Turn
from services.errors import ValidationError
from services.llm.base import ChatRequest, GenerationParams, Usage
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
    """A turn checked and ready to stream: the user's message as kept, the request, what was left out, and the
    tokens reserved for it on the owner's account (`grant`, None when the owner does not pay)."""

    user: Turn
    request: ChatRequest
    route: Route
    params: GenerationParams
    dropped: int
    grant: Grant | None = None


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
    ) -> None:
        self.settings = settings
        self.access = access
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
        request, grant = prepared.request, None
        if owner_pays:
            prompt = route.backend.estimate_prompt_tokens(request)
            grant = self.budgets.reserve(caller.address, prompt_tokens=prompt, max_tokens=params.max_tokens)
            if grant.max_tokens < params.max_tokens:
                # Less is left of today's budget than max_tokens: the reply may be cut there.
                request = dataclasses.replace(request, params=dataclasses.replace(params, max_tokens=grant.max_tokens))
        return TurnPlan(user, request, route, request.params, prepared.dropped, grant)

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
        REPLY_TIMEOUT, its tokens counted once it ends (against today's budget when the owner pays; a request the
        server refused before writing anything costs nothing)."""
        backend = plan.route.backend
        settled = False

        def counted(usage: Usage) -> None:
            nonlocal settled
            settled = True
            if plan.grant is not None:
                self.budgets.settle(plan.grant, used=usage.total_tokens)
            else:
                self.budgets.note_paid(plan.route.payer, usage.total_tokens)

        replies = stream_reply(
            backend,
            plan.request,
            interval=backend.stream_interval,
            timeout=self.settings.reply_timeout,
            on_usage=counted,
        )
        try:
            async with aclosing(replies):  # type: ignore[type-var]
                async for reply in replies:
                    yield reply
        finally:
            if not settled and plan.grant is not None:
                self.budgets.settle(plan.grant, used=0)

    def attachment(self, attached: Attached) -> ImagePart | DocumentPart | None:
        """What the model still has of an attachment (None once let go, or after a reload)."""
        return self._held.get(attached.key)
