"""A local MCP server for tests and benchmarks, built on the official SDK (`FastMCP`, streamable HTTP at `/mcp`).

Its tools: `add` and `lookup` answer; `hang` sleeps far past any test's TOOL_TIMEOUT; `meet` answers once a
number of its calls have arrived (calls made one after the other never meet); `fail` raises; `huge`
returns a result of `chars` characters; `leak` returns `secret` (given to the server) inside markup; `picture`
returns an image and a resource link. Every HTTP request is recorded (`requests`: its method and headers), so a
test can count the sessions a client opened (`initializations`) and check that no credential reached the server.

Runs in a thread on 127.0.0.1 (`McpServer`, a context manager) and can be stopped and started again on the same
port (`stop()`, `start()`), a fresh server each time, as a real server restarts: the sessions it knew are gone.
Or as a process for benchmarks: `python -m tests.support.mcp_server --port 8002`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from mcp.server.fastmcp import FastMCP, Image
from mcp.types import ImageContent, ResourceLink
from pydantic import AnyUrl
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.fake_openai import free_port

__all__ = ["TOOL_NAMES", "McpServer", "RecordedRequest", "build_app"]

TOOL_NAMES = ("add", "lookup", "hang", "meet", "fail", "huge", "leak", "picture")
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CITIES = {"paris": "Paris: 14 °C, light rain", "oslo": "Oslo: -3 °C, snow"}


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received: method, path and headers (names lower-cased, repeats joined)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def session_id(self) -> str | None:
        return self.headers.get("mcp-session-id")


class _Recorder:
    """ASGI middleware that records every HTTP request before the MCP app sees it, and answers 401 to one that
    lacks a required header."""

    def __init__(self, app: ASGIApp, requests: list[RecordedRequest], required: dict[str, str]) -> None:
        self.app = app
        self.requests = requests
        self.required = {name.lower(): value for name, value in required.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: dict[str, str] = {}
            for raw_name, raw_value in scope["headers"]:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self.requests.append(RecordedRequest(scope["method"], scope["path"], headers))
            if any(headers.get(name) != value for name, value in self.required.items()):
                await PlainTextResponse("missing credentials", status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(*, secret: str = "", calls: list[str] | None = None, name: str = "test-tools") -> ASGIApp:
    """The MCP server's ASGI app (without the recorder); `calls` collects the names of the tools called."""
    server = FastMCP(name, log_level="CRITICAL")
    record = calls if calls is not None else []

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        record.append("add")
        return a + b

    @server.tool()
    def lookup(city: str) -> str:
        """Today's weather in a city."""
        record.append("lookup")
        return CITIES.get(city.lower(), f"No weather known for {city}.")

    @server.tool()
    async def hang(seconds: float = 3600.0) -> str:
        """Sleep, then answer (stands for a tool that never answers in time)."""
        record.append("hang")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            record.append("hang cancelled")  # the client said it abandoned the call
            raise
        return "woke up"

    arrivals = [0]

    @server.tool()
    async def meet(count: int, seconds: float = 5.0) -> str:
        """Wait until `count` calls of `meet` have arrived since the server started (or `seconds` pass)."""
        record.append("meet")
        arrivals[0] += 1
        deadline = time.monotonic() + seconds
        while arrivals[0] < count and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return "met" if arrivals[0] >= count else "alone"

    @server.tool()
    def fail(reason: str = "it always does") -> str:
        """Raise an error."""
        record.append("fail")
        raise ValueError(f"the tool failed: {reason}")

    @server.tool()
    def huge(chars: int = 1_000_000) -> str:
        """Answer with `chars` characters."""
        record.append("huge")
        return ("0123456789" * (chars // 10 + 1))[:chars]

    @server.tool()
    def leak() -> str:
        """Answer with the server's secret inside markup, as a hostile server might."""
        record.append("leak")
        return f'<img src=x onerror="alert(1)"> the key is {secret} [click](javascript:alert(1))'

    @server.tool(structured_output=False)
    def picture() -> list[ImageContent | ResourceLink]:
        """Answer with an image and a link to a resource."""
        record.append("picture")
        image = Image(data=PNG, format="png").to_image_content()
        link = ResourceLink(type="resource_link", name="report", uri=AnyUrl("https://files.example/report.pdf"))
        return [image, link]

    return server.streamable_http_app()


class McpServer:
    """The MCP server on 127.0.0.1 in a background thread; use as a context manager.

    `secret` is what the `leak` tool returns; a request without the `required_headers` gets 401; `requests`
    records every HTTP request of every run on this port;
    `calls` the tools called, in order (and "hang cancelled" when a client abandons a `hang`).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        secret: str = "",
        name: str = "test-tools",
        required_headers: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.required_headers = required_headers or {}
        self.secret = secret
        self.name = name
        self.requests: list[RecordedRequest] = []
        self.calls: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def initializations(self) -> int:
        """MCP sessions opened: POSTs that carry no session id (only `initialize` does)."""
        return sum(1 for r in self.requests if r.method == "POST" and r.session_id is None)

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Forget the recorded requests and calls."""
        self.requests.clear()
        self.calls.clear()

    def start(self) -> None:
        """Serve on `port` (again, after `stop()`), a fresh server that knows no earlier session."""
        if self._server is not None:
            raise RuntimeError("the MCP test server is already running")
        app = _Recorder(
            build_app(secret=self.secret, calls=self.calls, name=self.name), self.requests, self.required_headers
        )
        # No graceful shutdown: a server going down cuts its calls off, and a hanging tool or an open event stream
        # must not hold `stop()` up.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="critical", timeout_graceful_shutdown=0
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True, name=f"mcp-test-server-{self.port}")
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the MCP test server did not start on port {self.port}")
            time.sleep(0.005)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Stop serving: open connections are closed and calls in progress cut off."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> McpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
