"""A tool call's outcome as the chat sends it back to the model and shows it: bounded text, masked, timed.

A tool server is untrusted, and so is what it answers. Its content parts become plain text: text as it is, an
image, audio or resource described in one line (never fetched, nor its data kept). The text is cut to
MAX_TOOL_RESULT_CHARS, with a notice, before any other work on it, and masked of the Space's secrets and the
visitor's token; hashes and ids stay readable, since a tool's answer may rightly hold them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from services.redact import Scrubber
from services.text import clean

__all__ = ["MASK_MARGIN", "ToolOutcome", "ToolResult", "masked_head", "render"]

# "ok": the tool answered; "error": it reported an error, or its server failed; "timeout": no answer within
# TOOL_TIMEOUT; "unknown_tool" and "bad_arguments": the model's call was wrong (it may correct it);
# "unavailable": the tool's server cannot be reached now.
ToolOutcome = Literal["ok", "error", "timeout", "unknown_tool", "bad_arguments", "unavailable"]
_LINE = 200
# Characters read past a cut so that a secret across it is masked whole (the longest form of a secret the
# scrubber knows, its hex, is twice the secret's length).
MASK_MARGIN = 1_024


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave: `text` for the model and the page, `outcome`, `duration` in seconds."""

    name: str
    text: str
    outcome: ToolOutcome
    duration: float
    truncated: bool = False
    server: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome != "ok"

    def message(self, tool_call_id: str) -> dict[str, str]:
        """The `{"role": "tool", ...}` message that answers the model's call `tool_call_id`."""
        return {"role": "tool", "tool_call_id": tool_call_id, "content": self.text}


def _short(text: str) -> str:
    line = " ".join(clean(text[: _LINE * 4]).split())
    return line if len(line) <= _LINE else line[: _LINE - 1] + "…"


def _size(base64_data: str) -> str:
    padding = len(base64_data) - len(base64_data.rstrip("="))
    return f"{len(base64_data) * 3 // 4 - padding:,} bytes"


def _part(block: ContentBlock) -> str:
    """One content part as text: text as it is; anything else in one line that says what it is."""
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent):
        return f"[image: {_short(block.mimeType)}, {_size(block.data)}, not shown]"
    if isinstance(block, AudioContent):
        return f"[audio: {_short(block.mimeType)}, {_size(block.data)}, not played]"
    if isinstance(block, ResourceLink):
        return f"[resource link: {_short(block.name)} <{_short(str(block.uri))}>, not fetched]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        uri = _short(str(resource.uri))
        if isinstance(resource, TextResourceContents):
            return f"[resource: {uri}]\n{resource.text}"
        if isinstance(resource, BlobResourceContents):
            return f"[resource: {uri}, {_short(resource.mimeType or 'binary')}, {_size(resource.blob)}]"
    return f"[content of type {_short(str(getattr(block, 'type', '?')))}]"


def masked_head(text: str, *, limit: int, scrubber: Scrubber, extra: tuple[str | None, ...] = ()) -> tuple[str, bool]:
    """(the first `limit` characters of `text` once masked of the secrets, whether it was cut).

    The masker reads `MASK_MARGIN` characters past the cut, so that a secret across it is masked whole; where a
    secret runs past even that, its start is held back, never shown. The work is bounded by `limit`.
    """
    masker = scrubber.masker(*extra)
    if len(text) <= limit:
        return masker.feed(text) + masker.flush(), False
    return masker.feed(text[: limit + MASK_MARGIN])[:limit], True


def render(
    result: CallToolResult, *, limit: int, scrubber: Scrubber, extra: tuple[str | None, ...] = ()
) -> tuple[str, bool]:
    """(the text of a tool's answer, at most `limit` characters plus a notice, masked; whether it was cut)."""
    pieces: list[str] = []
    kept = total = 0
    for number, block in enumerate(result.content):
        piece = ("\n" if number else "") + _part(block)
        total += len(piece)
        if kept < limit + MASK_MARGIN:
            pieces.append(piece[: limit + MASK_MARGIN - kept])
            kept += len(pieces[-1])
    if not result.content and result.structuredContent is not None:
        # An answer in structured form only; its size is already bounded by the transport's cap.
        piece = json.dumps(result.structuredContent, ensure_ascii=False, default=str)
        pieces, total = [piece[: limit + MASK_MARGIN]], len(piece)
    # NUL and lone surrogates go before masking: a NUL inside a secret would otherwise keep it from matching.
    text, cut = masked_head(clean("".join(pieces)), limit=limit, scrubber=scrubber, extra=extra)
    if cut:
        text += f"\n\n[Result cut: the first {limit:,} of {total:,} characters.]"
    if result.isError:
        text = f"The tool reported an error: {text}" if text else "The tool reported an error."
    return text, cut
