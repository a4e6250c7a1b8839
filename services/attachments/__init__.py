"""Attachments: images and documents a visitor sends with a message, made safe and readable for the model.

`AttachmentReader` reads uploaded files off the event loop, in worker processes under a time bound, into the
app's own types: an `ImagePart` (re-encoded without metadata, as a data URL, with a thumbnail) or a
`DocumentPart` (its text). `message_content` builds what an OpenAI-compatible server receives, `format_documents`
and `document_chars` the documents' text and its size. `read_attachment` is the synchronous reading itself.
"""

from __future__ import annotations

from services.attachments.parts import (
    Attachment,
    DocumentPart,
    ImagePart,
    Limits,
    display_name,
    document_chars,
    format_documents,
    image_content_part,
    message_content,
)
from services.attachments.pool import AttachmentReader, Upload
from services.attachments.read import read_attachment

__all__ = [
    "Attachment",
    "AttachmentReader",
    "DocumentPart",
    "ImagePart",
    "Limits",
    "Upload",
    "display_name",
    "document_chars",
    "format_documents",
    "image_content_part",
    "message_content",
    "read_attachment",
]
