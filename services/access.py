"""Who answers a chat, on whose account: a signed-in visitor on their own token, everyone else as the owner says.

A signed-in visitor's chats go through Hugging Face's router with the visitor's own token, so the Space's owner
does not pay for the public's use. Visitors who have not signed in get what `ANONYMOUS_CHAT` says: the owner's
backend (under the rate limits), the local model, or a request to sign in. `Access.route` is the one place that
decides, for the page, `/chat` and the MCP tool alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from services.config import AnonymousChat
from services.errors import SignInRequiredError
from services.llm.base import ChatBackend

__all__ = ["MOCK_TOKEN", "Access", "Route"]

# Off Spaces, Gradio's stand-in login gives every session this placeholder instead of a real token.
MOCK_TOKEN = "mock-oauth-token-for-local-dev"

Payer = Literal["visitor", "owner", "nobody"]


@dataclass(frozen=True)
class Route:
    """The backend that answers, the models that may be picked (first: default), the key to send, who pays."""

    backend: ChatBackend
    models: tuple[str, ...]
    payer: Payer
    api_key: str | None = field(default=None, repr=False)


class Access:
    """The policy, fixed at start-up: the owner's backend, the router for signed-in visitors (None when sign-in
    is not offered), the local model when anonymous visitors get it, and the token that stands in for the mocked
    local sign-in. Each backend offers its own models (`ChatBackend.models`)."""

    def __init__(
        self,
        *,
        owner: ChatBackend,
        router: ChatBackend | None = None,
        anonymous: AnonymousChat = "owner",
        local: ChatBackend | None = None,
        dev_token: str | None = None,
    ) -> None:
        if anonymous == "local" and local is None:
            raise ValueError("anonymous visitors get the local model, but none was given")
        self.owner = owner
        self.router = router
        self.anonymous = anonymous
        self.local = local
        self._dev_token = dev_token

    @property
    def sign_in(self) -> bool:
        """Whether visitors can sign in (and API callers' `oauth_token` is honoured)."""
        return self.router is not None

    def backends(self) -> tuple[ChatBackend, ...]:
        """Every backend in use, once each (to close them at shutdown)."""
        found = [self.owner, self.router, self.local]
        return tuple({id(b): b for b in found if b is not None}.values())

    def route(self, visitor_token: str | None) -> Route:
        """Where this visitor's chat goes; `SignInRequiredError` when the owner asks anonymous visitors to sign in."""
        if self.router is not None and visitor_token:
            token = visitor_token
            if token == MOCK_TOKEN:
                if not self._dev_token:
                    raise SignInRequiredError(
                        "Sign-in here is Gradio's local stand-in, which has no real token: set HF_TOKEN to your own "
                        "Hugging Face token to chat as yourself on this machine."
                    )
                token = self._dev_token
            return Route(self.router, self.router.models, "visitor", api_key=token)
        if self.anonymous == "signin":
            raise SignInRequiredError("Sign in with Hugging Face to chat: your chats then run on your own account.")
        if self.anonymous == "local" and self.local is not None:
            return Route(self.local, self.local.models, "nobody")
        return Route(self.owner, self.owner.models, "owner")
