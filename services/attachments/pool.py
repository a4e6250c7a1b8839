"""Uploads read off the event loop, in worker processes that a hostile file cannot keep.

A thread cannot be stopped, and one pypdf call can run for minutes on a small hostile PDF (a page whose content
stream repeats a text operator a hundred thousand times takes seconds, and a hundred pages may share it), holding
the GIL the event loop needs all along. So each file is read in a process of a small pool (`worker.py`): the event
loop only awaits a thread that waits on the process's pipe, and past ATTACHMENT_TIMEOUT that process is killed
and a fresh one started in its place. Workers are started with `python -m` rather than multiprocessing, whose
spawn and forkserver methods import the app's `__main__` again in every worker, and whose fork copies a process
with threads; their environment has no secret in it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from services.attachments.parts import Attachment, Limits, display_name
from services.attachments.read import from_wire
from services.config import VARIABLES, Settings
from services.errors import AttachmentError

__all__ = ["AttachmentReader", "Upload"]

ROOT = Path(__file__).resolve().parents[2]
_WORKER = (sys.executable, "-m", "services.attachments.worker")
# An answer is an image's data URL (a few MB) at most; anything larger is not one of the worker's.
_MAX_ANSWER_BYTES = 64 << 20
# A worker's start is not the file's time: it is a fraction of a second, but on a busy machine it can take
# seconds, and a file must not be refused for that. A worker not ready after this long is broken.
_START_SECONDS = 30.0
# Words that mark an environment variable as a credential, kept out of the workers' environment.
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


class Upload(NamedTuple):
    """An uploaded file: where it is on disk, and the name the client gave it."""

    path: str
    name: str


class _Stuck(Exception):
    """The worker did not answer before the deadline."""


class _Lost(Exception):
    """The worker died, or answered something that is not an answer."""


class _Unready(Exception):
    """The worker did not start in time."""


class AttachmentReader:
    """Reads uploaded files into `ImagePart`s and `DocumentPart`s, each in a worker process under a time bound.

    One per app: `start()` when the app starts (optional: the first file starts the workers otherwise), `await
    read(uploads)` per message, `close()` at the end (also run at exit). Safe to share between threads and event
    loops.
    """

    def __init__(self, settings: Settings) -> None:
        self._limits = Limits.from_settings(settings)
        self._timeout = settings.attachment_timeout
        self._max_files = settings.max_attachments
        self._size = settings.attachment_workers
        # Idle workers, the warmest first; None is a slot whose worker is started when it is first needed.
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(self._size):
            self._idle.put(None)
        # One thread per worker: a thread holds at most one slot, so getting one never waits.
        self._threads = ThreadPoolExecutor(max_workers=self._size, thread_name_prefix="attachments")
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    def start(self) -> None:
        """Start the idle slots' workers now (each imports Pillow and pypdf in a fraction of a second, in its own
        process), so that the first file does not wait for that. A few ms here: call it at start-up."""
        slots: list[_Worker | None] = []
        with contextlib.suppress(queue.Empty):
            while len(slots) < self._size:
                slots.append(self._idle.get_nowait())
        for slot in slots:
            self._give_back(slot or self._spawn())

    async def read(self, uploads: Sequence[Upload | str]) -> list[Attachment]:
        """One message's files, read at once (as many at a time as there are workers), in order.

        A plain path is named by its last segment (Gradio keeps the client's name there). Raises
        `AttachmentError` for too many files, or for the first file refused; the others are then abandoned.
        """
        items = [item if isinstance(item, Upload) else Upload(item, os.path.basename(item)) for item in uploads]
        if len(items) > self._max_files:
            if self._max_files == 0:
                raise AttachmentError("", "This Space takes no attachments: send your message as text.")
            raise AttachmentError(
                "",
                f"A message takes at most {self._max_files} files and this one has {len(items)}: send the rest "
                "in another message.",
            )
        tasks = [asyncio.ensure_future(self.read_one(item.path, name=item.name)) for item in items]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def read_one(self, path: str | os.PathLike[str], *, name: str) -> Attachment:
        """One file, read in a worker process within ATTACHMENT_TIMEOUT seconds (a wait for a free worker not
        counted: every file ahead is itself bounded). Raises `AttachmentError` with a sentence."""
        if self._closed:
            raise AttachmentError("", "The Space is stopping: attach the file again in a moment.")
        request = {"path": os.path.abspath(path), "name": name, "limits": dataclasses.asdict(self._limits)}
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._run, request, display_name(name))

    def close(self) -> None:
        """Stop the workers; files being read are abandoned. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._threads.shutdown(wait=False, cancel_futures=True)
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker is not None:
                worker.kill()

    # In the reader's threads.

    def _run(self, request: dict[str, Any], name: str) -> Attachment:
        worker = self._idle.get()
        try:
            worker = worker or self._spawn()
            answer = worker.call(request, timeout=self._timeout)
        except _Unready:
            worker = self._replace(worker)
            raise AttachmentError(name, "The Space is busy: attach the file again in a moment.") from None
        except _Stuck:
            worker = self._replace(worker)
            raise AttachmentError(
                name,
                f"{name} took longer than {self._timeout:g} s to read, so reading it was stopped: attach a smaller"
                " file, or paste the part you need.",
            ) from None
        except (_Lost, OSError):
            worker = self._replace(worker)
            raise AttachmentError(
                name, f"{name} could not be read: it needs more than the Space allows; attach a smaller file."
            ) from None
        finally:
            self._give_back(worker)
        if isinstance(answer, dict) and isinstance(answer.get("refused"), str):
            raise AttachmentError(name, answer["refused"])
        try:
            return from_wire(answer.get("part") if isinstance(answer, dict) else None)
        except ValueError:
            raise AttachmentError(name, f"{name} could not be read: attach another copy of it.") from None

    def _spawn(self) -> _Worker:
        if self._closed:
            raise AttachmentError("", "The Space is stopping: attach the file again in a moment.")
        return _Worker.spawn()

    def _replace(self, worker: _Worker | None) -> _Worker | None:
        """A stuck or broken worker killed, and a fresh one started in its place (it imports while it waits)."""
        if worker is not None:
            worker.kill()
        if self._closed:
            return None
        try:
            return _Worker.spawn()
        except OSError:
            return None

    def _give_back(self, worker: _Worker | None) -> None:
        # Under the lock that `close` takes to mark the reader closed: no worker is put back after it drains.
        with self._lock:
            if not self._closed:
                self._idle.put(worker)
                return
        if worker is not None:
            worker.kill()


class _Worker:
    """One worker process and the two pipes of its frames (see `worker.py`)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._ready = False

    @classmethod
    def spawn(cls) -> _Worker:
        process = subprocess.Popen(
            _WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=_worker_env(), bufsize=0
        )
        return cls(process)

    def call(self, request: dict[str, Any], *, timeout: float) -> Any:
        """The worker's answer to `request`, within `timeout` seconds of the worker being ready."""
        if not self._ready:
            try:
                ready = self._receive(time.monotonic() + _START_SECONDS)
            except _Stuck:
                raise _Unready from None
            if ready != {"ready": True}:
                raise _Lost
            self._ready = True
        deadline = time.monotonic() + timeout
        payload = json.dumps(request).encode()
        frame = memoryview(struct.pack(">I", len(payload)) + payload)
        assert self._process.stdin is not None
        try:
            while frame:
                frame = frame[self._process.stdin.write(frame) or 0 :]
        except OSError:
            raise _Lost from None
        return self._receive(deadline)

    def _receive(self, deadline: float) -> Any:
        (size,) = struct.unpack(">I", self._read(4, deadline))
        if size > _MAX_ANSWER_BYTES:
            raise _Lost
        try:
            return json.loads(self._read(size, deadline))
        except ValueError:
            raise _Lost from None

    def _read(self, size: int, deadline: float) -> bytes:
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        poller = select.poll()
        poller.register(descriptor, select.POLLIN)
        chunks: list[bytes] = []
        while size:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise _Stuck
            chunk = os.read(descriptor, min(size, 1 << 20))
            if not chunk:
                raise _Lost
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        """Killed at once: an idle worker holds nothing, and a busy one is past its deadline."""
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _worker_env() -> dict[str, str]:
    """The app's environment without the app's own variables and anything named like a credential: a worker
    reads hostile files, and needs only the interpreter's own variables (PATH, PYTHONPATH, HOME, locale)."""
    app_variables = {variable.name for variable in VARIABLES}
    return {
        key: value
        for key, value in os.environ.items()
        if key not in app_variables and not any(word in key.upper() for word in _SECRET_WORDS)
    }
