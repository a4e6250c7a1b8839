"""The app's own conversation type, and the one parser that turns a client's conversation into it.

A conversation reaches the server from clients in several shapes: the `history` argument of the stateless chat
tool, a conversation kept in the visitor's browser, an imported JSON file. Each is hostile until parsed here into
`Turn`s: text and the few things the app itself produces (thinking, a notice, an attachment's name and thumbnail),
bounded in count and size before any other work. Anything else is refused with `ConversationError`; nothing a
client sends is rendered, stored or sent on as it arrived.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.attachments.parts import Attachment, display_name, message_content
from services.errors import ConversationError
from services.llm.base import Content, Message, join_contents
from services.text import clean
from services.trimming import keep_newest

__all__ = [
    "Attached",
    "Limits",
    "StepStatus",
    "ToolStep",
    "Turn",
    "bound_turns",
    "parse_turns",
    "to_messages",
    "total_chars",
    "turns_to_json",
]

TurnRole = Literal["user", "assistant"]
AttachedKind = Literal["image", "text", "pdf"]
# What a conversation may hold of one attachment: a thumbnail the app made (a small WebP data URL).
MAX_THUMBNAIL_CHARS = 16_384
_THUMBNAIL = re.compile(r"data:image/webp;base64,[A-Za-z0-9+/]+={0,2}")
MAX_ATTACHED = 20  # attachments one message may carry, from any client


@dataclass(frozen=True, slots=True)
class Attached:
    """A file a visitor sent with a message, as the conversation keeps it.

    `name` and `thumbnail` (an image's, a small data URL the app made) are what the page shows and a saved chat
    stores. What the model reads (an image's pixels, a document's text) is held apart, under `key`
    (`services.attachments.held`): a chat reopened after a reload, or one whose content was let go, has the name
    only, and the model is told so.
    """

    name: str
    kind: AttachedKind
    thumbnail: str = ""
    key: str = field(default="", compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.name) + len(self.thumbnail)


StepStatus = Literal["pending", "done", "failed"]
# What a saved step keeps of a tool call's arguments and result (the model got the whole result, up to
# MAX_TOOL_RESULT_CHARS): enough to read what happened, bounded in a browser's storage.
MAX_STEP_CHARS = 4_000


@dataclass(frozen=True, slots=True)
class ToolStep:
    """A tool the model called while it wrote a reply, as the page shows it: the tool, its arguments (JSON text),
    its result (text the app made safe: capped, masked), how long it took; pending while it runs."""

    tool: str
    arguments: str
    status: StepStatus = "pending"
    result: str = ""
    seconds: float | None = None

    @property
    def size(self) -> int:
        return len(self.tool) + len(self.arguments) + len(self.result)


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
    attachments: tuple[Attached, ...] = ()
    steps: tuple[ToolStep, ...] = ()

    @property
    def size(self) -> int:
        """Characters the turn takes where it is kept (a session, a browser's storage); the attachments' content,
        held apart, is counted where it is sent."""
        kept = sum(a.size for a in self.attachments) + sum(s.size for s in self.steps)
        return len(self.text) + len(self.thinking) + len(self.notice) + kept


@dataclass(frozen=True)
class Limits:
    """How big a client's conversation may be: in messages, and in characters of all of them together."""

    max_messages: int
    max_chars: int


# The fields a turn may carry, as the JSON of `turns_to_json`; `content` is accepted for `text`, as the OpenAI and
# Gradio formats name it.
_FIELDS = {"role", "text", "content", "thinking", "thinking_seconds", "notice", "attachments", "steps"}
_STEP_FIELDS = {"tool", "arguments", "status", "result", "seconds"}
_ATTACHED_FIELDS = {"name", "kind", "thumbnail"}


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
        if any(name in item for name in ("thinking", "thinking_seconds", "notice", "steps")):
            raise ConversationError(
                "history", f"message {number}: a user message carries only its text and attachments."
            )
        return Turn("user", text, attachments=_parse_attached(item.get("attachments", []), number))
    if "attachments" in item:
        raise ConversationError("history", f"message {number}: only a user message carries attachments.")
    steps = _parse_steps(item.get("steps", []), number)
    seconds = item.get("thinking_seconds")
    if seconds is not None and not _is_seconds(seconds):
        raise ConversationError("history", f"message {number}: 'thinking_seconds' must be a number of seconds.")
    return Turn(
        "assistant",
        text,
        thinking=_field_text(item, "thinking", number),
        thinking_seconds=None if seconds is None else float(seconds),
        notice=_field_text(item, "notice", number),
        steps=steps,
    )


def _parse_attached(value: object, number: int) -> tuple[Attached, ...]:
    """A user message's attachments as a client sends them back: names, kinds, and thumbnails that are a small
    image's data URL and nothing else (the page shows them)."""
    if not isinstance(value, list) or len(value) > MAX_ATTACHED:
        raise ConversationError("history", f"message {number}: 'attachments' must be a list of at most {MAX_ATTACHED}.")
    found: list[Attached] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - _ATTACHED_FIELDS or not {"name", "kind"} <= set(item):
            raise ConversationError("history", f"message {number}: an attachment has a name, a kind and a thumbnail.")
        name, kind, thumbnail = item["name"], item["kind"], item.get("thumbnail", "")
        if not isinstance(name, str) or kind not in ("image", "text", "pdf"):
            raise ConversationError("history", f"message {number}: an attachment's name or kind is not one of ours.")
        if not isinstance(thumbnail, str) or len(thumbnail) > MAX_THUMBNAIL_CHARS:
            raise ConversationError("history", f"message {number}: an attachment's thumbnail is not one of ours.")
        if thumbnail and (kind != "image" or not _THUMBNAIL.fullmatch(thumbnail)):
            raise ConversationError("history", f"message {number}: an attachment's thumbnail is not one of ours.")
        found.append(Attached(display_name(name), kind, thumbnail))
    return tuple(found)


def _parse_steps(value: object, number: int) -> tuple[ToolStep, ...]:
    """An answer's tool steps as a client sends them back: a tool's name, its arguments and result as text within
    MAX_STEP_CHARS, a status, a duration."""
    if not isinstance(value, list) or len(value) > MAX_ATTACHED * 8:
        raise ConversationError("history", f"message {number}: 'steps' must be a short list.")
    steps = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - _STEP_FIELDS or "tool" not in item:
            raise ConversationError("history", f"message {number}: a step has a tool, arguments, a status, a result.")
        texts = [item.get(name, "") for name in ("tool", "arguments", "result")]
        if not all(isinstance(text, str) and len(text) <= MAX_STEP_CHARS for text in texts):
            raise ConversationError("history", f"message {number}: a step's texts are not ones the app keeps.")
        status, seconds = item.get("status", "done"), item.get("seconds")
        if status not in ("done", "failed") or (seconds is not None and not _is_seconds(seconds)):
            raise ConversationError("history", f"message {number}: a step's status or duration is not one of ours.")
        tool, arguments, result = (clean(text) for text in texts)
        steps.append(ToolStep(tool, arguments, status, result, None if seconds is None else float(seconds)))
    return tuple(steps)


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
        if turn.steps:
            item["steps"] = [
                {
                    "tool": step.tool,
                    "arguments": step.arguments[:MAX_STEP_CHARS],
                    "status": "failed" if step.status == "failed" else "done",
                    "result": step.result[:MAX_STEP_CHARS],
                    **({"seconds": step.seconds} if step.seconds is not None else {}),
                }
                for step in turn.steps
            ]
        if turn.attachments:
            item["attachments"] = [
                {"name": a.name, "kind": a.kind, **({"thumbnail": a.thumbnail} if a.thumbnail else {})}
                for a in turn.attachments
            ]
        out.append(item)
    return out


def to_messages(turns: Iterable[Turn], *, held: Callable[[str], Attachment | None] | None = None) -> list[Message]:
    """What the model sees of a conversation: each turn's text and what it has of their attachments (`held` finds
    an attachment's content by key), without thinking or notices.

    An attachment whose content is gone (a chat reopened after a reload, or let go to keep memory bounded) is
    named in a line the app writes, so that the model knows it was there. Empty turns are skipped, and two turns
    in a row from one side (a reply that failed, a retried message) are joined, because several chat templates
    reject that.
    """
    messages: list[Message] = []
    for turn in turns:
        content = _content(turn, held)
        if not content:
            continue
        if messages and messages[-1]["role"] == turn.role:
            messages[-1] = {"role": turn.role, "content": join_contents(messages[-1]["content"], content)}
        else:
            messages.append({"role": turn.role, "content": content})
    return messages


def _content(turn: Turn, held: Callable[[str], Attachment | None] | None) -> Content:
    if not turn.attachments:
        return turn.text if turn.text.strip() else ""
    parts: list[Attachment] = []
    gone: list[str] = []
    for attached in turn.attachments:
        part = held(attached.key) if held is not None else None
        if part is None:
            gone.append(attached.name)
        else:
            parts.append(part)
    text = turn.text
    if gone:
        names = ", ".join(gone)
        text = f"[Attached to this message: {names}; the contents are no longer available.]\n\n{text}".strip()
    return message_content(text, parts)


def bound_turns(turns: Sequence[Turn], *, max_messages: int, max_chars: int) -> list[Turn]:
    """The newest turns within both bounds (`services.trimming`'s rules: whole exchanges, oldest first)."""
    kept, _ = keep_newest(
        turns, size=lambda turn: turn.size, budget=max_chars, max_items=max_messages, can_start=_is_question
    )
    return kept


def _is_question(turn: Turn) -> bool:
    return turn.role == "user"
