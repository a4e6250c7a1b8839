"""The one interface every backend implements: a request in, pieces of the reply (answer and thinking) out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

__all__ = ["BackendName", "BackendStatus", "ChatBackend", "ChatRequest", "Delta", "GenerationParams", "Message", "Role"]

Role = Literal["system", "user", "assistant"]
# "none" is the stand-in that answers every chat with what to configure.
BackendName = Literal["openai", "local", "none"]


class Message(TypedDict):
    """One chat message in the OpenAI format, with plain-text content."""

    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, already validated by `services.chat`; temperature 0 means greedy decoding."""

    temperature: float
    max_tokens: int


@dataclass(frozen=True)
class ChatRequest:
    """Everything one reply needs: what to answer, how, with which model, and on whose credentials.

    `model` None takes the backend's default. `api_key` None uses the backend's own key; a signed-in visitor's
    token travels here, per request, so one shared client serves every visitor.
    """

    messages: Sequence[Message]
    params: GenerationParams
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply: new answer text, new thinking text, and, on the last piece, why it ended."""

    text: str = ""
    thinking: str = ""
    finish_reason: str | None = None  # "stop", "length", ... as the server says; None until the end


@dataclass(frozen=True)
class BackendStatus:
    """What the page's status line says of a backend: what it is, the model that answers, and where it runs."""

    backend: BackendName
    model: str  # the default model as people know it (an id, a path), or what will pick it
    where: str  # scheme://host[:port] of a server, or the device of the local model; "" when nothing runs
    problem: str = ""  # why it cannot answer, in words for the Space's owner; "" when it can


class ChatBackend(Protocol):
    """A language model that streams a reply.

    `stream` yields the reply's new pieces (not the text so far) and raises a `BackendError` when it fails;
    closing the iterator early (a user pressed Stop) must release the backend's work promptly. `fit` trims a
    request to the model's context window (returning how many messages it left out), or raises
    `ValidationError` when even the last message cannot fit.
    """

    name: BackendName
    # Seconds between two streamed updates to a client, and replies that may stream at once (None: no limit).
    stream_interval: float
    concurrency_limit: int | None

    @property
    def models(self) -> tuple[str, ...]:
        """The models a caller may pick, the first the default; empty when the backend picks its own."""
        ...

    def status(self) -> BackendStatus: ...

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...
