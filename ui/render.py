"""The Chatbot's value, built from the app's own turns: the only thing the page's chat ever displays.

The events send it ready-made (`postprocess=False`): Gradio would otherwise run `Chatbot.postprocess` on a worker
thread for every streamed update. Every text goes through `safe_markdown` (images become links, raw HTML shows as
text), whoever wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.chat import Reply
from services.conversation import Turn
from services.markdown import safe_markdown

__all__ = ["ChatMessage", "live_reply", "render_turns"]

ChatMessage = dict[str, Any]


def _message(role: str, text: str, metadata: dict[str, Any] | None = None) -> ChatMessage:
    # The shape Chatbot.postprocess gives (gradio 6.31): content as a list of text blocks, which the page shows
    # as written (a plain string would go through inspect.cleandoc, which strips pasted code's indentation).
    return {
        "role": role,
        "metadata": metadata,
        "content": [{"type": "text", "text": safe_markdown(text)}],
        "options": None,
    }


def _assistant(
    text: str, thinking: str, seconds: float | None, notice: str, *, thinking_now: bool
) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if thinking:
        metadata: dict[str, Any] = {"title": "Thinking", "status": "pending" if thinking_now else "done"}
        if seconds is not None:
            metadata["duration"] = seconds
        out.append(_message("assistant", thinking, metadata))
    if notice:
        text = (text + "\n\n" if text else "") + "> ⚠️ " + " ".join(notice.split())
    if text or not thinking:
        out.append(_message("assistant", text))
    return out


def render_turns(turns: Iterable[Turn]) -> list[ChatMessage]:
    """Chatbot messages for kept turns: a user message, or an assistant's thinking (collapsed), answer, notice."""
    out: list[ChatMessage] = []
    for turn in turns:
        if turn.role == "user":
            out.append(_message("user", turn.text))
        else:
            out += _assistant(turn.text, turn.thinking, turn.thinking_seconds, turn.notice, thinking_now=False)
    return out


def live_reply(reply: Reply) -> list[ChatMessage]:
    """Chatbot messages for a reply still streaming: its thinking open while the model thinks."""
    return _assistant(reply.text, reply.thinking, reply.thinking_seconds, "", thinking_now=reply.thinking_now)
