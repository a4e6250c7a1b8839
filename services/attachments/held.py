"""What the model reads of earlier attachments, held in memory for the turns after, within one bound for all.

A conversation keeps each attachment's name and thumbnail (what the page shows, what a saved chat stores); its
content (an image's data URL, a document's text) is held here, under a key no one can guess, so that later turns
of the same conversation still send it to the model. All sessions together hold at most `max_bytes`, least
recently used out: a flood of uploads cannot grow the process's memory, and an attachment let go (or one from a
chat reopened after a reload) is said to the model to be no longer available.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from services.attachments.parts import Attachment, DocumentPart

__all__ = ["HeldAttachments"]


def _bytes(part: Attachment) -> int:
    return len(part.text) * 4 if isinstance(part, DocumentPart) else len(part.data_url) + len(part.thumbnail)


class HeldAttachments:
    """Attachments' content by key, in at most `max_bytes` (counting a document's characters as four bytes)."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._parts: OrderedDict[str, tuple[Attachment, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def hold(self, part: Attachment) -> str:
        """Keep `part` for later turns; returns its key ("" when it is larger than the whole bound)."""
        size = _bytes(part)
        if size > self.max_bytes:
            return ""
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._parts[key] = (part, size)
            self._used += size
            while self._used > self.max_bytes:
                _, (_, freed) = self._parts.popitem(last=False)
                self._used -= freed
        return key

    def get(self, key: str) -> Attachment | None:
        """The part under `key`, or None once it has been let go (or was never held here)."""
        if not key:
            return None
        with self._lock:
            found = self._parts.get(key)
            if found is None:
                return None
            self._parts.move_to_end(key)
            return found[0]

    @property
    def used(self) -> int:
        return self._used
