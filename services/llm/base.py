"""The one interface every backend implements: messages and parameters in, text pieces out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

__all__ = ["ChatBackend", "GenerationParams", "Message", "Role"]

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message in the OpenAI format, with plain-text content."""

    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, already validated by `services.chat`; temperature 0 means greedy decoding."""

    temperature: float
    max_tokens: int


class ChatBackend(Protocol):
    """A language model that streams a reply.

    `stream` yields the reply's new text pieces (not the text so far) and raises a `BackendError` when it
    fails. Closing the iterator early (a user pressed Stop) must release the backend's work promptly.
    """

    name: str  # "openai" or "local": shown in the UI's status line

    @property
    def model(self) -> str:
        """The model that answers, as people know it (an id, a path, or a description)."""
        ...

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]: ...
