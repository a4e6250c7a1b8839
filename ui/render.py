"""The Chatbot's value, built from the app's own turns: the only thing the page's chat ever displays.

The events send it ready-made (`postprocess=False`): Gradio would otherwise run `Chatbot.postprocess` on a worker
thread for every streamed update. Every text goes through `safe_markdown` (images become links, raw HTML shows as
text), whoever wrote it; a reply still streaming goes through a `MarkdownStream` of its own, which redoes only the
end that each update may change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from services.chat import Reply
from services.conversation import Turn
from services.markdown import MarkdownStream, safe_markdown

__all__ = ["ChatMessage", "live_reply", "render_turns"]

ChatMessage = dict[str, Any]


class _LiveTexts:
    """The `MarkdownStream`s of the texts streaming now, found by the text they have rendered so far.

    Each update brings a reply's whole text again; the stream whose last text it extends renders it, so that the
    work over a reply is linear, not quadratic. Texts are told apart by their start; at most `size` streams are
    kept (the least recently used goes), and a text no stream extends gets a new one. Output never depends on
    which stream renders a text: each returns `safe_markdown(text)`.
    """

    def __init__(self, size: int = 64, key: int = 64) -> None:
        self._size, self._key = size, key
        self._streams: OrderedDict[str, list[MarkdownStream]] = OrderedDict()
        self._count = 0

    def render(self, text: str) -> str:
        if len(text) < self._key:
            return safe_markdown(text)  # short: as cheap rendered whole
        key = text[: self._key]
        streams = self._streams.setdefault(key, [])
        self._streams.move_to_end(key)
        fits = [stream for stream in streams if text.startswith(stream.text)]
        if fits:
            stream = max(fits, key=lambda candidate: len(candidate.text))
        else:
            stream = MarkdownStream()
            streams.append(stream)
            self._count += 1
            while self._count > self._size:
                oldest_key, oldest = next(iter(self._streams.items()))
                oldest.pop(0)
                self._count -= 1
                if not oldest:
                    del self._streams[oldest_key]
        return stream.render(text)


_LIVE = _LiveTexts()


def _message(role: str, text: str, metadata: dict[str, Any] | None = None, *, live: bool = False) -> ChatMessage:
    # The shape Chatbot.postprocess gives (gradio 6.31): content as a list of text blocks, which the page shows
    # as written (a plain string would go through inspect.cleandoc, which strips pasted code's indentation).
    return {
        "role": role,
        "metadata": metadata,
        "content": [{"type": "text", "text": _LIVE.render(text) if live else safe_markdown(text)}],
        "options": None,
    }


def _assistant(
    text: str, thinking: str, seconds: float | None, notice: str, *, thinking_now: bool, live: bool = False
) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if thinking:
        metadata: dict[str, Any] = {"title": "Thinking", "status": "pending" if thinking_now else "done"}
        if seconds is not None:
            metadata["duration"] = seconds
        out.append(_message("assistant", thinking, metadata, live=live))
    if notice:
        text = (text + "\n\n" if text else "") + "> ⚠️ " + " ".join(notice.split())
    if text or not thinking:
        out.append(_message("assistant", text, live=live))
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
    return _assistant(
        reply.text, reply.thinking, reply.thinking_seconds, "", thinking_now=reply.thinking_now, live=True
    )
