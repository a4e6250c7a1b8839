"""The tools of the MCP servers of MCP_SERVERS, offered to the chat model and called on its behalf.

`ToolRegistry` runs its own event loop in a thread of its own, where each server's `Connection` keeps a session
open. A caller on any event loop (Gradio's, a test's) awaits `call()`; the call runs on the registry's loop and
its answer comes back, so a session never depends on a loop that may end, and the parsing of servers' answers
never runs on Gradio's loop. Cancelling the awaiting task (the visitor pressed Stop) ends the wait at once; the
server is told the call is abandoned.

Start-up never waits long for a server (`start(wait=...)`): one that is down, or slow, is left out of `tools()`
and shown in `status()` until it answers; nothing a server does stops the Space.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from mcp import McpError
from mcp.types import CallToolResult

from services.config import Settings
from services.mcp_tools.catalog import ArgumentsError, ToolSpec, build_catalog, parse_arguments
from services.mcp_tools.connection import (
    CONNECT_TIMEOUT,
    Connection,
    ServerStatus,
    ServerUnavailableError,
    ToolServer,
)
from services.mcp_tools.results import ToolOutcome, ToolResult, render
from services.redact import Scrubber, shorten

__all__ = ["START_WAIT", "ToolRegistry", "servers_from_settings"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds start-up waits for the servers' first answers; one that takes longer joins when it answers.
START_WAIT = 2.0
# Seconds `close()` gives the sessions to end politely.
CLOSE_WAIT = 2.0
# A message of a server's answer may take this many bytes per character of MAX_TOOL_RESULT_CHARS (JSON escapes,
# and FastMCP's copy of the answer as structured content), and never fewer than the floor.
BYTES_PER_RESULT_CHAR = 16
MIN_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_NAMES_LISTED = 30


def servers_from_settings(settings: Settings) -> tuple[ToolServer, ...]:
    """The servers of MCP_SERVERS, each with its own headers of MCP_HEADERS, and only those."""
    headers = dict(settings.mcp_headers)
    return tuple(ToolServer(name, url, headers.get(name, ())) for name, url in settings.mcp_servers)


class ToolRegistry:
    """The MCP servers' tools: their list for the model (`tools()`), their servers' state (`status()`), and
    `call()`. Use it as a context manager, or `start()` and `close()`.

    Args:
        servers: the servers, with their headers.
        timeout: seconds one call may take (TOOL_TIMEOUT).
        max_result_chars: longest result text (MAX_TOOL_RESULT_CHARS); the rest is cut, with a notice.
        refresh_interval: seconds between two readings of a server's tool list.
        scrubber: masks the Space's secrets in results; made from nothing (masking only a call's `secrets`)
            if not given.
    """

    def __init__(
        self,
        servers: Sequence[ToolServer],
        *,
        timeout: float = 30.0,
        max_result_chars: int = 20_000,
        refresh_interval: float = 300.0,
        scrubber: Scrubber | None = None,
    ) -> None:
        names = [server.name for server in servers]
        if len(set(names)) != len(names):
            raise ValueError("two MCP servers have the same name")
        self._servers = tuple(servers)
        self._timeout = timeout
        self._max_chars = max_result_chars
        self._refresh_interval = refresh_interval
        self._scrubber = scrubber or Scrubber(())
        self._max_bytes = max(MIN_RESPONSE_BYTES, BYTES_PER_RESULT_CHAR * max_result_chars)
        self._connections: dict[str, Connection] = {}
        # Replaced whole on the registry's loop, read from any thread: (tools by name, their OpenAI form).
        self._catalog: tuple[dict[str, ToolSpec], list[dict[str, Any]]] = ({}, [])
        self._problems: tuple[str, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, scrubber: Scrubber | None = None) -> ToolRegistry:
        """The registry of MCP_SERVERS, with TOOL_TIMEOUT, MAX_TOOL_RESULT_CHARS and MCP_REFRESH_MINUTES."""
        return cls(
            servers_from_settings(settings),
            timeout=settings.tool_timeout,
            max_result_chars=settings.max_tool_result_chars,
            refresh_interval=settings.mcp_refresh,
            scrubber=scrubber or Scrubber(settings.secrets()),
        )

    # LIFECYCLE

    def start(self, *, wait: float = START_WAIT) -> None:
        """Connect to every server, waiting at most `wait` seconds for their first answers. Without servers
        nothing is started."""
        if self._thread is not None or not self._servers:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mcp-tools", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._connect(wait), loop).result()

    async def _connect(self, wait: float) -> None:
        for server in self._servers:
            connection = Connection(
                server,
                scrubber=self._scrubber,
                on_change=self._rebuild,
                refresh_interval=self._refresh_interval,
                read_timeout=self._timeout + CONNECT_TIMEOUT,
                max_response_bytes=self._max_bytes,
            )
            self._connections[server.name] = connection
            connection.start()
        await self._refreshed(wait)

    def close(self) -> None:
        """End every session and stop the registry's thread; calls still waiting are cancelled."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=CLOSE_WAIT + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None
        self._catalog = ({}, [])

    async def _close(self) -> None:
        await asyncio.gather(*(c.close(wait=CLOSE_WAIT) for c in self._connections.values()))
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    def __enter__(self) -> ToolRegistry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # WHAT THE MODEL AND THE PAGE SEE

    def tools(self) -> list[dict[str, Any]]:
        """The tools of the servers that answer, as `tools=[...]` of an OpenAI-compatible request (the list is
        the caller's; the dicts in it are shared: do not change them)."""
        return list(self._catalog[1])

    def specs(self) -> tuple[ToolSpec, ...]:
        """The tools offered, with the server and the server's own name of each."""
        return tuple(self._catalog[0].values())

    def status(self) -> list[ServerStatus]:
        """Each server of MCP_SERVERS, in order: whether its tools are offered, how many, and if not, why."""
        reason = "connecting" if self._loop is not None else "not started"
        statuses = []
        for server in self._servers:
            connection = self._connections.get(server.name)  # absent while start() is making them
            statuses.append(connection.status if connection else ServerStatus(server.name, False, 0, reason))
        return statuses

    async def refresh(self, *, wait: float = CONNECT_TIMEOUT) -> list[ServerStatus]:
        """Read every server's tools again now, and try those that are down; waits at most `wait` seconds."""
        if self._loop is None:
            return self.status()
        await self._on_loop(self._refreshed(wait))
        return self.status()

    async def _refreshed(self, wait: float) -> None:
        waiters = [connection.refresh() for connection in self._connections.values()]
        if waiters:
            await asyncio.wait(waiters, timeout=wait)

    def _rebuild(self) -> None:
        """Make the catalog anew from every server's current tools (called on the registry's loop)."""
        listings = [(server.name, self._connections[server.name].tools) for server in self._servers]
        catalog, problems = build_catalog(listings)
        if tuple(problems) != self._problems:
            for problem in problems:
                logger.warning("MCP tools: %s.", problem)
        self._problems = tuple(problems)
        self._catalog = (catalog, [spec.openai() for spec in catalog.values()])

    async def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        assert loop is not None
        if asyncio.get_running_loop() is loop:
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))

    # CALLS

    async def call(
        self, name: str, arguments: str | Mapping[str, Any] | None, *, secrets: Sequence[str | None] = ()
    ) -> ToolResult:
        """Call the tool the model named, with the arguments it sent (JSON text, or a mapping).

        Never raises for anything a model or a server does: an unknown tool, arguments that do not parse or lack
        a required key, a timeout (TOOL_TIMEOUT), a server's error or its absence each give a `ToolResult` whose
        text tells the model what went wrong. `secrets` (the visitor's token) are masked in the result like the
        Space's own, and a call whose arguments hold one is refused. Cancelling the caller ends the wait at once.
        """
        started = time.perf_counter()
        if self._loop is None:
            return self._failure(name[:128], started, "unavailable", "Error: the tools are not available now.")
        return await self._on_loop(self._call(name, arguments, tuple(secrets), started))

    async def _call(
        self,
        name: str,
        arguments: str | Mapping[str, Any] | None,
        secrets: tuple[str | None, ...],
        started: float,
    ) -> ToolResult:
        catalog = self._catalog[0]
        spec = catalog.get(name)
        if spec is None:
            listed = ", ".join(list(catalog)[:MAX_NAMES_LISTED]) or "none"
            wanted = shorten(self._scrubber.scrub_known(name, *secrets), 80)
            text = f"Error: there is no tool named {wanted!r}. The tools are: {listed}."
            return self._failure(name[:128], started, "unknown_tool", text)
        try:
            values = parse_arguments(arguments, spec=spec)
        except ArgumentsError as error:
            return self._failure(name, started, "bad_arguments", f"Error: {error}", spec)
        text = arguments if isinstance(arguments, str) else json.dumps(values, default=str)
        if self._scrubber.scrub_known(text, *secrets) != text:
            refusal = "Error: the arguments hold a secret of this Space or its visitor; it is not sent to a tool."
            return self._failure(name, started, "bad_arguments", refusal, spec)
        try:
            result = await asyncio.wait_for(self._connections[spec.server].call(spec.tool, values), self._timeout)
        except asyncio.TimeoutError:
            text = f"Error: the tool did not answer within {self._timeout:g} s."
            return self._failure(name, started, "timeout", text, spec)
        except ServerUnavailableError as error:
            text = f"Error: the tool's server is unavailable ({error.reason}); do without this tool for now."
            return self._failure(name, started, "unavailable", text, spec)
        except McpError as error:
            detail = shorten(self._scrubber.scrub(error.error.message, *secrets), 300)
            return self._failure(name, started, "error", f"Error: the tool's server refused the call: {detail}", spec)
        except Exception as error:
            logger.warning("MCP tool %s of %s failed: %s.", spec.tool, spec.server, type(error).__name__)
            text = f"Error: the tool's server failed ({type(error).__name__})."
            return self._failure(name, started, "error", text, spec)
        return self._answer(spec, result, secrets, started)

    def _answer(
        self, spec: ToolSpec, result: CallToolResult, secrets: tuple[str | None, ...], started: float
    ) -> ToolResult:
        text, cut = render(result, limit=self._max_chars, scrubber=self._scrubber, extra=secrets)
        outcome: ToolOutcome = "error" if result.isError else "ok"
        duration = time.perf_counter() - started
        return ToolResult(spec.name, text, outcome, duration, truncated=cut, server=spec.server)

    @staticmethod
    def _failure(
        name: str, started: float, outcome: ToolOutcome, text: str, spec: ToolSpec | None = None
    ) -> ToolResult:
        server = spec.server if spec is not None else None
        return ToolResult(name, text, outcome, time.perf_counter() - started, server=server)
