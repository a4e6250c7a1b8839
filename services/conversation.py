"""The app's own conversation type, and the one parser that turns a client's conversation into it.

A conversation reaches the server from clients in several shapes: the `history` argument of the stateless chat
tool, a conversation kept in the visitor's browser, an imported JSON file. Each is hostile until parsed here into
`Turn`s: text and the few things the app itself produces (thinking, a notice), bounded in count and size before
any other work. Anything else is refused with `ConversationError`; nothing a client sends is rendered, stored or
sent on as it arrived.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.errors import ConversationError
from services.llm.base import Message
from services.text import clean
from services.trimming import keep_newest

__all__ = ["Limits", "Turn", "bound_turns", "parse_turns", "to_messages", "total_chars", "turns_to_json"]

TurnRole = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation as the app keeps it.

    `thinking` (an assistant's reasoning, shown collapsed) and `notice` (the app's own remark: cut at the token
    limit, stopped, failed) are shown but never sent back to the model.
    """

    role: TurnRole
    text: str
    thinking: str = ""
    thinking_seconds: float | None = None
    notice: str = ""

    @property
    def size(self) -> int:
        return len(self.text) + len(self.thinking) + len(self.notice)


@dataclass(frozen=True)
class Limits:
    """How big a client's conversation may be: in messages, and in characters of all of them together."""

    max_messages: int
    max_chars: int


# The fields a turn may carry, as the JSON of `turns_to_json`; `content` is accepted for `text`, as the OpenAI and
# Gradio formats name it.
_FIELDS = {"role", "text", "content", "thinking", "thinking_seconds", "notice"}


def _field_text(item: Mapping[str, Any], name: str, number: int) -> str:
    value = item.get(name, "")
    if not isinstance(value, str):
        raise ConversationError("history", f"message {number}: {name!r} must be text, got {type(value).__name__}.")
    return clean(value)


def _is_seconds(value: object) -> bool:
    """A duration as JSON may give it: a number from 0 to a day (an integer of any size must not overflow)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= 86_400 and math.isfinite(value)


def _parse_turn(item: object, number: int) -> Turn:
    if not isinstance(item, Mapping):
        raise ConversationError("history", f"message {number} must be an object, got {type(item).__name__}.")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ConversationError(
            "history", f"message {number} has unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}."
        )
    role = item.get("role")
    if role not in ("user", "assistant"):
        raise ConversationError("history", f"message {number}: 'role' must be 'user' or 'assistant'.")
    if "text" in item and "content" in item:
        raise ConversationError("history", f"message {number} has both 'text' and 'content'.")
    text = _field_text(item, "text" if "text" in item else "content", number)
    if role == "user":
        if any(name in item for name in ("thinking", "thinking_seconds", "notice")):
            raise ConversationError("history", f"message {number}: a user message carries only its text.")
        return Turn("user", text)
    seconds = item.get("thinking_seconds")
    if seconds is not None and not _is_seconds(seconds):
        raise ConversationError("history", f"message {number}: 'thinking_seconds' must be a number of seconds.")
    return Turn(
        "assistant",
        text,
        thinking=_field_text(item, "thinking", number),
        thinking_seconds=None if seconds is None else float(seconds),
        notice=_field_text(item, "notice", number),
    )


def parse_turns(value: object, *, limits: Limits) -> tuple[Turn, ...]:
    """A client's conversation as `Turn`s, or `ConversationError` naming what is wrong.

    The count is checked before any message is looked at, and the characters as they are read, so an oversized
    value costs little to refuse.
    """
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ConversationError("history", f"must be a list of messages, got {type(value).__name__}.")
    if len(value) > limits.max_messages:
        raise ConversationError(
            "history", f"has {len(value):,} messages; at most {limits.max_messages:,} are accepted."
        )
    turns: list[Turn] = []
    chars = 0
    for number, item in enumerate(value, start=1):
        turn = _parse_turn(item, number)
        chars += turn.size
        if chars > limits.max_chars:
            raise ConversationError("history", f"is over {limits.max_chars:,} characters.")
        turns.append(turn)
    return tuple(turns)


def total_chars(turns: Iterable[Turn]) -> int:
    return sum(turn.size for turn in turns)


def turns_to_json(turns: Iterable[Turn]) -> list[dict[str, Any]]:
    """The turns as plain JSON, with empty fields left out: what is stored, exported, and parsed back."""
    out: list[dict[str, Any]] = []
    for turn in turns:
        item: dict[str, Any] = {"role": turn.role, "text": turn.text}
        if turn.thinking:
            item["thinking"] = turn.thinking
        if turn.thinking_seconds is not None:
            item["thinking_seconds"] = turn.thinking_seconds
        if turn.notice:
            item["notice"] = turn.notice
        out.append(item)
    return out


def to_messages(turns: Iterable[Turn]) -> list[Message]:
    """What the model sees of a conversation: the text of each turn, without thinking or notices.

    Empty turns are skipped, and two turns in a row from one side (a reply that failed, a retried message) are
    joined, because several chat templates reject that.
    """
    messages: list[Message] = []
    for turn in turns:
        text = turn.text
        if not text.strip():
            continue
        if messages and messages[-1]["role"] == turn.role:
            messages[-1] = {"role": turn.role, "content": messages[-1]["content"] + "\n\n" + text}
        else:
            messages.append({"role": turn.role, "content": text})
    return messages


def bound_turns(turns: Sequence[Turn], *, max_messages: int, max_chars: int) -> list[Turn]:
    """The newest turns within both bounds (`services.trimming`'s rules: whole exchanges, oldest first)."""
    kept, _ = keep_newest(
        turns, size=lambda turn: turn.size, budget=max_chars, max_items=max_messages, can_start=_is_question
    )
    return kept


def _is_question(turn: Turn) -> bool:
    return turn.role == "user"
