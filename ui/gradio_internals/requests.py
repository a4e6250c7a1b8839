"""The one guard for Gradio's request formats (gradio/routes.py, 6.31), before Gradio parses anything.

- Routes the Space does not use answer 404: deep links (`/gradio_api/deep_link`, which replay one visitor's values
  to another) and `/gradio_api/component_server` (no component here has server functions).
- API calls (`/gradio_api/call/<name>`, `/call/v2/<name>`) and the page's events (`/gradio_api/queue/join`, and
  `/gradio_api/run/<name>` for those outside the queue) are checked against what the endpoint takes: a name it
  does not have (404), inputs left out (the documented defaults, or a 422 naming what is missing), too many or
  unknown ones, JSON nested deeper than any input needs, file references where the event takes no file (422),
  each with a sentence instead of Gradio's bare error.
- Every session hash a request carries is checked (`services.session_keys.hash_problem`: 422 when it is plainly not
  random) and replaced by the key bound to its caller (`SessionKeys.bind`), so that Gradio and the app only ever
  see bound keys: the queue's join (body), its event stream (`queue/data?session_hash=`), `/call` and `/run`
  (body), cancel (body), the heartbeat and media streams (path). A request that may start a session (join, `/run`,
  `/call` with a hash) is counted by `SessionKeys.open`, which refuses a new one past the caller's bounds (429).

A `/call` without a session hash is its own session in Gradio (the event's id), for that one call.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from gradio.utils import get_upload_folder
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import RateLimitedError
from services.session_keys import SessionKeys, hash_problem
from ui.edge import connection_address
from ui.edge._http import refusal, route_path
from ui.gradio_internals.endpoints import ApiShape, EventShape

__all__ = ["MAX_JSON_DEPTH", "SESSION_CARRIERS", "GradioRequestGuard"]

_API = "/gradio_api"
_BLOCKED = (f"{_API}/deep_link", f"{_API}/component_server")
# Every route of Gradio 6.31 that takes a session hash (tests/test_ui_gradio_internals.py reads them from Gradio's
# own routes and fails on one missing here), and where it is: a JSON body, the query, or the path.
SESSION_CARRIERS = {
    f"{_API}/queue/join": "body",
    f"{_API}/call/{{api_name}}": "body",
    f"{_API}/run/{{api_name}}": "body",  # the page's events outside the queue (`/run/predict`, by fn_index)
    f"{_API}/api/{{api_name}}": "body",  # the same route, by its other name
    f"{_API}/cancel": "body",
    f"{_API}/stream/{{event_id}}": "body",  # a streaming input's next chunk
    f"{_API}/queue/data": "query",
    f"{_API}/heartbeat/{{session_hash}}": "path",
    f"{_API}/stream/{{session_hash}}/{{run}}/{{component_id}}/playlist.m3u8": "path",
    f"{_API}/stream/{{session_hash}}/{{run}}/{{component_id}}/{{segment_id}}.{{ext}}": "path",
    f"{_API}/stream/{{session_hash}}/{{run}}/{{component_id}}/playlist-file": "path",
    f"{_API}/deep_link": "blocked",
}
# POST routes whose JSON body may carry a session hash, besides the queue's join and cancel.
_BODIES = (f"{_API}/call/", f"{_API}/run/", f"{_API}/api/", f"{_API}/stream/")
# No input nests deeper than a saved chat (about 6 levels); Gradio's own walks over a value recurse.
MAX_JSON_DEPTH = 32
# Bodies past this size are parsed on a worker thread, so that the event loop never waits on one.
_PARSE_OFF_LOOP = 64 * 1024


@dataclass(frozen=True)
class _Refusal:
    status: int
    detail: str
    retry_after: float | None = None


class GradioRequestGuard:
    """The module's rules. `shapes` gives the public endpoints' parameters by API name and `events` what each event
    takes by its index (`ui.gradio_internals.endpoints`); `sessions` binds and bounds session hashes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        shapes: Callable[[], Mapping[str, ApiShape]],
        events: Callable[[], Mapping[int, EventShape]],
        sessions: SessionKeys,
    ) -> None:
        self.app = app
        self._shapes = shapes
        self._events = events
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        method = scope["method"]
        if path in _BLOCKED:
            await refusal(404, "Not Found")(scope, receive, send)
            return
        if method == "POST" and (path.startswith(_BODIES) or path in (f"{_API}/queue/join", f"{_API}/cancel")):
            await self._body(scope, receive, send, path)
            return
        if method in ("GET", "HEAD"):
            bound = self._in_url(scope, path)
            if isinstance(bound, _Refusal):
                await _refuse(bound, scope, receive, send)
                return
            scope = bound
        await self.app(scope, receive, send)

    # Session hashes in the URL: the event stream's query, the heartbeat's and media streams' path.

    def _in_url(self, scope: Scope, path: str) -> Scope | _Refusal:
        if path == f"{_API}/queue/data":
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            hashes = [value for name, value in query if name == "session_hash"]
            if not hashes:
                return scope
            keys = []
            for value in hashes:
                key = self._bind(scope, value)
                if isinstance(key, _Refusal):
                    return key
                keys.append(key)
            rebuilt = [(name, keys.pop(0) if name == "session_hash" else value) for name, value in query]
            return {**scope, "query_string": urlencode(rebuilt).encode()}
        # GET /heartbeat/<hash> and GET /stream/<hash>/<run>/... (the POST /stream/<event_id> routes name an event).
        for prefix in (f"{_API}/heartbeat/", f"{_API}/stream/"):
            if path.startswith(prefix):
                value = path[len(prefix) :].split("/", 1)[0]
                key = self._bind(scope, value)
                if isinstance(key, _Refusal):
                    return key
                return _with_path(scope, prefix + value, prefix + key)
        return scope

    def _bind(self, scope: Scope, value: str) -> str | _Refusal:
        problem = hash_problem(value)
        if problem is not None:
            return _Refusal(422, problem)
        return self.sessions.bind(value, connection_address(scope))

    # Bodies: API calls, the queue's events, cancel.

    async def _body(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        body = await _read(receive)
        if len(body) > _PARSE_OFF_LOOP:
            checked = await anyio.to_thread.run_sync(self._check_body, scope, path, body)
        else:
            checked = self._check_body(scope, path, body)
        if isinstance(checked, _Refusal):
            await _refuse(checked, scope, receive, send)
            return
        await self.app(_with_length(scope, len(checked)), _replay(checked), send)

    def _check_body(self, scope: Scope, path: str, body: bytes) -> bytes | _Refusal:
        """The body to pass on (inputs completed, session hash bound), or why it cannot be run."""
        try:
            payload = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return _Refusal(422, "The request body is not JSON.")
        if _too_deep(payload):
            return _Refusal(422, f"The request body nests deeper than the {MAX_JSON_DEPTH} levels any input needs.")
        # Cancel and a streaming input's chunk name a session already started; the others may start one.
        starts = not (path == f"{_API}/cancel" or path.startswith(f"{_API}/stream/"))
        if not starts:
            checked: object | _Refusal = payload
        elif path.startswith(f"{_API}/call/"):
            checked = self._check_call(path, payload)
        else:
            checked = self._check_event(payload)
        if isinstance(checked, _Refusal):
            return checked
        bound = self._bound_session(scope, checked, starts=starts)
        if isinstance(bound, _Refusal):
            return bound
        return body if bound is payload else json.dumps(bound).encode()

    def _bound_session(self, scope: Scope, payload: object, *, starts: bool) -> object | _Refusal:
        """`payload` with its session hash replaced by the caller's bound key; a session it starts is counted."""
        if not isinstance(payload, dict) or payload.get("session_hash") is None:
            return payload
        value = payload["session_hash"]
        if not isinstance(value, str):
            return _Refusal(422, "The session hash must be a string.")
        key = self._bind(scope, value)
        if isinstance(key, _Refusal):
            return key
        if starts:
            try:
                self.sessions.open(key, connection_address(scope))
            except RateLimitedError as error:
                return _Refusal(429, str(error), retry_after=error.retry_after)
        return {**payload, "session_hash": key}

    def _check_call(self, path: str, payload: object) -> object | _Refusal:
        name = path.removeprefix(f"{_API}/call/").removeprefix("v2/").split("/", 1)[0]
        shape = self._shapes().get(name)
        if shape is None:
            return _Refusal(404, f"This Space has no API endpoint /{name[:60]}: /gradio_api/info lists them.")
        if path.startswith(f"{_API}/call/v2/"):
            named = _check_named(shape, payload)
            if isinstance(named, _Refusal) or not isinstance(payload, dict):
                return named
            values = {i: payload[param] for i, (param, _, _) in enumerate(shape.parameters) if param in payload}
            refused = _check_files(values, shape.file_models, lambda i: f"/{name}'s {shape.parameters[i][0]!r}")
            return refused or named
        if not isinstance(payload, dict):
            return _Refusal(422, 'The request body must be a JSON object such as {"data": [...]}.')
        data = payload.get("data")
        if not isinstance(data, list):
            return _Refusal(422, 'The request body needs "data": a list of the endpoint\'s inputs, in order.')
        if len(data) > len(shape.parameters):
            return _Refusal(422, f"/{name} takes {len(shape.parameters)} inputs ({_names(shape)}); got {len(data)}.")
        label: Callable[[int], str] = lambda i: f"/{name}'s {shape.parameters[i][0]!r}"  # noqa: E731
        if refused := _check_files(dict(enumerate(data)), shape.file_models, label):
            return refused
        if len(data) == len(shape.parameters):
            return payload
        missing = [param for param, has_default, _ in shape.parameters[len(data) :] if not has_default]
        if missing:
            return _Refusal(
                422, f"/{name} needs {', '.join(repr(m) for m in missing)} (inputs in order: {_names(shape)})."
            )
        return {**payload, "data": data + [default for _, _, default in shape.parameters[len(data) :]]}

    def _check_event(self, payload: object) -> object | _Refusal:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return _Refusal(422, 'The request body needs "data": a list of the event\'s inputs, in order.')
        index = payload.get("fn_index")
        if index is None:
            return payload  # Gradio's own 400: "No function index provided."
        if isinstance(index, bool) or not isinstance(index, int):
            return _Refusal(422, '"fn_index" must be the number of one of the page\'s events.')
        event = self._events().get(index)
        if event is None:
            return _Refusal(404, f"This Space has no event {index}.")
        if len(payload["data"]) < event.inputs:
            return _Refusal(422, f"Event {index} takes {event.inputs} inputs; the request sent {len(payload['data'])}.")
        values = dict(enumerate(payload["data"]))
        return _check_files(values, event.file_models, lambda i: f"Event {index}'s input {i}") or payload


def _names(shape: ApiShape) -> str:
    return ", ".join(param for param, _, _ in shape.parameters)


def _check_named(shape: ApiShape, payload: object) -> object | _Refusal:
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
    return payload


def _too_deep(value: object) -> bool:
    """Whether `value` nests deeper than MAX_JSON_DEPTH, found without recursion: the value is a caller's."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _file_references(value: object) -> list[dict[str, Any]]:
    """The Gradio file references (FileData objects) anywhere in `value` (whose depth is already bounded)."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_files(
    values: Mapping[int, object], models: Mapping[int, type[BaseModel]], label: Callable[[int], str]
) -> _Refusal | None:
    """Files only where an input takes them, in the shape that input's data model gives (Gradio validates it
    before the handler, with a traceback for a shape it refuses), each naming a file this Space's upload route
    wrote: Gradio would fetch a URL given as a path, and refuse, with a traceback, a path elsewhere."""
    for position, value in values.items():
        references = _file_references(value)
        model = models.get(position)
        if references and model is None:
            return _Refusal(422, f"{label(position)} takes no files; the request sent a file reference.")
        if model is None or value is None:
            continue
        try:
            model.model_validate(value)
        except ValidationError:
            return _Refusal(422, f"{label(position)} takes files uploaded to this Space (/gradio_api/upload).")
        for reference in references:
            if not _is_upload(reference.get("path")):
                return _Refusal(
                    422,
                    f"{label(position)} names a file that was not uploaded to this Space: upload it first "
                    "(/gradio_api/upload; gradio_client.handle_file does). The Space fetches no URL.",
                )
    return None


def _is_upload(path: object) -> bool:
    """Whether `path` is a file in Gradio's upload folder (where its upload route writes, and nothing else)."""
    if not isinstance(path, str) or "://" in path or path.startswith("data:"):
        return False
    root = os.path.realpath(get_upload_folder())
    resolved = os.path.realpath(path)
    return resolved.startswith(root + os.sep) and os.path.isfile(resolved)


async def _refuse(refused: _Refusal, scope: Scope, receive: Receive, send: Send) -> None:
    headers = None
    if refused.retry_after is not None:
        headers = {"retry-after": str(max(1, math.ceil(refused.retry_after)))}
    await refusal(refused.status, refused.detail, headers)(scope, receive, send)


async def _read(receive: Receive) -> bytes:
    """The whole body (`ui.edge.BodyLimit`, outside, has bounded it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _with_path(scope: Scope, old: str, new: str) -> Scope:
    path = scope["path"].replace(old, new, 1)
    return {**scope, "path": path, "raw_path": path.encode()}


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
