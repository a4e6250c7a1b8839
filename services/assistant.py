"""Answers chat turns for every caller (the page, `/chat`, the MCP tool) with one set of rules.

In order, before anything reaches a backend: the caller's rate limits (cheapest first, so an abusive caller costs
nothing more), the message and parameters, who answers and on whose account (`services.access`), the model asked
for. Then the reply streams, and the finished turn is what the caller keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from services.access import Access, Route
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
from services.conversation import Turn
from services.llm.base import ChatRequest, GenerationParams
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
    """A turn checked and ready to stream: the user's message as kept, the request, and what was left out."""

    user: Turn
    request: ChatRequest
    route: Route
    params: GenerationParams
    dropped: int


class Assistant:
    def __init__(self, settings: Settings, access: Access, limits: ChatRateLimits) -> None:
        self.settings = settings
        self.access = access
        self._limits = limits

    def admit(self, caller: Caller) -> None:
        """Count this turn against the caller's rate limits, or raise `RateLimitedError`: the first check of a
        turn, before anything the caller sent (a history to parse) costs work."""
        self._limits.check(session=caller.session, address=caller.address)

    def plan(
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
        text = validate_message(message, settings=self.settings)
        system, params = validate_params(
            options.system_prompt, options.temperature, options.max_tokens, settings=self.settings
        )
        route = self.access.route(caller.token)
        chosen = choose_model(options.model, route.models)
        prepared = prepare_chat(
            route.backend,
            text,
            history,
            system_prompt=system,
            params=params,
            model=chosen,
            api_key=route.api_key,
            settings=self.settings,
        )
        return TurnPlan(Turn("user", text), prepared.request, route, params, prepared.dropped)

    def stream(self, plan: TurnPlan) -> AsyncIterator[Reply]:
        """The reply so far, coalesced at the answering backend's interval (`services.chat.stream_reply`), and
        cut at REPLY_TIMEOUT."""
        backend = plan.route.backend
        return stream_reply(
            backend, plan.request, interval=backend.stream_interval, timeout=self.settings.reply_timeout
        )
