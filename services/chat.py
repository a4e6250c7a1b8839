"""Turns a chat turn from the UI or the API into backend messages, and the backend's pieces into a reply."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from services.config import Settings
from services.errors import StreamInterruptedError, ValidationError
from services.llm.base import ChatBackend, GenerationParams, Message
from services.text import clean

__all__ = [
    "ChatRequest",
    "history_to_messages",
    "prepare_chat",
    "stream_reply",
    "text_of",
    "trim_history",
    "validate_params",
]


@dataclass(frozen=True)
class ChatRequest:
    """What goes to the backend, and how many old messages were left out to make it fit."""

    messages: list[Message]
    params: GenerationParams
    dropped: int = 0


def text_of(content: Any) -> str:
    """Plain text of a Gradio message content: a str, or (Gradio 6) a list of blocks; files are skipped."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content["text"]) if content.get("type") == "text" and "text" in content else ""
    if isinstance(content, Sequence):
        return "\n".join(t for t in (text_of(block) for block in content) if t)
    return ""


def history_to_messages(history: Sequence[Mapping[str, Any]] | None) -> list[Message]:
    """The user and assistant turns of a Gradio chat history, as OpenAI-style text messages."""
    messages: list[Message] = []
    for item in history or ():
        role = item.get("role") if isinstance(item, Mapping) else None
        if role not in ("user", "assistant"):
            continue
        text = clean(text_of(item.get("content")))
        if not text:
            continue
        if messages and messages[-1]["role"] == role:
            # Two turns in a row from one side (a reply that failed, a retried message): several chat
            # templates reject that, so join them into one message.
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n\n" + text}
        else:
            messages.append({"role": role, "content": text})
    return messages


def _number(field: str, value: object) -> float:
    # bool is an int to Python, but `true` as a temperature is a caller's mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"expected a number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValidationError(field, f"expected a finite number, got {value!r}.")
    return float(value)


def validate_params(
    system_prompt: object, temperature: object, max_tokens: object, *, settings: Settings
) -> tuple[str, GenerationParams]:
    """Check the sampling inputs against the server-side limits; None takes the configured default."""
    if system_prompt is None:
        system_prompt = settings.system_prompt
    if not isinstance(system_prompt, str):
        raise ValidationError("system_prompt", f"expected text, got {type(system_prompt).__name__}.")
    system_prompt = clean(system_prompt)
    if len(system_prompt) > settings.max_system_prompt_chars:
        raise ValidationError(
            "system_prompt",
            f"is {len(system_prompt):,} characters; at most {settings.max_system_prompt_chars:,} are allowed.",
        )
    temp = settings.default_temperature if temperature is None else _number("temperature", temperature)
    if not 0 <= temp <= 2:
        raise ValidationError("temperature", f"must be between 0 and 2, got {temp:g}.")
    tokens = settings.default_max_tokens if max_tokens is None else _number("max_tokens", max_tokens)
    if tokens != int(tokens) or not 1 <= tokens <= settings.max_tokens_cap:
        raise ValidationError(
            "max_tokens", f"must be a whole number from 1 to {settings.max_tokens_cap}, got {tokens:g}."
        )
    return system_prompt, GenerationParams(temperature=temp, max_tokens=int(tokens))


def _validate_message(message: object, *, settings: Settings) -> str:
    if not isinstance(message, str):
        raise ValidationError("message", f"expected text, got {type(message).__name__}.")
    # NUL is never meaningful in a prompt and several servers reject it; a lone surrogate cannot even be sent.
    message = clean(message)
    if not message.strip():
        raise ValidationError("message", "is empty: type something to send.")
    if len(message) > settings.max_message_chars:
        raise ValidationError(
            "message", f"is {len(message):,} characters; at most {settings.max_message_chars:,} are allowed."
        )
    return message


def trim_history(history: Sequence[Message], *, max_chars: int) -> tuple[list[Message], int]:
    """Drop the oldest messages until the history fits in `max_chars`; returns what is kept and how many went.

    Messages go oldest first and in whole user/assistant pairs where possible, so the model never sees an
    answer whose question was cut.
    """
    kept = list(history)
    total = sum(len(m["content"]) for m in kept)
    dropped = 0
    while kept and total > max_chars:
        total -= len(kept.pop(0)["content"])
        dropped += 1
        if kept and kept[0]["role"] == "assistant":
            total -= len(kept.pop(0)["content"])
            dropped += 1
    return kept, dropped


def prepare_chat(
    backend: ChatBackend,
    message: object,
    history: Sequence[Mapping[str, Any]] | None,
    *,
    system_prompt: object = None,
    temperature: object = None,
    max_tokens: object = None,
    settings: Settings,
) -> ChatRequest:
    """Validate one turn and build the backend's messages: system prompt, the history that fits, the message.

    Raises `ValidationError` before anything reaches the backend.
    """
    text = _validate_message(message, settings=settings)
    system, params = validate_params(system_prompt, temperature, max_tokens, settings=settings)
    earlier = history_to_messages(history)
    if earlier and earlier[-1]["role"] == "user":
        # A message that got no reply (an error, a Stop before the first token) is joined with this one, as
        # history_to_messages joins any two turns in a row: several chat templates reject that.
        text = earlier.pop()["content"] + "\n\n" + text
    past, dropped = trim_history(earlier, max_chars=settings.max_history_chars)
    messages: list[Message] = [{"role": "system", "content": system}] if system.strip() else []
    messages += past
    messages.append({"role": "user", "content": text})
    fitted, dropped_to_fit = backend.fit(messages, params)
    return ChatRequest(messages=fitted, params=params, dropped=dropped + dropped_to_fit)


async def stream_reply(backend: ChatBackend, request: ChatRequest, *, interval: float = 0.0) -> AsyncIterator[str]:
    """Yield the reply so far, growing, at most once per `interval` seconds (plus the first and last).

    Coalescing trades nothing a reader can see (40 ms is under one frame of reading) for far fewer updates
    on the wire and in Gradio's diffing. The first piece is sent at once so time-to-first-token is untouched.
    """
    text = ""
    sent = ""
    last = 0.0
    # `aclosing` closes the backend promptly when our consumer stops early (Stop pressed, tab closed, job
    # cancelled): Gradio throws GeneratorExit into this generator, and the backend's own cleanup then runs.
    async with aclosing(backend.stream(request.messages, request.params)) as stream:  # type: ignore[type-var]
        try:
            async for piece in stream:
                text += piece
                now = time.monotonic()
                if not sent or now - last >= interval:
                    sent, last = text, now
                    yield text
        except StreamInterruptedError as e:
            # Show everything that did arrive before the error says the reply was cut.
            if text != sent:
                yield text
            e.partial = text
            raise
    if text != sent or not sent:
        yield text
