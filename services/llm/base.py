"""The one interface every backend implements: a request in, pieces of the reply (answer and thinking) out."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

__all__ = [
    "CHARS_PER_TOKEN",
    "BackendName",
    "BackendStatus",
    "ChatBackend",
    "ChatRequest",
    "Delta",
    "GenerationParams",
    "Message",
    "Role",
    "Usage",
    "estimate_prompt_tokens",
    "estimate_tokens",
]

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
class Usage:
    """The tokens one reply cost: the prompt the model read and the completion it wrote (thinking included).

    `estimated` when they were counted from characters (`estimate_tokens`), because the server reported none or
    the reply ended before it could; False when the server reported them or the model's tokenizer counted them.
    """

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Estimates, where nothing better counts: about 4 characters a token for English text and code in the tokenizers
# of current chat models (OpenAI's rule of thumb; other scripts take more tokens a character, so this undercounts
# them), rounded up; and a few tokens a message for the role and separators a chat template adds, plus the cue
# that starts the reply (OpenAI's cookbook counts 3 and 3).
CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_REPLY = 3


def estimate_tokens(chars: int) -> int:
    """Tokens of `chars` characters of text, estimated: `CHARS_PER_TOKEN` a token, rounded up."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """Tokens a server reads for `messages`, estimated from their characters (no tokenizer: microseconds)."""
    chars = sum(len(message["content"]) for message in messages)
    return estimate_tokens(chars) + _TOKENS_PER_MESSAGE * len(messages) + _TOKENS_PER_REPLY


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply: new answer text, new thinking text, and, on the last piece, why it ended.

    `usage` is what the reply cost so far as the server or the model counts it; backends send it on the last
    piece (a server may send it on every piece, counting up), and leave it None when they cannot count.
    """

    text: str = ""
    thinking: str = ""
    finish_reason: str | None = None  # "stop", "length", ... as the server says; None until the end
    usage: Usage | None = None


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
    `ValidationError` when even the last message cannot fit. `estimate_prompt_tokens` says, cheaply and before
    anything is sent, how many tokens the request's prompt will cost (a budget refuses what cannot fit).
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

    def estimate_prompt_tokens(self, request: ChatRequest) -> int: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...
