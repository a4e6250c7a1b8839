"""One chat turn: the inputs checked, the request built for the backend, and its pieces streamed back as a reply.

Every caller (the page, `/chat`, the stateless MCP tool) goes through `prepare_chat` and `stream_reply`, so the
same limits, defaults and error texts apply to all of them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from services.attachments.parts import Attachment
from services.attachments.pool import Upload
from services.config import Settings
from services.conversation import Attached, ToolStep, Turn, to_messages
from services.errors import (
    BackendAuthError,
    BackendNotConfiguredError,
    BackendRateLimitError,
    BackendRequestError,
    BackendUnavailableError,
    ReplyOverrunError,
    ReplyTimeoutError,
    StreamInterruptedError,
    ValidationError,
)
from services.llm.alarm import Alarm
from services.llm.base import (
    ChatBackend,
    ChatRequest,
    GenerationParams,
    Message,
    Usage,
    content_chars,
    estimate_tokens,
)
from services.reasoning import ThinkSplitter
from services.text import clean
from services.trimming import keep_newest

__all__ = [
    "ChatOptions",
    "PreparedChat",
    "Reply",
    "ToolCall",
    "choose_model",
    "finished_turn",
    "prepare_chat",
    "stream_reply",
    "trim_history",
    "validate_message",
    "validate_params",
]


@dataclass(frozen=True)
class ChatOptions:
    """What a caller asks of one reply besides its message, as it arrived from the page, the API or MCP: each
    value is checked before use (`validate_params`, `choose_model`), and None takes the Space's default."""

    system_prompt: object = None
    temperature: object = None
    max_tokens: object = None
    model: object = None
    # Files to send with the message, as `Upload`s (path and name) of files the caller uploaded: the UI checks
    # that each path is one of the app's own uploads before it gets here. `attached`: a retried message's
    # attachments, read already.
    files: Sequence[Upload] = ()
    attached: tuple[Attached, ...] = ()


@dataclass(frozen=True)
class PreparedChat:
    """The backend's request, and how many old messages were left out to make it fit."""

    request: ChatRequest
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call a model made, whole once its round has ended: the id it gave it, the tool's name, the
    arguments as the JSON text it wrote (checked by the tool registry, never trusted here)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply so far: the answer, the thinking before it, and once the answer has started, how long it thought.

    The last (`done`) carries `usage`: what the reply cost, as the server or the model counted it, else estimated;
    and `calls`, the tools the model asked for (finish_reason "tool_calls"). `steps` are the tool calls of this
    reply's earlier rounds, as the page shows them.
    """

    text: str = ""
    thinking: str = ""
    thinking_seconds: float | None = None
    finish_reason: str | None = None
    done: bool = False
    usage: Usage | None = None
    calls: tuple[ToolCall, ...] = ()
    steps: tuple[ToolStep, ...] = ()

    @property
    def thinking_now(self) -> bool:
        """Whether the model is still thinking: thinking has arrived and no answer yet."""
        return bool(self.thinking) and not self.text and not self.done


def _finite_number(field: str, value: object) -> float:
    # bool is an int to Python, but `true` as a temperature is a caller's mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"expected a number, got {type(value).__name__}.")
    try:
        number = float(value)  # JSON allows integers of any size: 10**400 does not fit a float
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError(field, f"expected a finite number, got {str(value)[:40]}.")
    return number


def validate_params(
    system_prompt: object, temperature: object, max_tokens: object, *, settings: Settings
) -> tuple[str, GenerationParams]:
    """Check the sampling inputs against the server-side limits; None takes the configured default."""
    if system_prompt is None:
        system_prompt = settings.system_prompt
    if not isinstance(system_prompt, str):
        raise ValidationError("system_prompt", f"expected text, got {type(system_prompt).__name__}.")
    if len(system_prompt) > settings.max_system_prompt_chars:
        raise ValidationError(
            "system_prompt",
            f"is {len(system_prompt):,} characters; at most {settings.max_system_prompt_chars:,} are allowed.",
        )
    system_prompt = clean(system_prompt)
    temp = settings.default_temperature if temperature is None else _finite_number("temperature", temperature)
    if not 0 <= temp <= 2:
        raise ValidationError("temperature", f"must be between 0 and 2, got {temp:g}.")
    tokens = settings.default_max_tokens if max_tokens is None else _finite_number("max_tokens", max_tokens)
    if tokens != int(tokens) or not 1 <= tokens <= settings.max_tokens_cap:
        raise ValidationError(
            "max_tokens", f"must be a whole number from 1 to {settings.max_tokens_cap}, got {tokens:g}."
        )
    return system_prompt, GenerationParams(temperature=temp, max_tokens=int(tokens))


def validate_message(message: object, *, settings: Settings, attached: bool = False) -> str:
    """The message as text, or `ValidationError`; its length is checked before anything else is done with it.
    With files `attached`, the text may be empty (the files are the message)."""
    if not isinstance(message, str):
        raise ValidationError("message", f"expected text, got {type(message).__name__}.")
    if len(message) > settings.max_message_chars:
        raise ValidationError(
            "message", f"is {len(message):,} characters; at most {settings.max_message_chars:,} are allowed."
        )
    # NUL is never meaningful in a prompt and several servers reject it; a lone surrogate cannot even be sent.
    message = clean(message)
    if not message.strip() and not attached:
        raise ValidationError("message", "is empty: type something to send.")
    return message


def choose_model(model: object, models: Sequence[str]) -> str | None:
    """The model to ask for: one of `models` (the offered list), or None/"" for the default (the first).

    An empty `models` means the backend picks (a local model, or a server asked for its first model): then only
    the default may be asked for.
    """
    if model is None or model == "":
        return models[0] if models else None
    if not isinstance(model, str):
        raise ValidationError("model", f"expected text, got {type(model).__name__}.")
    if model not in models:
        offered = ", ".join(models) if models else "only the default (leave it empty)"
        raise ValidationError("model", f"{model[:100]!r} is not offered here; choose one of: {offered}.")
    return model


def trim_history(history: Sequence[Message], *, max_chars: int) -> tuple[list[Message], int]:
    """The newest messages that fit in `max_chars`, and how many older ones went (`services.trimming`'s rules:
    the kept part starts with a question, so the model never sees an answer whose question was cut)."""
    return keep_newest(history, size=lambda m: content_chars(m["content"]), budget=max_chars, can_start=_is_question)


def _is_question(message: Message) -> bool:
    return message["role"] == "user"


def prepare_chat(
    backend: ChatBackend,
    user: Turn,
    history: Sequence[Turn],
    *,
    system_prompt: str,
    params: GenerationParams,
    model: str | None,
    api_key: str | None,
    settings: Settings,
    held: Callable[[str], Attachment | None] | None = None,
    attached_chars: int = 0,
) -> PreparedChat:
    """The backend's request for one turn: system prompt, the history that fits, the message.

    Takes inputs already checked (`validate_message`, `validate_params`, `choose_model`, the attachments read),
    so nothing here can reach the backend unchecked. MAX_HISTORY_CHARS bounds the earlier conversation and the
    documents `user` carries (`attached_chars`) together: the documents take their share first.
    """
    if attached_chars > settings.max_history_chars:
        raise ValidationError(
            "files",
            f"the attached documents are {attached_chars:,} characters, and this Space sends the model at most "
            f"{settings.max_history_chars:,} (MAX_HISTORY_CHARS): attach fewer or shorter ones.",
        )
    # A message that got no reply (an error, a Stop before the first token) is joined with this one, as
    # `to_messages` joins any two turns in a row: several chat templates reject that.
    *earlier, current = to_messages([*history, user], held=held)
    past, dropped = trim_history(earlier, max_chars=settings.max_history_chars - attached_chars)
    messages: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    messages += past
    messages.append(current)
    request, dropped_to_fit = backend.fit(ChatRequest(messages, params, model=model, api_key=api_key))
    return PreparedChat(request=request, dropped=dropped + dropped_to_fit)


# A reply is clearly past max_tokens when it holds more than this many characters a token (answer and thinking),
# plus a margin: tokens average about 4 characters, and even a reply of long tokens (runs of spaces in code,
# rules of "=") stays under 8 on the whole; the margin keeps a short max_tokens from cutting a few long ones.
_OVERRUN_CHARS_PER_TOKEN = 8
_OVERRUN_MARGIN_CHARS = 1_000
# Where a server counts its tokens as it streams them (vLLM's continuous usage stats), its count decides, with a
# margin for a server that counts an end-of-text token or two more than it writes.
_OVERRUN_MARGIN_TOKENS = 16
# Failures that prove the model wrote nothing, so the reply cost nothing: the server refused the request or
# could not be reached, before any piece arrived.
_REFUSALS = (
    BackendAuthError,
    BackendNotConfiguredError,
    BackendRateLimitError,
    BackendRequestError,
    BackendUnavailableError,
)


def _past_max_tokens(chars: int, usage: Usage | None, *, max_tokens: int, finished: bool) -> bool:
    """Whether a reply of `chars` characters so far (and the server's count, once it has ended no more) is
    clearly longer than `max_tokens`; a count that arrives with or after the end is accounting, not a runaway."""
    if chars > max_tokens * _OVERRUN_CHARS_PER_TOKEN + _OVERRUN_MARGIN_CHARS:
        return True
    return usage is not None and not finished and usage.completion_tokens > max_tokens + _OVERRUN_MARGIN_TOKENS


async def stream_reply(
    backend: ChatBackend,
    request: ChatRequest,
    *,
    interval: float = 0.0,
    timeout: float | None = None,
    on_usage: Callable[[Usage], None] | None = None,
) -> AsyncIterator[Reply]:
    """Yield the reply so far, at most once per `interval` seconds, and always the first piece, the moment the
    answer starts after thinking, and the end (`done`, with the reply's `usage`).

    Coalescing trades nothing a reader can see (40 ms is under one frame of reading) for far fewer updates on
    the wire and in Gradio's diffing. Thinking in `<think>` tags is split from the answer here, whatever the
    backend; the time spent thinking runs from its first piece to the answer's first.

    Every reply ends, whatever the backend does: past `timeout` seconds from the request (REPLY_TIMEOUT) it is
    cut with `ReplyTimeoutError`, and once it is clearly longer than its max_tokens (a server that ignores the
    limit) with `ReplyOverrunError`; both keep what arrived, as `StreamInterruptedError` does.

    `on_usage` is called once when the reply ends, however it ends (done, cut, or its consumer gone), with what
    it cost: the server's or the model's own count, else an estimate from characters (`Usage.estimated`). It is
    not called when the backend refused the request before writing anything (rejected credentials, a 4xx, no
    server to reach). It must not raise.
    """
    max_tokens = request.params.max_tokens
    splitter = ThinkSplitter()
    text = thinking = ""
    seconds: float | None = None
    thinking_since: float | None = None
    finish: str | None = None
    sent_at = -math.inf
    changed = False
    received = 0  # characters of answer, thinking and tool calls, as the backend sent them
    calls: dict[int, list[str]] = {}  # a tool call's [id, name, arguments] by its index, as its pieces arrive
    reported: Usage | None = None
    cost: Usage | None = None
    charged = True
    loop = asyncio.get_running_loop()
    # One timer for the whole reply (services.llm.alarm); it cuts only the wait for the backend, never our consumer.
    seconds_allowed = math.inf if timeout is None else timeout
    deadline = Alarm(loop.time() + seconds_allowed, loop=loop) if timeout is not None else None
    try:
        # `aclosing` closes the backend promptly when our consumer stops early (Stop pressed, tab closed, job
        # cancelled), and when a limit ends the reply here: the backend's own cleanup then closes the upstream.
        async with aclosing(backend.stream(request)) as stream:  # type: ignore[type-var]
            try:
                while True:
                    if deadline is not None:
                        if deadline.rang:
                            raise _too_late(seconds_allowed)
                        deadline.enter()
                    try:
                        delta = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if deadline is not None and deadline.expired():
                            raise _too_late(seconds_allowed) from None
                        raise
                    finally:
                        if deadline is not None:
                            deadline.leave()
                    received += len(delta.text) + len(delta.thinking)
                    for piece in delta.tool_calls:
                        call = calls.setdefault(piece.index, ["", "", ""])
                        call[0], call[1] = call[0] or piece.id, call[1] or piece.name
                        call[2] += piece.arguments
                        received += len(piece.arguments)
                    reported = delta.usage or reported
                    finish = delta.finish_reason or finish
                    if _past_max_tokens(received, reported, max_tokens=max_tokens, finished=finish is not None):
                        raise ReplyOverrunError(
                            f"The reply was stopped: the model server went on writing well past max_tokens "
                            f"({max_tokens} tokens), a limit it should keep to. Raise Max tokens for a longer "
                            "reply; if this happens again, the server ignores max_tokens."
                        )
                    answer, thought = splitter.feed(delta.text) if delta.text else ("", "")
                    thought = delta.thinking + thought
                    if not (answer or thought):
                        continue
                    now = time.monotonic()
                    if thought:
                        thinking_since = now if thinking_since is None else thinking_since
                        thinking += thought
                    started = bool(answer) and not text
                    if answer:
                        if started and thinking_since is not None:
                            seconds = round(now - thinking_since, 1)
                        text += answer
                    changed = True
                    if started or now - sent_at >= interval:
                        sent_at, changed = now, False
                        yield Reply(text, thinking, seconds, None)
            except StreamInterruptedError as error:
                # Show everything that did arrive before the error says the reply was cut.
                if changed:
                    yield Reply(text, thinking, seconds, None)
                error.partial = text
                raise
            except _REFUSALS:
                charged = received > 0 or reported is not None
                raise
        answer, thought = splitter.flush()
        text, thinking = text + answer, thinking + thought
        if thinking and seconds is None and thinking_since is not None:
            seconds = round(time.monotonic() - thinking_since, 1)
        cost = _cost(backend, request, reported, received)
        made = tuple(
            ToolCall(call_id or f"call_{index}", name, arguments)
            for index, (call_id, name, arguments) in sorted(calls.items())
            if name
        )
        yield Reply(text, thinking, seconds, finish, done=True, usage=cost, calls=made)
    finally:
        if deadline is not None:
            deadline.close()
        if on_usage is not None and charged:
            on_usage(cost or _cost(backend, request, reported, received))


def _too_late(timeout: float) -> ReplyTimeoutError:
    return ReplyTimeoutError(
        f"The reply was cut off: it took longer than {timeout:g} s, the longest a reply may take here "
        "(REPLY_TIMEOUT). Ask for a shorter reply (lower Max tokens), or raise REPLY_TIMEOUT."
    )


def _cost(backend: ChatBackend, request: ChatRequest, reported: Usage | None, received: int) -> Usage:
    """What a reply cost: the backend's count when it gave one, else an estimate from characters."""
    if reported is not None:
        return reported
    return Usage(backend.estimate_prompt_tokens(request), estimate_tokens(received), estimated=True)


def finished_turn(reply: Reply, *, params: GenerationParams, notice: str = "") -> Turn:
    """The assistant's turn as kept: the reply, its tool steps, and the app's own notice of how it ended when that
    matters."""
    if not notice and reply.finish_reason == "length":
        if not reply.text.strip() and reply.thinking:
            notice = (
                f"The model spent all {params.max_tokens} tokens thinking and wrote no answer: "
                "raise Max tokens and try again."
            )
        else:
            notice = f"The reply was cut at the token limit ({params.max_tokens} tokens): raise Max tokens for more."
    elif not notice and reply.done and not reply.text.strip():
        notice = "The model sent an empty reply."
    return Turn(
        "assistant",
        reply.text,
        thinking=reply.thinking,
        thinking_seconds=reply.thinking_seconds,
        notice=notice,
        steps=reply.steps,
    )
