"""Thinking that arrives inside the answer text, as `<think>...</think>`, split from the answer while it streams.

Servers without a reasoning parser (vLLM without `--reasoning-parser`, llama.cpp, some providers) stream a
reasoning model's thinking inside `content`, between these tags. Only a tag at the very start of the reply opens
thinking: an answer that merely mentions `<think>` later on stays text. Tags split across pieces are handled.
"""

from __future__ import annotations

__all__ = ["ThinkSplitter"]

OPEN = "<think>"
CLOSE = "</think>"


class ThinkSplitter:
    """Feed the content pieces in order; each call returns the (answer, thinking) text it can release."""

    def __init__(self) -> None:
        self._state = "start"  # "start": nothing seen yet; "thinking"; "closed": just after </think>; "answer"
        self._held = ""  # text that may be the beginning of a tag

    def feed(self, piece: str) -> tuple[str, str]:
        if self._state == "answer":
            return piece, ""
        if self._state == "closed":
            # The blank lines models put after </think> belong to neither side, in whatever pieces they come.
            rest = piece.lstrip("\n")
            if rest:
                self._state = "answer"
            return rest, ""
        text = self._held + piece
        self._held = ""
        if self._state == "start":
            stripped = text.lstrip()
            if not stripped:
                self._held = text
                return "", ""
            if stripped.startswith(OPEN):
                self._state = "thinking"
                text = stripped[len(OPEN) :]
            elif OPEN.startswith(stripped):
                self._held = text  # "<thi": wait for the rest
                return "", ""
            else:
                self._state = "answer"
                return text, ""
        # Thinking: release everything up to the closing tag, holding back what may be its beginning.
        end = text.find(CLOSE)
        if end >= 0:
            self._state = "closed"
            answer, _ = self.feed(text[end + len(CLOSE) :])
            return answer, text[:end]
        keep = _partial_suffix(text, CLOSE)
        self._held = text[len(text) - keep :] if keep else ""
        return "", text[: len(text) - keep]

    def flush(self) -> tuple[str, str]:
        """At the end of the reply: whatever was held back, as the side it was on."""
        held, self._held = self._held, ""
        if self._state == "thinking":
            return "", held
        return (held if self._state != "closed" else held.lstrip("\n")), ""


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a beginning of `tag` (0 when none)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
