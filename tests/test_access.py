"""Tests for services/access.py: who answers a chat, with which models, and on whose account."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.access import MOCK_TOKEN, Access, Route
from services.errors import SignInRequiredError
from services.llm.base import BackendStatus, ChatRequest, Delta

pytestmark = pytest.mark.unit


class NamedBackend:
    """A `ChatBackend` that is never asked to answer here: only which one is chosen matters."""

    stream_interval = 0.0
    concurrency_limit: int | None = None

    def __init__(self, label: str, models: tuple[str, ...] = ()) -> None:
        self.name = "openai"
        self.label = label
        self.models = models

    def status(self) -> BackendStatus:
        return BackendStatus("openai", self.label, "")

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        return request, 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        yield Delta(text=self.label)

    async def aclose(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return f"NamedBackend({self.label!r})"


OWNER_MODELS = ("gpt-4o-mini", "gpt-4o")
ROUTER_MODELS = ("openai/gpt-oss-20b", "meta-llama/Llama-3.1-8B-Instruct")
OWNER = NamedBackend("owner", OWNER_MODELS)
ROUTER = NamedBackend("router", ROUTER_MODELS)
LOCAL = NamedBackend("local")


def access(
    *,
    router: NamedBackend | None = ROUTER,
    anonymous: str = "owner",
    local: NamedBackend | None = None,
    dev_token: str | None = None,
) -> Access:
    """The policy with the owner's backend, and by default a router, as when sign-in is offered."""
    return Access(
        owner=OWNER,
        router=router,
        anonymous=anonymous,
        local=local,
        dev_token=dev_token,
    )


class TestAnonymous:
    @pytest.mark.parametrize("token", [None, ""])
    def test_owner(self, token):
        """By default a visitor who has not signed in chats on the owner's backend and models."""
        assert access().route(token) == Route(OWNER, OWNER_MODELS, "owner")

    def test_local(self):
        """ANONYMOUS_CHAT=local gives them the local model, with no model to pick, paid by nobody."""
        assert access(anonymous="local", local=LOCAL).route(None) == Route(LOCAL, (), "nobody")

    def test_signin(self):
        """ANONYMOUS_CHAT=signin asks them to sign in."""
        with pytest.raises(SignInRequiredError) as info:
            access(anonymous="signin").route(None)
        assert str(info.value) == "Sign in with Hugging Face to chat: your chats then run on your own account."

    def test_local_needs_a_local_backend(self):
        """ANONYMOUS_CHAT=local without a local model is a programming error, caught at start-up."""
        with pytest.raises(ValueError, match="^anonymous visitors get the local model, but none was given$"):
            access(anonymous="local")

    def test_without_sign_in_a_token_is_ignored(self):
        """With sign-in not offered (no router), a token sent by an API caller changes nothing."""
        policy = access(router=None)
        assert policy.sign_in is False
        assert policy.route("hf_visitor_token") == Route(OWNER, OWNER_MODELS, "owner")


class TestSignedIn:
    @pytest.mark.parametrize("anonymous", ["owner", "local", "signin"])
    def test_router_with_their_token(self, anonymous):
        """A signed-in visitor chats through the router with their own token, whatever anonymous visitors get."""
        policy = access(anonymous=anonymous, local=LOCAL)
        route = policy.route("hf_visitor_token")
        assert route == Route(ROUTER, ROUTER_MODELS, "visitor", api_key="hf_visitor_token")
        assert route.api_key == "hf_visitor_token"
        assert policy.sign_in is True

    def test_the_token_is_not_in_the_repr(self):
        """Logging a route does not leak the visitor's token."""
        assert "hf_visitor_token" not in repr(access().route("hf_visitor_token"))

    def test_mock_token_is_replaced_by_the_dev_token(self):
        """Gradio's local stand-in sign-in has a placeholder token: the developer's own token is used instead."""
        route = access(dev_token="hf_developer").route(MOCK_TOKEN)
        assert MOCK_TOKEN == "mock-oauth-token-for-local-dev"
        assert route == Route(ROUTER, ROUTER_MODELS, "visitor", api_key="hf_developer")

    @pytest.mark.parametrize(
        "dev_token",
        [
            None,  # no HF_TOKEN
            "",  # an empty one
        ],
    )
    def test_mock_token_without_a_dev_token_is_refused(self, dev_token):
        """With no token of the developer's, the placeholder is never sent to the router."""
        with pytest.raises(SignInRequiredError) as info:
            access(dev_token=dev_token).route(MOCK_TOKEN)
        assert str(info.value).startswith("Sign-in here is Gradio's local stand-in, which has no real token")


class TestBackends:
    def test_each_backend_once(self):
        """Every backend in use is listed once, to be closed at shutdown."""
        assert access(anonymous="local", local=LOCAL).backends() == (OWNER, ROUTER, LOCAL)

    def test_a_shared_backend_is_listed_once(self):
        """The owner's backend serving as the router too is closed once."""
        assert access(router=OWNER, local=OWNER).backends() == (OWNER,)

    def test_absent_backends_are_left_out(self):
        """No router and no local model: only the owner's."""
        assert access(router=None).backends() == (OWNER,)
