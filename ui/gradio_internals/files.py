"""Files and Gradio's upload folder: what a caller attached, as uploads of this Space, and thumbnails to show.

Whatever path a caller names is checked to be a file that Gradio's upload route wrote (its upload folder): a path
elsewhere (`/etc/passwd`), a link out of it, or a URL (the Space fetches nothing a caller names) is refused before
any reading. Thumbnails are the app's own small WebP images (`services.attachments`), written once into that
folder under the hash of their bytes, so that the Chatbot shows them through Gradio's file route.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from gradio.utils import get_upload_folder

from services.attachments import Upload
from services.errors import ValidationError

__all__ = ["thumbnail_file", "uploads"]

_THUMBNAIL_PREFIX = "data:image/webp;base64,"
# More than any client sends in one message: MAX_ATTACHMENTS (at most 100) refuses past its own count, later.
_MAX_NAMED = 100


def _upload_root() -> Path:
    return Path(get_upload_folder()).resolve()


def _one(item: object) -> Upload:
    if isinstance(item, str):
        path, name = item, Path(item).name
    elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
        path = item["path"]
        orig = item.get("orig_name")
        name = orig if isinstance(orig, str) and orig else Path(path).name
    else:
        raise ValidationError("files", "each file must be one uploaded to this Space (gradio_client.handle_file).")
    if path.startswith(("http://", "https://", "data:")):
        raise ValidationError(
            "files",
            "this Space fetches no URL: upload the file (gradio_client.handle_file does), or over MCP send "
            "it as a data: URL.",
        )
    resolved = Path(path).resolve()
    root = _upload_root()
    if root not in resolved.parents or not resolved.is_file():
        raise ValidationError(
            "files", f"{Path(path).name[:80]!r} is not a file uploaded to this Space: upload it first."
        )
    return Upload(str(resolved), name)


def uploads(value: object) -> tuple[Upload, ...]:
    """The files a caller attached (the page's paths, or the API's FileData objects), each checked to be an upload
    of this Space; raises `ValidationError` naming what is wrong."""
    if value is None or value == []:
        return ()
    items = value if isinstance(value, list) else [value]
    if len(items) > _MAX_NAMED:
        raise ValidationError("files", f"at most {_MAX_NAMED} files may be named in one call.")
    return tuple(_one(item) for item in items)


def thumbnail_file(data_url: str) -> str | None:
    """A file for a thumbnail the app made (a WebP data URL), in Gradio's upload folder; None for anything else."""
    if not data_url.startswith(_THUMBNAIL_PREFIX):
        return None
    try:
        data = base64.b64decode(data_url[len(_THUMBNAIL_PREFIX) :], validate=True)
    except (ValueError, binascii.Error):
        return None
    folder = _upload_root() / "thumbnails"
    path = folder / f"{hashlib.sha256(data).hexdigest()}.webp"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(path)
    return str(path)
