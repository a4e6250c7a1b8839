"""The attachment worker: a process of its own that reads one uploaded file at a time for `AttachmentReader`.

    python -m services.attachments.worker    # started by services/attachments/pool.py, never by hand

It speaks in frames on stdin and stdout: 4 bytes of length (big-endian), then that many bytes of UTF-8 JSON. It
first sends {"ready": true}; then, for each request {"path", "name", "limits"}, one answer: {"part": ...}
(`read.to_wire`) or {"refused": sentence}. It runs at a lower CPU priority than the app, under a memory ceiling,
and ends when its stdin closes (the app stopped or replaced it, or died).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import struct
import sys
import warnings
from typing import IO, Any

from services.attachments.parts import Limits, display_name
from services.attachments.read import read_attachment, to_wire
from services.errors import AttachmentError

__all__ = ["MEMORY_BYTES", "NICENESS", "handle", "main"]

# Address space a worker may use: a 50-megapixel RGBA image and its working copies fit, a decompression bomb
# that got past every check fails with MemoryError here instead of taking the Space's memory.
MEMORY_BYTES = 2 << 30
# Chats stream from the app's own process: a file being read waits for the CPU rather than slowing them down.
NICENESS = 5
_MAX_REQUEST_BYTES = 1 << 20


def main() -> None:
    # Frames go to a copy of stdout; the real stdout is pointed at stderr, so that nothing a library prints can
    # corrupt a frame.
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _confine()
    # A closed pipe means the app stopped or replaced this worker: it ends quietly.
    with contextlib.suppress(BrokenPipeError):
        _send(frames, {"ready": True})
        while (request := _receive(sys.stdin.buffer)) is not None:
            _send(frames, handle(request))


def handle(request: Any) -> dict[str, Any]:
    """One request's answer; every failure is a refusal with a sentence, never a crash of the worker."""
    name = display_name(str(request.get("name", ""))) if isinstance(request, dict) else "attachment"
    try:
        limits = Limits(**request["limits"])
        part = read_attachment(request["path"], name=request["name"], limits=limits)
    except AttachmentError as error:
        return {"refused": str(error)}
    except Exception:
        return {"refused": f"{name} could not be read; it may be damaged: attach another copy of it."}
    return {"part": to_wire(part)}


def _confine() -> None:
    # Ctrl-C in the app's terminal reaches its whole process group; the app stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > MEMORY_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    # A hostile PDF can make pypdf log a line per object; the answer says what went wrong.
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    if size > _MAX_REQUEST_BYTES:
        return None
    return json.loads(stream.read(size))


def _send(stream: IO[bytes], message: dict[str, Any]) -> None:
    payload = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


if __name__ == "__main__":
    main()
