"""Request bodies bounded before any work: past the limit, a 413 with the limit in its sentence.

A declared Content-Length over the limit is refused before the body is read; a body sent without one (chunked)
is counted as it arrives and refused once it passes the limit, before the app has answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.edge._http import refusal, route_path

__all__ = ["BodyLimit"]


class _TooLarge(Exception):
    """Raised inside the app's `receive` once a body passes the limit."""


class BodyLimit:
    """Bounds the bodies of POST, PUT and PATCH requests: `max_bytes`, or `paths[path]` for the paths named."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, paths: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(route_path(scope), self.max_bytes)
        too_large = refusal(413, f"The request is larger than this Space accepts ({limit:,} bytes).")
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(scope, receive, send)
            return
        size = 0
        started = False

        async def bounded() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, tracked)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)
