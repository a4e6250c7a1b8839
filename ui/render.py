"""The Chatbot's value, built from the app's own turns: the only thing the page's chat ever displays.

The events send it ready-made (`postprocess=False`): Gradio would otherwise run `Chatbot.postprocess` on a worker
thread for every streamed update. Every text goes through `safe_markdown` (images become links, raw HTML shows as
text), whoever wrote it; a reply still streaming goes through a `MarkdownStream` of its own, which redoes only the
end that each update may change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.chat import Reply
from services.conversation import Attached, ToolStep, Turn
from services.markdown import MarkdownStream, safe_markdown
from ui.gradio_internals.chatbot import ChatMessage, image_block, text_message
from ui.gradio_internals.files import thumbnail_file

__all__ = ["ChatMessage", "LiveMarkdown", "live_reply", "render_turns"]


@dataclass
class LiveMarkdown:
    """A streaming reply's own renderers: its thinking and its answer each grow with every update, and a
    `MarkdownStream` redoes only the end that an update may change, so that a reply costs linear time."""

    thinking: MarkdownStream = field(default_factory=MarkdownStream)
    answer: MarkdownStream = field(default_factory=MarkdownStream)


def _message(
    role: str, text: str, metadata: dict[str, Any] | None = None, *, render: Callable[[str], str] = safe_markdown
) -> ChatMessage:
    return text_message(role, render(text), metadata)


def _fenced(text: str) -> str:
    """`text` as a code block whatever it holds: its fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _step(step: ToolStep) -> ChatMessage:
    """A tool call, collapsed apart from the answer: the tool, its arguments, its result (text as it came)."""
    metadata: dict[str, Any] = {"title": f"🔧 {step.tool}", "status": "pending" if step.status == "pending" else "done"}
    if step.seconds is not None:
        metadata["duration"] = step.seconds
    body = f"Arguments:\n\n{_fenced(step.arguments or '{}')}"
    if step.status != "pending":
        label = "Failed" if step.status == "failed" else "Result"
        body += f"\n\n{label}:\n\n{_fenced(step.result)}"
    return _message("assistant", body, metadata)


def _assistant(
    text: str,
    thinking: str,
    seconds: float | None,
    notice: str,
    *,
    thinking_now: bool,
    steps: tuple[ToolStep, ...] = (),
    live: LiveMarkdown | None = None,
) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if thinking:
        metadata: dict[str, Any] = {"title": "Thinking", "status": "pending" if thinking_now else "done"}
        if seconds is not None:
            metadata["duration"] = seconds
        out.append(_message("assistant", thinking, metadata, render=live.thinking.render if live else safe_markdown))
    out += [_step(step) for step in steps]
    if notice:
        text = (text + "\n\n" if text else "") + "> ⚠️ " + " ".join(notice.split())
    if text or not (thinking or steps):
        out.append(_message("assistant", text, render=live.answer.render if live else safe_markdown))
    return out


_KIND_MARK = {"image": "🖼️", "pdf": "📄", "text": "📄"}


def _user(turn: Turn, kept: Callable[[Attached], bool] | None) -> ChatMessage:
    """A user message: its text, a line per attachment (the model no longer having one is said), then the
    images' thumbnails, which the app made."""
    lines = []
    for attached in turn.attachments:
        # Names are safe to show (services.attachments.display_name: no brackets, colons or backticks).
        line = f"{_KIND_MARK[attached.kind]} `{attached.name}`"
        if kept is not None and not kept(attached):
            line += " — no longer available to the model: attach it again to ask about it."
        lines.append(line)
    text = "\n\n".join([turn.text, *lines]) if turn.text else "\n\n".join(lines)
    message = _message("user", text)
    for attached in turn.attachments:
        path = thumbnail_file(attached.thumbnail) if attached.thumbnail else None
        if path is not None:
            message["content"].append(image_block(path, attached.name))
    return message


def render_turns(turns: Iterable[Turn], *, kept: Callable[[Attached], bool] | None = None) -> list[ChatMessage]:
    """Chatbot messages for kept turns: a user message (with its attachments; `kept` says whether the model still
    has one), or an assistant's thinking (collapsed), answer, notice."""
    out: list[ChatMessage] = []
    for turn in turns:
        if turn.role == "user":
            out.append(_user(turn, kept))
        else:
            out += _assistant(
                turn.text, turn.thinking, turn.thinking_seconds, turn.notice, thinking_now=False, steps=turn.steps
            )
    return out


def live_reply(reply: Reply, live: LiveMarkdown) -> list[ChatMessage]:
    """Chatbot messages for a reply still streaming (rendered by its own `live`): its thinking open while the
    model thinks."""
    return _assistant(
        reply.text,
        reply.thinking,
        reply.thinking_seconds,
        "",
        thinking_now=reply.thinking_now,
        steps=reply.steps,
        live=live,
    )
