"""A stand-in for ZeroGPU's device API, so that spaces' own client builds its real refusals off ZeroGPU.

spaces (0.51.3, zero/client.py `schedule`) asks this API for every lease and turns its answers into the
`gradio.Error`s a visitor meets: 429 with `{left, wait}` (quota; `wait` < 0: a duration too long), 503 (no GPU),
an event stream ending in `failed` (the queue gave up), 200 with a grant. Point `spaces.config.Config.
zero_device_api_url` at `FakeZeroGPU.url` and call `spaces.zero.client.schedule` (or `schedule_like_spaces`, the
step spaces.GPU takes before it starts a worker); `asked` records each lease's seconds.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeZeroGPU", "schedule_like_spaces", "visitor_request"]

T = TypeVar("T")


class FakeZeroGPU:
    """ZeroGPU's device API on 127.0.0.1: answers /schedule as told, and /allow, /release with 200."""

    def __init__(self) -> None:
        self.asked: list[int] = []  # durationSeconds of each /schedule
        self._answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.grant()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = urlsplit(self.path)
                status, body = 200, b""
                headers: dict[str, str] = {}
                if path.path == "/schedule":
                    query = parse_qs(path.query)
                    owner.asked.append(int(query.get("durationSeconds", ["0"])[0]))
                    status, headers, body = owner._answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-zerogpu", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _json(self, status: int, payload: dict[str, Any], auth: str | None = None, result: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["X-Authenticated"] = auth
        if result:
            headers["X-Approve-Result"] = result
        self._answer = (status, headers, json.dumps(payload).encode())

    def grant(self, *, uuid: str = "GPU-fake") -> None:
        """Leases are granted (on a machine with a GPU, `uuid` must be its UUID for the worker to use it)."""
        self._json(200, {"idle": False, "nvidiaIndex": 0, "nvidiaUUID": uuid, "allowToken": "allow-token"})

    def quota(self, *, left: int, wait: float, auth: str | None = None, result: str = "quota-exceeded") -> None:
        """The visitor has `left` seconds of quota; more comes back in `wait` seconds (negative: never enough)."""
        self._json(429, {"left": left, "wait": wait}, auth=auth, result=result)

    def no_gpu(self) -> None:
        """503: no GPU is free."""
        self._answer = (503, {}, b"")

    def queue_gives_up(self) -> None:
        """The request waits in ZeroGPU's queue, which then gives up."""
        self._answer = (200, {"Content-Type": "text/event-stream"}, b"event: failed\n\n")


def visitor_request(*, signed_in: bool = True, page: bool = True) -> SimpleNamespace:
    """The parts of a `gr.Request` spaces reads: the visitor's ZeroGPU token (when signed in to Hugging Face)
    and whether the call came from the page (else spaces appends advice for API callers)."""
    from starlette.datastructures import Headers

    headers: dict[str, str] = {}
    if signed_in:
        payload = base64.urlsafe_b64encode(json.dumps({"user": "visitor"}).encode()).decode().rstrip("=")
        headers["x-ip-token"] = f"header.{payload}.signature"
    if page:
        headers["x-gradio-user"] = "app"
    return SimpleNamespace(headers=Headers(headers))


def schedule_like_spaces(task: Callable[..., Iterator[T]], duration: Callable[..., int]) -> Callable[..., Iterator[T]]:
    """What `spaces.GPU(duration=...)(task)` does on ZeroGPU before it hands the call to a GPU worker (spaces
    0.51.3, zero/wrappers.py `generator_function_wrapper`): size the lease from the call's own arguments, ask
    ZeroGPU for it with the visitor's request (refusals raise here, from the first `next()`), then run the task
    (here in this process: off ZeroGPU there is no worker to fork)."""
    from spaces.utils import gradio_request_var
    from spaces.zero import client

    request_var = gradio_request_var()

    def handler(*args: Any, **kwargs: Any) -> Iterator[T]:
        seconds = duration(*args, **kwargs)
        client.schedule(task_id=id(task), request=request_var.get(None), duration=timedelta(seconds=seconds))
        yield from task(*args, **kwargs)

    return handler
