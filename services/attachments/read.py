"""One uploaded file into the app's own type: what it is decided by its bytes, refused with a sentence otherwise.

`read_attachment` is synchronous and CPU-bound: the app runs it in a worker process (`pool.AttachmentReader`),
and the tests and the bench call it directly. `to_wire` and `from_wire` carry its result between the two as JSON
(never pickle: what the worker sends back is checked, not executed).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePath
from typing import Any

from services.attachments.documents import is_pdf, read_pdf, read_text
from services.attachments.images import read_image, sniff_image
from services.attachments.parts import Attachment, DocumentPart, ImagePart, Limits, display_name
from services.errors import AttachmentError

__all__ = ["from_wire", "read_attachment", "size_text", "to_wire"]

_HEAD = 4096
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".gif"})
_SVG = re.compile(rb"<svg[\s>]", re.IGNORECASE)
# What an SVG file starts with (an XML declaration, a doctype, a comment, or the element itself); a web page that
# holds an inline <svg> starts otherwise, and is read as text.
_SVG_STARTS = (b"<svg", b"<?xml", b"<!doctype svg", b"<!--")
# The brands of HEIC and AVIF files (ISO media files whose box type "ftyp" is at byte 4).
_ISO_MEDIA_IMAGES = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
_OTHER_IMAGE = "convert it to JPEG or PNG and attach that"


def read_attachment(path: str | os.PathLike[str], *, name: str, limits: Limits) -> Attachment:
    """The file at `path` (uploaded as `name`) as an `ImagePart` or a `DocumentPart`.

    Its kind comes from its bytes: a PNG, JPEG, WebP or GIF image, a PDF, else text (UTF-8, or UTF-8 or UTF-16
    with a byte-order mark). The name only adds refusals: a file named as an image (or a PDF) that is not one is
    refused, not read as text. Raises `AttachmentError`, whose sentence names the file and says what to do.
    """
    shown = display_name(name)
    data = _read_bounded(path, name=shown, max_bytes=limits.max_bytes)
    head = data[:_HEAD]
    kind = sniff_image(head)
    if kind is not None:
        return read_image(data, name=shown, kind=kind, limits=limits)
    if is_pdf(head):
        return read_pdf(data, name=shown, limits=limits)
    _refuse_known(head, name=shown)
    return read_text(data, name=shown, limits=limits)


def size_text(size: int) -> str:
    """Bytes for people: "10 MB", "4.2 MB", "512 KB" (binary units, as the settings are)."""
    if size >= 1_048_576:
        return f"{size / 1_048_576:.3g} MB"
    return f"{max(1, round(size / 1024))} KB"


def _read_bounded(path: str | os.PathLike[str], *, name: str, max_bytes: int) -> bytes:
    """The file's bytes, refused before reading when it is larger than `max_bytes` (and never more read)."""
    try:
        # Checked before opening: opening a pipe would wait for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AttachmentError(name, f"{name} is not a file: attach a file.")
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise _too_big(name, size, max_bytes)
            data = file.read(max_bytes + 1)
    except OSError:
        raise AttachmentError(name, f"{name} could not be opened: attach it again.") from None
    if len(data) > max_bytes:
        raise _too_big(name, len(data), max_bytes)
    if not data:
        raise AttachmentError(name, f"{name} is empty: attach a file with something in it.")
    return data


def _too_big(name: str, size: int, max_bytes: int) -> AttachmentError:
    return AttachmentError(
        name,
        f"{name} is {size_text(size)}; files of at most {size_text(max_bytes)} are accepted: make it smaller "
        "(or send a part of it) and attach it again.",
    )


def _refuse_known(head: bytes, *, name: str) -> None:
    """Refuse, with what to do instead, the kinds people attach that are not read, and the files whose name
    promises an image or a PDF that their bytes are not (an SVG or a web page named photo.png)."""
    suffix = PurePath(name).suffix.lower()
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_MEDIA_IMAGES:
        raise AttachmentError(name, f"{name} is a HEIC or AVIF image, which is not accepted: {_OTHER_IMAGE}.")
    if head.startswith((b"II*\x00", b"MM\x00*")) or (head[:2] == b"BM" and head[6:10] == b"\x00" * 4):
        raise AttachmentError(name, f"{name} is a TIFF or BMP image, which is not accepted: {_OTHER_IMAGE}.")
    if suffix in {".svg", ".svgz"} or (start[:16].lower().startswith(_SVG_STARTS) and _SVG.search(head)):
        raise AttachmentError(name, f"{name} is an SVG image, which is not accepted: {_OTHER_IMAGE}.")
    if head.startswith(b"PK\x03\x04"):
        raise AttachmentError(
            name,
            f"{name} is a ZIP archive (Word, Excel, PowerPoint and OpenDocument files are too), which is not "
            "read: save it as PDF or plain text and attach that.",
        )
    if suffix in _IMAGE_SUFFIXES:
        raise AttachmentError(
            name,
            f"{name} is not a PNG, JPEG, WebP or GIF image, whatever its name says: attach the image itself.",
        )
    if suffix == ".pdf":
        raise AttachmentError(name, f"{name} is not a PDF, whatever its name says: attach the PDF itself.")


# THE WIRE: the worker's answer as JSON, checked field by field on the way in.


def to_wire(part: Attachment) -> dict[str, Any]:
    if isinstance(part, ImagePart):
        return {
            "image": {
                "name": part.name,
                "media_type": part.media_type,
                "data_url": part.data_url,
                "width": part.width,
                "height": part.height,
                "thumbnail": part.thumbnail,
            }
        }
    return {
        "document": {
            "name": part.name,
            "kind": part.kind,
            "text": part.text,
            "notice": part.notice,
            "pages_read": part.pages_read,
            "pages_total": part.pages_total,
        }
    }


def from_wire(message: object) -> Attachment:
    """The part a worker sent; raises ValueError when it is not one `to_wire` could have written."""
    if not isinstance(message, dict) or len(message) != 1:
        raise ValueError("expected one part")
    ((tag, fields),) = message.items()
    if not isinstance(fields, dict):
        raise ValueError("expected the part's fields")
    if tag == "image":
        media_type = fields.get("media_type")
        if media_type not in ("image/jpeg", "image/png"):
            raise ValueError("unexpected media type")
        data_url, thumbnail = _str(fields, "data_url"), _str(fields, "thumbnail")
        if not data_url.startswith(f"data:{media_type};base64,") or not thumbnail.startswith("data:image/webp;base64,"):
            raise ValueError("unexpected data URL")
        return ImagePart(
            name=_str(fields, "name"),
            media_type=media_type,
            data_url=data_url,
            width=_int(fields, "width"),
            height=_int(fields, "height"),
            thumbnail=thumbnail,
        )
    if tag == "document":
        kind = fields.get("kind")
        if kind not in ("text", "pdf"):
            raise ValueError("unexpected document kind")
        return DocumentPart(
            name=_str(fields, "name"),
            kind=kind,
            text=_str(fields, "text"),
            notice=_str(fields, "notice"),
            pages_read=_optional_int(fields, "pages_read"),
            pages_total=_optional_int(fields, "pages_total"),
        )
    raise ValueError("unexpected part")


def _str(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected text")
    return value


def _int(fields: dict[str, Any], key: str) -> int:
    value = fields.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: expected a whole number")
    return value


def _optional_int(fields: dict[str, Any], key: str) -> int | None:
    return None if fields.get(key) is None else _int(fields, key)
