"""The edge of the app: what every HTTP request goes through before Gradio parses it.

- One client address per request, derived from the socket peer and exactly TRUSTED_PROXIES hops of all its
  X-Forwarded-For lines, written into the request's `client` for everything after (rate limits, logs).
- Bodies bounded before any work: past MAX_REQUEST_BYTES (uploads: MAX_UPLOAD_BYTES), a 413 with a reason.
- Failed logins throttled per address: past LOGIN_ATTEMPTS_PER_MINUTE, 429 with Retry-After (a window, never a
  lockout: the right password works again once the window has passed).
- Routes the Space does not use answer 404: deep links, which would replay one visitor's values to another.
- API calls are checked against what the endpoint takes before Gradio parses them: a name it does not have
  (404), inputs left out (the documented defaults, or a 422 naming what is missing), too many or unknown ones,
  JSON nested deeper than any input needs, file references where the event takes no file (422), each with a
  sentence instead of Gradio's bare `{"error": null}`, a 500 or a traceback in the log.
- Every response says what the page may load: images and media from the app itself only
  (Content-Security-Policy), so that no model output can make a visitor's browser fetch from elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import RateLimitedError
from services.network import client_address
from services.ratelimit import RateLimiter
from ui.gradio_internals.endpoints import ApiShape, EventShape

__all__ = ["ApiShape", "EdgeGuard", "EdgePolicy", "EventShape"]

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
# No input nests deeper than a saved chat (about 6 levels); Gradio's own walks over a value recurse.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class _Refusal:
    status: int
    detail: str


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
    `events` what each event takes by its index (both read from the Blocks on first use)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: EdgePolicy,
        shapes: Callable[[], Mapping[str, ApiShape]],
        events: Callable[[], Mapping[int, EventShape]],
    ) -> None:
        self.app = app
        self.policy = policy
        self._shapes = shapes
        self._events = events
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
            if isinstance(fixed, _Refusal):
                await _respond(send, fixed.status, fixed.detail)
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

    def _complete_inputs(self, path: str, body: bytes) -> bytes | _Refusal:
        """The body with missing trailing inputs filled with their defaults, or why it cannot be run."""
        try:
            payload = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return _Refusal(422, "The request body is not JSON.")
        files, too_deep = _walk(payload)
        if too_deep:
            return _Refusal(422, f"The request body nests deeper than the {MAX_JSON_DEPTH} levels any input needs.")
        if path == "/gradio_api/queue/join":
            return self._check_event(payload, body, files)
        name = path.removeprefix("/gradio_api/call/").removeprefix("v2/").split("/", 1)[0]
        shape = self._shapes().get(name)
        if shape is None:
            return _Refusal(404, f"This Space has no API endpoint /{name[:60]}: /gradio_api/info lists them.")
        if files and not shape.takes_files:
            return _Refusal(422, f"/{name} takes no files; the request sent a file reference.")
        if path.startswith("/gradio_api/call/v2/"):
            return _check_named(shape, payload, body)
        if not isinstance(payload, dict):
            return _Refusal(422, 'The request body must be a JSON object such as {"data": [...]}.')
        data = payload.get("data")
        if not isinstance(data, list):
            return _Refusal(422, 'The request body needs "data": a list of the endpoint\'s inputs, in order.')
        if len(data) > len(shape.parameters):
            return _Refusal(422, f"/{name} takes {len(shape.parameters)} inputs ({_names(shape)}); got {len(data)}.")
        if len(data) == len(shape.parameters):
            return body
        missing = [param for param, has_default, _ in shape.parameters[len(data) :] if not has_default]
        if missing:
            return _Refusal(
                422, f"/{name} needs {', '.join(repr(m) for m in missing)} (inputs in order: {_names(shape)})."
            )
        payload["data"] = data + [default for _, _, default in shape.parameters[len(data) :]]
        return json.dumps(payload).encode()

    def _check_event(self, payload: object, body: bytes, files: bool) -> bytes | _Refusal:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return _Refusal(422, 'The request body needs "data": a list of the event\'s inputs, in order.')
        index = payload.get("fn_index")
        if index is None:
            return body  # Gradio's own 400: "No function index provided."
        if isinstance(index, bool) or not isinstance(index, int):
            return _Refusal(422, '"fn_index" must be the number of one of the page\'s events.')
        event = self._events().get(index)
        if event is None:
            return _Refusal(404, f"This Space has no event {index}.")
        if len(payload["data"]) < event.inputs:
            return _Refusal(422, f"Event {index} takes {event.inputs} inputs; the request sent {len(payload['data'])}.")
        if files and not event.takes_files:
            return _Refusal(422, f"Event {index} takes no files; the request sent a file reference.")
        return body


def _names(shape: ApiShape) -> str:
    return ", ".join(param for param, _, _ in shape.parameters)


def _check_named(shape: ApiShape, payload: object, body: bytes) -> bytes | _Refusal:
    """/call/v2/<name> takes the inputs by name, as a JSON object: none unknown, none required left out."""
    if not isinstance(payload, dict):
        return _Refusal(422, f"/{shape.name} takes its inputs by name, as a JSON object ({_names(shape)}).")
    known = {param for param, _, _ in shape.parameters} | {"oauth_token"}
    unknown = [key for key in payload if key not in known]
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5])
        return _Refusal(422, f"/{shape.name} has no input {shown} (its inputs: {_names(shape)}).")
    missing = [param for param, has_default, _ in shape.parameters if not has_default and param not in payload]
    if missing:
        return _Refusal(
            422, f"/{shape.name} needs {', '.join(repr(m) for m in missing)} (its inputs: {_names(shape)})."
        )
    return body


def _walk(value: object) -> tuple[bool, bool]:
    """(whether `value` holds a Gradio file reference, whether it nests deeper than MAX_JSON_DEPTH), without
    recursion: the value is a caller's."""
    files = False
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return files, True
        if isinstance(item, dict):
            meta = item.get("meta")
            files = files or (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData")
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return files, False


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
