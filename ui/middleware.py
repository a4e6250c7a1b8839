"""The edge of the app: what every HTTP request goes through before Gradio parses it.

- One client address per request, derived from the socket peer and exactly TRUSTED_PROXIES hops of all its
  X-Forwarded-For lines, written into the request's `client` for everything after (rate limits, logs).
- Bodies bounded before any work: past MAX_REQUEST_BYTES (uploads: MAX_UPLOAD_BYTES), a 413 with a reason.
- Failed logins throttled per address: past LOGIN_ATTEMPTS_PER_MINUTE, 429 with Retry-After (a window, never a
  lockout: the right password works again once the window has passed).
- Routes the Space does not use answer 404: deep links, which would replay one visitor's values to another.
- API calls that leave inputs out get the documented defaults, or a 422 naming what is missing, instead of
  Gradio's bare `{"error": null}`.
- Every response says what the page may load: images and media from the app itself only
  (Content-Security-Policy), so that no model output can make a visitor's browser fetch from elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import RateLimitedError
from services.network import client_address
from services.ratelimit import RateLimiter

__all__ = ["ApiShape", "EdgeGuard", "EdgePolicy"]

logger = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "img-src 'self' data: blob:; media-src 'self' data: blob:; object-src 'none'; base-uri 'self'"
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_BLOCKED = ("/gradio_api/deep_link",)
# Room for a multipart envelope around an upload of MAX_UPLOAD_BYTES.
_MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ApiShape:
    """An endpoint's parameters, in order: (name, has_default, default)."""

    name: str
    parameters: tuple[tuple[str, bool, Any], ...]


@dataclass(frozen=True)
class EdgePolicy:
    max_request_bytes: int
    max_upload_bytes: int
    trusted_proxies: int
    login_attempts: int


class _TooLarge(Exception):
    pass


async def _respond(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *_SECURITY_HEADERS,
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class EdgeGuard:
    """ASGI middleware for the rules above. `shapes` gives the public endpoints' parameters by API name, and
    `inputs` the number of inputs by event index (both read from the Blocks on first use)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: EdgePolicy,
        shapes: Callable[[], Mapping[str, ApiShape]],
        inputs: Callable[[], Mapping[int, int]],
    ) -> None:
        self.app = app
        self.policy = policy
        self._shapes = shapes
        self._inputs = inputs
        self._logins = RateLimiter(
            policy.login_attempts,
            what="address",
            message="Too many failed logins from this address: try again in {retry} s.",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = client_address(
            scope["client"][0] if scope.get("client") else None,
            [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"],
            trusted_proxies=self.policy.trusted_proxies,
        )
        scope["client"] = (address, scope["client"][1] if scope.get("client") else 0)
        path = scope["path"][len(scope.get("root_path", "")) :] if scope.get("root_path") else scope["path"]
        path = path.rstrip("/") or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        if path in _BLOCKED:
            await _respond(send, 404, "Not Found")
            return
        method = scope["method"]
        if method not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send_with_headers)
            return
        limit = self.policy.max_request_bytes
        if path.endswith("/upload"):
            limit = self.policy.max_upload_bytes + _MULTIPART_OVERHEAD
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _respond(send, 413, f"The request is larger than this Space accepts ({limit:,} bytes).")
            return
        if path == "/login":
            await self._login(scope, receive, send_with_headers, address)
            return
        if path.startswith("/gradio_api/call/") or path == "/gradio_api/queue/join":
            body = await self._read(receive, limit)
            if body is None:
                await _respond(send, 413, f"The request is larger than this Space accepts ({limit:,} bytes).")
                return
            fixed = self._complete_inputs(path, body)
            if isinstance(fixed, str):
                await _respond(send, 422, fixed)
                return
            await self.app(_with_length(scope, len(fixed)), _replay(fixed), send_with_headers)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, _bounded(receive, limit), tracked)
        except _TooLarge:
            if not started:
                await _respond(send, 413, f"The request is larger than this Space accepts ({limit:,} bytes).")

    async def _read(self, receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _login(self, scope: Scope, receive: Receive, send: Send, address: str) -> None:
        try:
            self._logins.refuse_if_over(address)
        except RateLimitedError as error:
            retry = str(max(1, math.ceil(error.retry_after))).encode()
            await _respond(send, 429, str(error), [(b"retry-after", retry)])
            return
        status = 0

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, _bounded(receive, self.policy.max_request_bytes), observe)
        if status in (400, 401):  # Gradio answers a wrong password with 400 "Incorrect credentials."
            self._logins.count(address)
            logger.info("Failed login from %s", address)

    def _complete_inputs(self, path: str, body: bytes) -> bytes | str:
        """The body with missing trailing inputs filled with their defaults, or why it cannot be run."""
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return "The request body is not JSON."
        if path.startswith("/gradio_api/call/v2/"):
            return body  # named arguments: Gradio fills the defaults itself
        if not isinstance(payload, dict):
            return 'The request body must be a JSON object such as {"data": [...]}.'
        data = payload.get("data")
        if not isinstance(data, list):
            return 'The request body needs "data": a list of the endpoint\'s inputs, in order.'
        if path == "/gradio_api/queue/join":
            index = payload.get("fn_index")
            wanted = self._inputs().get(index) if isinstance(index, int) else None
            if wanted is not None and len(data) < wanted:
                return f"Event {index} takes {wanted} inputs; the request sent {len(data)}."
            return body
        name = path.removeprefix("/gradio_api/call/").split("/", 1)[0]
        shape = self._shapes().get(name)
        if shape is None or len(data) >= len(shape.parameters):
            return body
        missing = [param for param, has_default, _ in shape.parameters[len(data) :] if not has_default]
        if missing:
            return (
                f"/{name} needs {', '.join(repr(m) for m in missing)} (inputs in order: "
                + ", ".join(param for param, _, _ in shape.parameters)
                + ")."
            )
        payload["data"] = data + [default for _, _, default in shape.parameters[len(data) :]]
        return json.dumps(payload).encode()


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _bounded(receive: Receive, limit: int) -> Receive:
    """A body stream that stops (with `_TooLarge`) once more than `limit` bytes have come: a chunked body has no
    Content-Length to refuse it by."""
    size = 0

    async def bounded() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _TooLarge
        return message

    return bounded
