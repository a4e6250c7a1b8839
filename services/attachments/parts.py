"""The app's own attachment types, the names shown for them, and what the model receives of them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from services.text import clean

if TYPE_CHECKING:
    # Types only: the attachment worker imports this module, and services.llm would bring the openai SDK into a
    # process that only reads files (a second of every worker's start).
    from services.config import Settings
    from services.llm.base import Content, ContentPart, ImageUrlPart

__all__ = [
    "MAX_NAME_CHARS",
    "Attachment",
    "DocumentPart",
    "ImagePart",
    "Limits",
    "display_name",
    "document_chars",
    "format_documents",
    "image_content_part",
    "message_content",
]

MAX_NAME_CHARS = 80
# Punctuation a file name keeps as it is; any other symbol becomes "_". None of these can end the quoted name in
# `<file name="...">`, start HTML, or make a Markdown link or image (no brackets, no colon), and none is a path
# separator.
_NAME_PUNCTUATION = frozenset(" ._-()+,#@!~'")


@dataclass(frozen=True)
class ImagePart:
    """An image made safe to send: re-encoded from its pixels alone (no metadata), upright, at most 2048 px on
    its long side, as a `data:` URL; `thumbnail` is a data URL of a few KB for saved chats."""

    name: str
    media_type: Literal["image/jpeg", "image/png"]
    data_url: str
    width: int
    height: int
    thumbnail: str


@dataclass(frozen=True)
class DocumentPart:
    """A document's text as the model reads it. `notice` says what was left out and why; empty when whole.
    `pages_read` and `pages_total` are set for PDFs."""

    name: str
    kind: Literal["text", "pdf"]
    text: str
    notice: str = ""
    pages_read: int | None = None
    pages_total: int | None = None

    @property
    def cut(self) -> bool:
        return bool(self.notice)


Attachment = ImagePart | DocumentPart


@dataclass(frozen=True)
class Limits:
    """What reading one file may take: bytes, document characters, PDF pages, image pixels and sides, and the
    seconds after which a PDF's remaining pages are left out (the reader's hard time bound is twice that)."""

    max_bytes: int = 10_485_760
    max_document_chars: int = 50_000
    max_pdf_pages: int = 100
    # Well under Pillow's own MAX_IMAGE_PIXELS (about 89 million), and above a 48-megapixel phone photo.
    max_image_pixels: int = 50_000_000
    max_image_side: int = 2048
    soft_seconds: float = 7.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_bytes=settings.max_attachment_bytes,
            max_document_chars=settings.max_document_chars,
            max_pdf_pages=settings.max_pdf_pages,
            soft_seconds=settings.attachment_timeout / 2,
        )


def display_name(name: str) -> str:
    """A client's file name made safe to show and to quote: the last path segment, no control or format
    characters (bidirectional overrides included), symbols other than `_NAME_PUNCTUATION` replaced by "_",
    spaces collapsed, at most `MAX_NAME_CHARS` characters with the extension kept (a "~" marks the cut);
    "attachment" when nothing but dots is left. Idempotent."""
    base = re.split(r"[/\\]", clean(name[-4096:]))[-1]
    chars = []
    for char in base:
        category = unicodedata.category(char)[0]
        if category == "C":
            continue
        if category == "Z":
            chars.append(" ")
        elif category in "LNM" or char in _NAME_PUNCTUATION:
            chars.append(char)
        else:
            chars.append("_")
    shown = " ".join("".join(chars).split())
    if not shown.strip("."):
        return "attachment"
    if len(shown) > MAX_NAME_CHARS:
        stem, dot, suffix = shown.rpartition(".")
        if dot and stem and len(suffix) <= 10:
            shown = f"{stem[: MAX_NAME_CHARS - len(suffix) - 2].rstrip()}~.{suffix}"
        else:
            shown = f"{shown[: MAX_NAME_CHARS - 1].rstrip()}~"
    return shown


def image_content_part(image: ImagePart) -> ImageUrlPart:
    """The OpenAI-compatible content part that carries the image to a vision model."""
    return {"type": "image_url", "image_url": {"url": image.data_url}}


# "<file", "</file", "< / file": anything a model could read as the document block's own tag. A single character
# class before "file" keeps the scan linear on hostile text (no nested quantifiers to backtrack through).
_FILE_TAG = re.compile(r"<(?=[\s/]*file)", re.IGNORECASE)


def format_documents(documents: Sequence[DocumentPart]) -> str:
    """The documents as the model reads them: one `<file name="...">` block each, in order.

    The name is shown through `display_name` (no quote or angle bracket survives it), the notice of a cut goes in
    a `note` attribute the app writes, and a document's own text cannot open or close a block: its `<file` and
    `</file` tags are escaped as `&lt;file`.
    """
    blocks = []
    for document in documents:
        note = f' note="{_attribute(document.notice)}"' if document.notice else ""
        text = _FILE_TAG.sub("&lt;", document.text)
        blocks.append(f'<file name="{display_name(document.name)}"{note}>\n{text}\n</file>')
    return "\n\n".join(blocks)


def document_chars(documents: Sequence[DocumentPart]) -> int:
    """Characters the documents add to a message (`format_documents`, with the blank line before the text), to
    count against MAX_HISTORY_CHARS."""
    return len(format_documents(documents)) + 2 if documents else 0


def message_content(text: str, attachments: Sequence[Attachment]) -> Content:
    """A user message's content for an OpenAI-compatible server: the documents' blocks, a blank line and the text;
    with images, a list of parts: that text first (when there is any), then one `image_url` part per image."""
    documents = [part for part in attachments if isinstance(part, DocumentPart)]
    images = [part for part in attachments if isinstance(part, ImagePart)]
    body = f"{format_documents(documents)}\n\n{text}" if documents else text
    if not images:
        return body
    # No empty text part: some servers refuse one.
    text_part: list[ContentPart] = [{"type": "text", "text": body}] if body else []
    return [*text_part, *(image_content_part(image) for image in images)]


def _attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
