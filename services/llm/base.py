"""The one interface every backend implements: a request in, pieces of the reply (answer and thinking) out."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from typing_extensions import NotRequired

__all__ = [
    "CHARS_PER_TOKEN",
    "BackendName",
    "BackendStatus",
    "ChatBackend",
    "ChatRequest",
    "Content",
    "ContentPart",
    "Delta",
    "GenerationParams",
    "Message",
    "Role",
    "ToolCallMessage",
    "ToolCallPiece",
    "Usage",
    "content_chars",
    "content_images",
    "content_text",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "join_contents",
]

Role = Literal["system", "user", "assistant", "tool"]
# "none" is the stand-in that answers every chat with what to configure.
BackendName = Literal["openai", "local", "none"]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImageUrl(TypedDict):
    url: str  # a data: URL the app made (`services.attachments`), never one a client gave


class ImageUrlPart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = TextPart | ImageUrlPart
# A message's content in the OpenAI format: text, or a list of parts when it carries images.
Content = str | list[ContentPart]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCallMessage(TypedDict):
    """A tool call as an assistant message carries it back to the server, in the OpenAI format."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict):
    """One chat message in the OpenAI format: an assistant's may carry the tool calls it made, and a tool's
    answers one of them (`tool_call_id`)."""

    role: Role
    content: Content
    tool_calls: NotRequired[list[ToolCallMessage]]
    tool_call_id: NotRequired[str]


def content_text(content: Content) -> str:
    """The text of a message's content, its parts' texts joined (images left out)."""
    if isinstance(content, str):
        return content
    return "\n\n".join(part["text"] for part in content if part["type"] == "text")


def content_images(content: Content) -> int:
    """How many images a message's content carries."""
    return 0 if isinstance(content, str) else sum(part["type"] == "image_url" for part in content)


def content_chars(content: Content) -> int:
    """Characters of a message's text (what MAX_HISTORY_CHARS counts; images are bounded by their count)."""
    if isinstance(content, str):
        return len(content)
    return sum(len(part["text"]) for part in content if part["type"] == "text")


def join_contents(first: Content, second: Content) -> Content:
    """Two contents as one message's (two turns in a row from one side): text after text, images kept."""
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}" if first and second else first or second

    def parts(content: Content) -> list[ContentPart]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        return list(content)

    return [*parts(first), *parts(second)]


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
    # The tools the model may call, in the OpenAI format (`{"type": "function", "function": {...}}`); none: ().
    tools: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class ToolCallPiece:
    """A piece of a tool call as it streams: the call's `index` in its round, and whatever of its `id`, `name`
    and `arguments` (JSON text, in pieces) this chunk carries."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


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
# An image of at most 2048 px (`services.attachments`), as the vision models of OpenAI and others count it in
# their detailed mode: 85 tokens, and 170 for each of up to six 512-px tiles of the image scaled to 768 px.
_TOKENS_PER_IMAGE = 1105


def estimate_tokens(chars: int) -> int:
    """Tokens of `chars` characters of text, estimated: `CHARS_PER_TOKEN` a token, rounded up."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """Tokens a server reads for `messages`, estimated from their characters (no tokenizer: microseconds)."""
    chars = sum(content_chars(message["content"]) for message in messages)
    images = sum(content_images(message["content"]) for message in messages)
    return estimate_tokens(chars) + _TOKENS_PER_IMAGE * images + _TOKENS_PER_MESSAGE * len(messages) + _TOKENS_PER_REPLY


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply: new answer text, new thinking text, and, on the last piece, why it ended.

    `usage` is what the reply cost so far as the server or the model counts it; backends send it on the last
    piece (a server may send it on every piece, counting up), and leave it None when they cannot count.
    """

    text: str = ""
    thinking: str = ""
    finish_reason: str | None = None  # "stop", "length", "tool_calls", ... as the server says; None until the end
    usage: Usage | None = None
    tool_calls: tuple[ToolCallPiece, ...] = ()


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
    anything is sent, how many tokens the request's prompt will cost (a budget refuses what cannot fit). `start`
    runs once when the app starts serving, `aclose` when it stops.
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

    def sees_images(self, model: str | None) -> bool:
        """Whether `model` (None: the default) takes images; an image for one that does not is refused."""
        ...

    def calls_tools(self, model: str | None) -> bool:
        """Whether `model` (None: the default) can call tools; tools are offered only to one that can."""
        ...

    async def start(self) -> None:
        """What the backend learns before the first chat (a server's listing of its models); never raises. Called
        at start-up and again before a chat decides what the model takes: a later call waits for the first."""

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...
