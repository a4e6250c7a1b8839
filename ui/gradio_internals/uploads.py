"""Gradio's upload cache bounded in total bytes, oldest files first.

Every file sent to `/gradio_api/upload` is kept in Gradio's cache folder (`GRADIO_TEMP_DIR`, else the system's
temporary folder + "gradio"), until `delete_cache` removes what is older than its age (an hour here). Uploads
nobody uses (200 of 1 MB a second) would fill the disk in between. After each upload, `UploadCacheBound` has the
folder measured on a worker thread (one sweep at a time) and, past `max_bytes`, deletes the oldest files until it
is under. A file an event is about to read may go first only when the cache is full, that is, under a flood.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import anyio.to_thread
from gradio.utils import get_upload_folder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.edge._http import route_path
from ui.gradio_internals.routes import UPLOAD_PATH

__all__ = ["UploadCacheBound", "trim_folder"]

logger = logging.getLogger(__name__)


def trim_folder(folder: Path, max_bytes: int) -> int:
    """Delete the oldest files under `folder` until what is left holds at most `max_bytes`; returns bytes freed."""
    files: list[tuple[float, int, str]] = []
    stack = [str(folder)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        files.append((stat.st_mtime, stat.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    freed = 0
    for _, size, path in sorted(files):
        if total - freed <= max_bytes:
            break
        with contextlib.suppress(OSError):
            os.remove(path)
            freed += size
    if freed:
        logger.info("Upload cache over %s bytes: %s bytes of the oldest files deleted.", f"{max_bytes:,}", f"{freed:,}")
    return freed


class UploadCacheBound:
    """After each successful upload, trims Gradio's upload folder to `max_bytes` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, folder: Path | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.folder = folder or Path(get_upload_folder())
        self._sweeping = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        status = 0

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, observe)
        if status == 200 and self._sweeping.acquire(blocking=False):
            try:
                await anyio.to_thread.run_sync(trim_folder, self.folder, self.max_bytes)
            finally:
                self._sweeping.release()
