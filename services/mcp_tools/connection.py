"""One MCP server: a session kept open by a task of its own, shared by every call, reopened when it fails.

The `mcp` client's transport and session live in anyio task groups, which must be entered and left by one task:
`Connection` runs that task. It opens the session, reads the tool list, then waits: for the refresh period, a
server's "tools changed" notice, or a request to read again or to reconnect. Calls use the open session from
their own tasks, concurrently. When the session ends (the server went away, answered an error status, or sent
more than the byte cap), every call waiting on it ends at once with the reason, and the task reconnects: at once
if the session had been working, else after a growing pause (1 s, doubling, up to a minute or the refresh period),
or sooner when a call or `refresh()` asks. A server that restarted no longer knows the session (HTTP 404): a call
that learns it is sent again once on a new session, since the server never ran it; the old session is left once
its other calls have learnt the same (or after a second), and a call still waiting then is not sent again, since
the server that went away may have run it.

Only the headers configured for this server are sent to it: its own HTTP client holds them, follows no redirect
to another origin, and reads no proxy or credentials from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.session import RequestResponder
from mcp.types import (
    CallToolResult,
    CancelledNotification,
    CancelledNotificationParams,
    ClientNotification,
    ClientResult,
    Implementation,
    PaginatedRequestParams,
    ServerNotification,
    ServerRequest,
    Tool,
    ToolListChangedNotification,
)
from pydantic import ValidationError

from services.mcp_tools.catalog import MAX_TOOLS_PER_SERVER, ListedTool, check_tools
from services.redact import Scrubber, shorten

__all__ = ["CONNECT_TIMEOUT", "Connection", "ServerStatus", "ServerUnavailableError", "ToolServer"]

logger = logging.getLogger(__name__)

# Seconds to connect, initialise and read the tool list; also the bound on one reading of the list.
CONNECT_TIMEOUT = 10.0
MAX_PAUSE = 60.0
# Pages of a tool list read at most: a server that pages forever is read no further.
MAX_PAGES = 10
# The `mcp` client answers a request with this code when the server no longer knows the session (HTTP 404).
SESSION_TERMINATED = 32600
# Seconds the calls on a session the server no longer knows get to learn it, before the session is left.
RESTART_GRACE = 1.0
# Seconds a session must have lasted for its failure to be retried at once rather than after a pause.
MIN_WORKING = 1.0
CLIENT_INFO = Implementation(name="gradio-chat-space", version="1.0")


@dataclass(frozen=True)
class ToolServer:
    """An MCP server of MCP_SERVERS: its name, its URL and its own headers (both secret, kept out of `repr`)."""

    name: str
    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ServerStatus:
    """What the page can show of a server: whether its tools are offered, how many, and if not, why."""

    name: str
    ok: bool
    tools: int
    reason: str = ""


class ServerUnavailableError(Exception):
    """Raised when a tool's server cannot take a call now; `reason` says why, in words for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Live:
    """An open session, and what its calls share: the future of its end (why it ended), and how many are on it."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.since = time.monotonic()
        self.calls = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)


# THE BYTE CAP: a server's answer is bounded before the client parses it.


class _TooLargeError(httpx.ReadError):
    """Raised when a server sends one message past the byte cap."""


class _CappedStream(httpx.AsyncByteStream):
    """A response body that fails once one message in it passes `limit` bytes. An event stream's messages end at
    a blank line, so the count starts again there; a JSON body is one message."""

    def __init__(self, stream: httpx.AsyncByteStream, limit: int, on_exceeded: Callable[[], None]) -> None:
        self._stream = stream
        self._limit = limit
        self._on_exceeded = on_exceeded

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:
            end = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\n\r\n"))
            size = len(chunk) - end if end >= 0 else size + len(chunk)
            if size > self._limit:
                self._on_exceeded()
                raise _TooLargeError(f"a message past {self._limit:,} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _CappedTransport(httpx.AsyncBaseTransport):
    def __init__(self, limit: int, on_exceeded: Callable[[], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._limit = limit
        self._on_exceeded = on_exceeded

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._limit, self._on_exceeded),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ToolSession(ClientSession):
    """A client session that does not check a tool's structured answer against the tool's own output schema.

    That check runs jsonschema, regular expressions included, on a schema and a value that both come from the
    server, in this process: a hostile server would choose how much CPU it takes. The answer's text is what the
    model gets; structured content is only a fallback, shown as JSON.
    """

    async def _validate_tool_result(self, name: str, result: CallToolResult) -> None:
        return None


def _leaves(error: BaseException) -> list[BaseException]:
    """The errors inside an exception group (anyio's task groups raise them), or the error itself."""
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for part in inner if isinstance(part, BaseException) for leaf in _leaves(part)]
    return [error]


def _reason(error: BaseException, *, scrubber: Scrubber, cap: int) -> str:
    """Why a session failed, in words for the page and the log: never the error's own text, which may quote a
    URL (and the key in it), except a server's MCP error message, masked and shortened."""
    leaves = [leaf for leaf in _leaves(error) if not isinstance(leaf, asyncio.CancelledError)] or [error]
    leaf = leaves[0]
    if isinstance(leaf, _TooLargeError):
        return f"it sent an answer over {cap:,} bytes"
    if isinstance(leaf, httpx.ConnectTimeout):
        return f"no connection within {CONNECT_TIMEOUT:g} s"
    if isinstance(leaf, httpx.ConnectError):
        return "cannot connect"
    if isinstance(leaf, httpx.HTTPStatusError):
        status = leaf.response.status_code
        if status in (401, 403):
            return f"it refused the credentials (HTTP {status}); check MCP_HEADERS"
        if 300 <= status < 400:
            return f"it redirects elsewhere (HTTP {status}), which is not followed; check its URL"
        return f"it answered HTTP {status}"
    if isinstance(leaf, httpx.TimeoutException):
        return "it stopped answering"
    if isinstance(leaf, httpx.TransportError):
        return "the connection failed"
    if isinstance(leaf, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(leaf, McpError):
        if leaf.error.code == SESSION_TERMINATED:
            return "it answered HTTP 404; check that the URL is its MCP endpoint"
        return f"it refused: {shorten(scrubber.scrub(leaf.error.message), 120)}"
    if isinstance(leaf, ValidationError):
        return "it answered something that is not MCP"
    return f"it failed ({type(leaf).__name__})"


class Connection:
    """One server's session and its tools. Create and use it on one event loop (the registry's)."""

    def __init__(
        self,
        server: ToolServer,
        *,
        scrubber: Scrubber,
        on_change: Callable[[], None],
        refresh_interval: float,
        read_timeout: float,
        max_response_bytes: int,
    ) -> None:
        self.server = server
        self.tools: tuple[ListedTool, ...] = ()
        self.status = ServerStatus(server.name, ok=False, tools=0, reason="connecting")
        self._scrubber = scrubber
        self._on_change = on_change
        self._refresh_interval = refresh_interval
        self._read_timeout = read_timeout
        self._max_bytes = max_response_bytes
        # The session calls may use (None while there is none, or it is being left), and the one being served.
        self._live: _Live | None = None
        self._current: _Live | None = None
        self._wake = asyncio.Event()
        self._restart = False
        self._too_large = False
        self._closing = False
        # Futures of those waiting for the next attempt (to connect, or to read the tools), and for this one.
        self._waiters: list[asyncio.Future[None]] = []
        self._pending: list[asyncio.Future[None]] = []
        self._problems: tuple[str, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # LIFECYCLE

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp-server-{self.server.name}")

    async def close(self, *, wait: float) -> None:
        """End the session, politely (the server is told) when that takes less than `wait` seconds; a connection
        still being tried is dropped at once."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        _, pending = await asyncio.wait({task}, timeout=wait if self._live is not None else 0)
        for left in (*pending, *self._background):
            left.cancel()
        await asyncio.gather(task, *self._background, return_exceptions=True)

    def refresh(self) -> asyncio.Future[None]:
        """Ask for the tool list to be read again now (or a connection to be tried now, when there is none);
        the future is done when that attempt is over, whatever its outcome."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        return waiter

    async def _reconnect(self, stale: _Live) -> None:
        """Leave `stale`, a session the server no longer knows, for a new one (unless that is under way or done),
        and wait until the new one has been tried."""
        if self._live is stale:
            self._restart = True
            self._live = None
        if self._live is None:
            await self.refresh()

    def _begin_attempt(self) -> None:
        """Those who asked so far wait for the attempt that starts now; those who ask later, for the next."""
        self._pending += self._waiters
        self._waiters = []

    def _end_attempt(self) -> None:
        pending, self._pending = self._pending, []
        for waiter in pending:
            if not waiter.done():
                waiter.set_result(None)

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if woken; at once when someone waits for an attempt."""
        if not self._waiters:
            with anyio.move_on_after(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def _run(self) -> None:
        pause = 1.0
        while not self._closing:
            self._restart = self._too_large = False
            reason: str | None = None
            worked = False
            self._begin_attempt()
            try:
                await self._serve()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # an anyio group may hold a cancellation beside the cause
                # A session that failed at once counts as not working: a server that fails each time just after
                # opening is not reconnected to in a tight loop.
                worked = self._current is not None and time.monotonic() - self._current.since > MIN_WORKING

                reason = _reason(error, scrubber=self._scrubber, cap=self._max_bytes)
                if self._too_large:
                    reason = f"it sent an answer over {self._max_bytes:,} bytes"
            finally:
                current, self._current, self._live = self._current, None, None
                if current is not None:
                    left = "the connection was closed" if self._closing else "the server restarted during the call"
                    current.end(reason or left)
            if self._closing:
                break
            if reason is None:  # left on purpose, for a new session: at once
                continue
            if worked:
                # It was working: a new session at once, its tools still offered meanwhile (a call waits for the
                # session); only if that fails too is the server down.
                pause = 1.0
                continue
            self._set_down(reason)
            self._end_attempt()
            await self._pause(pause)
            pause = min(pause * 2, MAX_PAUSE, self._refresh_interval)
        self._set_down("closed")
        self._begin_attempt()
        self._end_attempt()

    def _exceeded(self) -> None:
        """The byte cap tripped: the message cannot be read, so the calls on this session end now."""
        self._too_large = True
        if self._current is not None:
            self._current.end(f"it sent an answer over {self._max_bytes:,} bytes")
        self._restart = True
        self._wake.set()

    async def _serve(self) -> None:
        """One session, from opening to leaving; returns when asked to leave, else raises what ended it."""
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=self._read_timeout)
        transport = _CappedTransport(self._max_bytes, self._exceeded)
        headers = dict(self.server.headers)
        async with (
            httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport) as client,
            streamable_http_client(self.server.url, http_client=client) as (read, write, _),
            _ToolSession(read, write, message_handler=self._on_message, client_info=CLIENT_INFO) as session,
        ):
            with anyio.fail_after(CONNECT_TIMEOUT):
                await session.initialize()
                await self._read_tools(session)
            live = self._current = self._live = _Live(session)
            self._set_up()
            self._end_attempt()
            while True:
                await self._pause(self._refresh_interval)
                if self._too_large:
                    raise _TooLargeError("over the cap")
                if self._closing:
                    return
                if self._restart:
                    await self._drain(live)
                    return
                self._begin_attempt()
                try:
                    with anyio.fail_after(CONNECT_TIMEOUT):
                        await self._read_tools(session)
                except McpError as error:
                    if error.error.code != SESSION_TERMINATED:
                        raise
                    self._live = None  # the server restarted: a new session, quietly
                    await self._drain(live)
                    return
                self._set_up()
                self._end_attempt()

    @staticmethod
    async def _drain(live: _Live) -> None:
        """Give the calls on a session the server no longer knows a moment to learn it (and be sent again)."""
        with anyio.move_on_after(RESTART_GRACE):
            await live.idle.wait()

    async def _read_tools(self, session: ClientSession) -> None:
        tools: list[Tool] = []
        page = await session.list_tools()
        tools += page.tools
        for _ in range(MAX_PAGES - 1):
            if not page.nextCursor or len(tools) > MAX_TOOLS_PER_SERVER:
                break
            page = await session.list_tools(params=PaginatedRequestParams(cursor=page.nextCursor))
            tools += page.tools
        kept, problems = check_tools(tools, scrubber=self._scrubber)
        if tuple(problems) != self._problems:
            for problem in problems:
                logger.warning("MCP server %s: %s.", self.server.name, problem)
        self._problems = tuple(problems)
        self.tools = tuple(kept)

    async def _on_message(
        self, message: RequestResponder[ServerRequest, ClientResult] | ServerNotification | Exception
    ) -> None:
        if isinstance(message, ServerNotification) and isinstance(message.root, ToolListChangedNotification):
            self._wake.set()
        elif isinstance(message, Exception):
            logger.debug("MCP server %s sent something unreadable (%s).", self.server.name, type(message).__name__)

    # STATUS

    def _set_up(self) -> None:
        status = ServerStatus(self.server.name, ok=True, tools=len(self.tools))
        if status != self.status:
            logger.info("MCP server %s: %d tool(s) offered.", self.server.name, status.tools)
        self.status = status
        self._on_change()

    def _set_down(self, reason: str) -> None:
        status = ServerStatus(self.server.name, ok=False, tools=0, reason=reason)
        if status != self.status and reason != "closed":
            logger.warning("MCP server %s is unavailable (%s): its tools are left out.", self.server.name, reason)
        changed = bool(self.tools) or self.status.ok
        self.tools = ()
        self.status = status
        if changed:
            self._on_change()

    # CALLS

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call `tool` on the open session (waiting for one to open, if needed). Raises `ServerUnavailableError`
        when there is none or it ends before the answer, `McpError` when the server refuses the call."""
        for attempt in range(2):
            live = self._live
            if live is None or live.ended.done():
                await self.refresh()
                live = self._live
                if live is None or live.ended.done():
                    raise ServerUnavailableError(self.status.reason or "not connected")
            live.calls += 1
            live.idle.clear()
            try:
                result = await self._call_on(live, tool, arguments)
            except McpError as error:
                if error.error.code != SESSION_TERMINATED or attempt:
                    raise
            else:
                return result
            finally:
                live.calls -= 1
                if not live.calls:
                    live.idle.set()
            await self._reconnect(live)
        raise ServerUnavailableError("the server lost the session twice")

    async def _call_on(self, live: _Live, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        sent: list[int] = []
        task = asyncio.ensure_future(self._send(live.session, tool, arguments, sent))
        either: set[asyncio.Future[Any]] = {task, live.ended}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            if sent:
                self._cancel_on_server(live.session, sent[0])
            raise
        if not task.done():
            task.cancel()
            raise ServerUnavailableError(live.ended.result())
        return task.result()

    @staticmethod
    async def _send(session: ClientSession, tool: str, arguments: dict[str, Any], sent: list[int]) -> CallToolResult:
        # The id the session gives this request, read just before it takes it (nothing runs in between), so that
        # the server can be told to stop the call if it is abandoned.
        request_id = getattr(session, "_request_id", None)
        if isinstance(request_id, int):
            sent.append(request_id)
        return await session.call_tool(tool, arguments)

    def _cancel_on_server(self, session: ClientSession, request_id: int) -> None:
        """Tell the server that the call `request_id` is abandoned (MCP's `notifications/cancelled`), in the
        background, at most for a second: a server that ignores it lets the call run on; its late answer is then
        dropped by the session, which stays open for the next call."""

        async def notify() -> None:
            params = CancelledNotificationParams(requestId=request_id, reason="abandoned by the client")
            with contextlib.suppress(Exception), anyio.move_on_after(1.0):
                await session.send_notification(ClientNotification(CancelledNotification(params=params)))

        task = asyncio.get_running_loop().create_task(notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
