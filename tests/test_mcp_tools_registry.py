"""Tests for services/mcp_tools: the registry against real MCP servers (tests/support/mcp_server.py, the official
SDK over streamable HTTP on 127.0.0.1), through the official client, with nothing patched.

Calls and their results, a model's mistakes, a tool that hangs or fails or answers too much, a server that is down
at start-up, dies between calls or comes back, sessions reused, and what each server receives: its own headers,
and no secret of the Space's or a visitor's. The calls on one running server are `unit` (fast, in-process); the
tests that start, stop and restart servers are `e2e`. pytest-asyncio is not used: each test runs its coroutine with
`asyncio.run`, on a loop other than the registry's, as Gradio's would be.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import anyio
import pytest
from mcp import ClientSession

from services.config import Settings, load_settings
from services.mcp_tools import ServerStatus, ToolRegistry, ToolResult, ToolServer
from services.redact import Scrubber
from tests.support.mcp_server import TOOL_NAMES, McpServer

T = TypeVar("T")

OWNER_KEY = "sk-owner-key-0123456789"
VISITOR_TOKEN = "hf_visitor_token_abcdef0123"
TIMEOUT = 1.0
# For the tests of a server's life: long enough for a reconnection on a loaded machine.
PATIENT = 5.0
# What the tests wait for the servers' first answers: the app waits START_WAIT and serves on, but a test that reads
# the tools at once needs every answer in, however busy the machine.
FIRST_ANSWERS = 30.0
MAX_CHARS = 1_000


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def call(registry: ToolRegistry, name: str, arguments: Any = None, **kwargs: Any) -> ToolResult:
    return run(registry.call(name, arguments, **kwargs))


def eventually(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def ready(registry: ToolRegistry) -> ToolRegistry:
    """The registry started, with every server's first answer in (or its failure)."""
    registry.start(wait=FIRST_ANSWERS)
    return registry


def settings_for(*servers: tuple[str, McpServer], headers: str | None = None) -> Settings:
    env = {
        "OPENAI_API_KEY": OWNER_KEY,
        "HF_TOKEN": "hf_owner_token_0123456789",
        "HISTORY_SECRET": "history-secret-0123456789",
        "OAUTH_CLIENT_SECRET": "oauth-secret-0123456789-0123456789",
        "APP_AUTH": "ada:app-password-0123",
        "MCP_SERVERS": ",".join(f"{name}={server.url}" for name, server in servers),
        "TOOL_TIMEOUT": str(TIMEOUT),
        "MAX_TOOL_RESULT_CHARS": str(MAX_CHARS),
    }
    if headers is not None:
        env["MCP_HEADERS"] = headers
    return load_settings(env)


@pytest.fixture(scope="module")
def server() -> Iterator[McpServer]:
    with McpServer(secret=OWNER_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def registry(server: McpServer) -> Iterator[ToolRegistry]:
    with ready(ToolRegistry.from_settings(settings_for(("s", server)))) as tools:
        yield tools


@pytest.fixture
def tools(registry: ToolRegistry, server: McpServer) -> ToolRegistry:
    """The module's registry, its server's record cleared."""
    server.reset()
    return registry


@pytest.mark.unit
class TestTools:
    def test_every_tool_offered_in_openai_shape(self, tools: ToolRegistry):
        """Each tool of the server, named `<server>__<tool>`, with its description and an object schema."""
        offered = tools.tools()
        assert [tool["function"]["name"] for tool in offered] == [f"s__{name}" for name in TOOL_NAMES]
        add = offered[0]
        assert add["type"] == "function"
        assert add["function"]["description"] == "Add two whole numbers."
        assert add["function"]["parameters"]["type"] == "object"
        assert add["function"]["parameters"]["required"] == ["a", "b"]
        assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool["function"]["name"]) for tool in offered)

    def test_status(self, tools: ToolRegistry):
        """The page's line: the server answers, with its seven tools."""
        assert tools.status() == [ServerStatus("s", ok=True, tools=len(TOOL_NAMES), reason="")]

    def test_specs_lead_back_to_the_server(self, tools: ToolRegistry):
        """Each name the model calls maps to its server and the server's own name for it."""
        assert [(spec.name, spec.server, spec.tool) for spec in tools.specs()][:2] == [
            ("s__add", "s", "add"),
            ("s__lookup", "s", "lookup"),
        ]


@pytest.mark.unit
class TestCalls:
    def test_a_call_and_its_result(self, tools: ToolRegistry, server: McpServer):
        """The model's JSON arguments reach the tool; its answer comes back as text, timed."""
        result = call(tools, "s__add", '{"a": 2, "b": 3}')
        assert (result.name, result.server, result.text, result.outcome) == ("s__add", "s", "5", "ok")
        assert result.failed is False
        assert 0 < result.duration < TIMEOUT
        assert result.message("call_7") == {"role": "tool", "tool_call_id": "call_7", "content": "5"}
        assert server.calls == ["add"]

    def test_arguments_as_a_mapping(self, tools: ToolRegistry):
        """Arguments already parsed are taken as they are."""
        assert call(tools, "s__lookup", {"city": "Oslo"}).text == "Oslo: -3 °C, snow"

    def test_calls_of_one_round_run_together(self, tools: ToolRegistry):
        """Three calls gathered are at the server at once: each waits there for the other two."""

        async def round_of_three() -> list[ToolResult]:
            return await asyncio.gather(*(tools.call("s__meet", {"count": 3, "seconds": 5}) for _ in range(3)))

        assert [result.text for result in run(round_of_three())] == ["met"] * 3

    def test_unknown_tool(self, tools: ToolRegistry, server: McpServer):
        """A name the model made up gets an error it can act on, listing the tools; no server is called."""
        result = call(tools, "s__multiply", '{"a": 2}')
        assert result.outcome == "unknown_tool"
        assert result.text.startswith("Error: there is no tool named 's__multiply'. The tools are: s__add, ")
        assert server.calls == []

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ('{"a": 2, "b": ', "Error: The arguments are not valid JSON: Expecting value (character 14)."),
            ("[2, 3]", "Error: The arguments must be a JSON object of named arguments, not a list."),
            ('{"a": 2}', "Error: Missing required argument(s): b."),
        ],
    )
    def test_bad_arguments(self, tools: ToolRegistry, server: McpServer, arguments: str, message: str):
        """Broken or incomplete arguments go back to the model as an error it can correct; the tool is not
        called."""
        result = call(tools, "s__add", arguments)
        assert result.outcome == "bad_arguments"
        assert result.text.startswith(message)
        assert server.calls == []

    def test_arguments_the_server_refuses(self, tools: ToolRegistry):
        """Arguments of the wrong type reach the server, whose own error comes back to the model."""
        result = call(tools, "s__add", {"a": "two", "b": 3})
        assert result.outcome == "error"
        assert result.text.startswith("The tool reported an error: Error executing tool add: 1 validation error")

    def test_a_hanging_tool_times_out_and_the_server_is_told(self, tools: ToolRegistry, server: McpServer):
        """Past TOOL_TIMEOUT the model gets a timeout, and the server is told to stop the call."""
        result = call(tools, "s__hang", {})
        assert result.outcome == "timeout"
        assert result.text == f"Error: the tool did not answer within {TIMEOUT:g} s."
        assert TIMEOUT <= result.duration < TIMEOUT + 1.0
        assert eventually(lambda: "hang cancelled" in server.calls)
        assert call(tools, "s__add", {"a": 1, "b": 1}).text == "2"

    def test_stop_ends_the_wait_at_once(self, tools: ToolRegistry, server: McpServer):
        """Cancelling the awaiting task (the visitor pressed Stop) ends it at once; the server is told, and the
        session goes on serving calls."""

        async def stop_a_call() -> float:
            task = asyncio.create_task(tools.call("s__hang", {}))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.perf_counter() - started

        assert run(stop_a_call()) < TIMEOUT / 2  # well before the timeout would have ended it
        assert eventually(lambda: "hang cancelled" in server.calls)
        assert call(tools, "s__add", {"a": 1, "b": 2}).text == "3"
        assert server.initializations == 0  # no new session: the one of the module goes on

    def test_a_failing_tool(self, tools: ToolRegistry):
        """A tool that raises gives the model an error result, not an exception."""
        result = call(tools, "s__fail", {"reason": "disk full"})
        assert result.outcome == "error"
        assert result.failed is True
        assert result.text == "The tool reported an error: Error executing tool fail: the tool failed: disk full"

    def test_a_huge_result_is_capped(self, tools: ToolRegistry):
        """A long answer is cut to MAX_TOOL_RESULT_CHARS, with a notice."""
        result = call(tools, "s__huge", {"chars": 200_000})
        assert result.outcome == "ok"
        assert result.truncated is True
        assert result.text.startswith("0123456789" * 100)
        assert result.text.endswith("\n\n[Result cut: the first 1,000 of 200,000 characters.]")
        assert len(result.text) < MAX_CHARS + 100

    def test_a_result_carrying_a_secret(self, tools: ToolRegistry):
        """A result holding the Space's key has it masked; markup stays text for the page to render as text."""
        result = call(tools, "s__leak", secrets=[VISITOR_TOKEN])
        assert OWNER_KEY not in result.text
        assert result.text == '<img src=x onerror="alert(1)"> the key is *** [click](javascript:alert(1))'

    def test_arguments_carrying_a_secret_are_not_sent(self, tools: ToolRegistry, server: McpServer):
        """A model tricked into sending the visitor's token (or the Space's key) to a tool is refused."""
        for secret in (VISITOR_TOKEN, OWNER_KEY):
            result = call(tools, "s__lookup", {"city": f"Oslo {secret}"}, secrets=[VISITOR_TOKEN])
            assert result.outcome == "bad_arguments"
            assert secret not in result.text
        assert server.calls == []

    def test_pictures_are_described(self, tools: ToolRegistry):
        """An image and a resource link are named, not fetched."""
        assert call(tools, "s__picture").text == (
            "[image: image/png, 70 bytes, not shown]\n"
            "[resource link: report <https://files.example/report.pdf>, not fetched]"
        )

    def test_one_session_serves_every_call(self, tools: ToolRegistry, server: McpServer):
        """Ten calls go over the module's one session: no new session, one POST each."""
        for number in range(10):
            assert call(tools, "s__add", {"a": number, "b": 0}).text == str(number)
        posts = [r for r in server.requests if r.method == "POST"]
        assert server.initializations == 0
        assert len(posts) == 10
        assert len({r.session_id for r in posts}) == 1


@pytest.mark.e2e
class TestServers:
    def test_down_at_start_up_then_back_on_refresh(self):
        """A server that is down does not hold start-up; its tools are left out and the status says why; once
        it answers, a refresh brings its tools in."""
        with McpServer() as up:
            down = McpServer()
            registry = ToolRegistry([ToolServer("up", up.url), ToolServer("down", down.url)], timeout=PATIENT)
            begun = time.perf_counter()
            with ready(registry):
                # The refused connection is an answer: start-up ends with the other server's, not at the wait.
                assert time.perf_counter() - begun < FIRST_ANSWERS / 3
                assert registry.status() == [
                    ServerStatus("up", ok=True, tools=len(TOOL_NAMES)),
                    ServerStatus("down", ok=False, tools=0, reason="cannot connect"),
                ]
                assert all(tool["function"]["name"].startswith("up__") for tool in registry.tools())
                result = call(registry, "down__add", {"a": 1, "b": 2})
                assert result.outcome == "unknown_tool"
                with down:
                    statuses = run(registry.refresh())
                    assert statuses[1] == ServerStatus("down", ok=True, tools=len(TOOL_NAMES))
                    assert len(registry.tools()) == 2 * len(TOOL_NAMES)
                    assert call(registry, "down__add", {"a": 1, "b": 2}).text == "3"

    def test_a_silent_server_does_not_hold_start_up(self):
        """A server that accepts connections and never answers costs start-up `wait` seconds, no more."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
            registry = ToolRegistry([ToolServer("silent", url)], timeout=PATIENT)
            started = time.perf_counter()
            registry.start(wait=0.3)
            try:
                assert time.perf_counter() - started < 1.0
                assert registry.status() == [ServerStatus("silent", ok=False, tools=0, reason="connecting")]
                assert registry.tools() == []
            finally:
                registry.close()
            assert time.perf_counter() - started < 2.0

    def test_an_answer_past_the_byte_cap_ends_the_session(self, server: McpServer):
        """An answer past the byte cap (2 MiB here) is not read: the call fails at once with the reason, and a
        new session serves the next call."""
        with ready(
            ToolRegistry([ToolServer("s", server.url)], timeout=PATIENT, max_result_chars=MAX_CHARS)
        ) as registry:
            server.reset()
            result = call(registry, "s__huge", {"chars": 3_000_000})
            assert result.outcome == "unavailable"
            assert result.text == (
                "Error: the tool's server is unavailable (it sent an answer over 2,097,152 bytes); do without this "
                "tool for now."
            )
            assert call(registry, "s__add", {"a": 1, "b": 2}).text == "3"
            assert server.initializations == 1
            assert registry.status()[0].ok is True

    def test_a_server_restarted_between_calls(self):
        """A server that restarted no longer knows the session: the next call opens a new one and succeeds."""
        with McpServer() as server, ready(ToolRegistry([ToolServer("s", server.url)], timeout=PATIENT)) as registry:
            assert call(registry, "s__add", {"a": 1, "b": 1}).text == "2"
            server.stop()
            server.start()
            assert call(registry, "s__add", {"a": 2, "b": 2}).text == "4"
            assert server.initializations == 2
            assert server.calls == ["add", "add"]

    def test_a_round_of_calls_after_a_restart(self):
        """Three calls of one round, each told the session is gone, are each sent again on one new session."""
        with McpServer() as server, ready(ToolRegistry([ToolServer("s", server.url)], timeout=PATIENT)) as registry:
            server.stop()
            server.start()

            async def round_of_three() -> list[ToolResult]:
                return await asyncio.gather(*(registry.call("s__add", {"a": n, "b": 1}) for n in range(3)))

            assert [result.text for result in run(round_of_three())] == ["1", "2", "3"]
            assert server.initializations == 2
            assert server.calls == ["add"] * 3

    def test_a_server_that_goes_down_and_comes_back(self):
        """A call to a server that went down fails at once with the reason, the status says so; once it is
        back, a refresh brings it in again."""
        with McpServer() as server, ready(ToolRegistry([ToolServer("s", server.url)], timeout=PATIENT)) as registry:
            server.stop()
            started = time.perf_counter()
            result = call(registry, "s__add", {"a": 1, "b": 1})
            assert (result.outcome, result.server) == ("unavailable", "s")
            assert result.text == (
                "Error: the tool's server is unavailable (cannot connect); do without this tool for now."
            )
            assert time.perf_counter() - started < 1.0
            assert registry.status() == [ServerStatus("s", ok=False, tools=0, reason="cannot connect")]
            assert registry.tools() == []
            server.start()
            assert run(registry.refresh())[0].ok is True
            assert call(registry, "s__add", {"a": 1, "b": 1}).text == "2"

    def test_a_server_down_is_noticed_without_a_call(self):
        """The periodic reading of the tool list notices a server that went away, and leaves its tools out."""
        with McpServer() as server:
            registry = ToolRegistry([ToolServer("s", server.url)], timeout=PATIENT, refresh_interval=0.2)
            with ready(registry):
                assert registry.status()[0].ok is True
                server.stop()
                assert eventually(lambda: not registry.status()[0].ok)
                assert registry.tools() == []

    def test_wrong_credentials_or_path_say_so(self):
        """A server that refuses the credentials, or a URL that is not its MCP endpoint, is left out with a
        reason the owner can act on."""
        with McpServer(required_headers={"Authorization": "Bearer right-token-123"}) as server:
            servers = [
                ToolServer("wrong_key", server.url, (("Authorization", "Bearer wrong-token-456"),)),
                ToolServer("right_key", server.url, (("Authorization", "Bearer right-token-123"),)),
                ToolServer(
                    "wrong_path", server.url.replace("/mcp", "/api"), (("Authorization", "Bearer right-token-123"),)
                ),
            ]
            with ready(ToolRegistry(servers, timeout=PATIENT)) as registry:
                assert registry.status() == [
                    ServerStatus("wrong_key", False, 0, "it refused the credentials (HTTP 401); check MCP_HEADERS"),
                    ServerStatus("right_key", True, len(TOOL_NAMES)),
                    ServerStatus(
                        "wrong_path", False, 0, "it answered HTTP 404; check that the URL is its MCP endpoint"
                    ),
                ]

    def test_same_tool_on_two_servers(self):
        """Two servers with an `add` each: two tools, each call reaching its own server."""
        with (
            McpServer() as a,
            McpServer() as b,
            ready(ToolRegistry.from_settings(settings_for(("a", a), ("b", b)))) as r,
        ):
            names = [tool["function"]["name"] for tool in r.tools()]
            assert "a__add" in names
            assert "b__add" in names
            assert call(r, "b__add", {"a": 1, "b": 2}).text == "3"
            assert (a.calls, b.calls) == ([], ["add"])

    def test_without_servers(self):
        """No MCP_SERVERS: nothing starts, no tools, and a call is an error result, not a crash."""
        with ToolRegistry.from_settings(Settings()) as registry:
            assert registry.tools() == []
            assert registry.status() == []
            result = call(registry, "s__add", "{}")
            assert (result.outcome, result.text) == ("unavailable", "Error: the tools are not available now.")


@pytest.mark.e2e
class TestCredentials:
    def test_each_server_receives_its_own_headers_and_no_secret(self):
        """With every secret of the Space set and a visitor's token in play, server `a` receives its own two
        headers on every request, server `b` none; neither ever receives another secret, the visitor's token, or
        an Authorization header it was not given."""
        headers = json.dumps({"a": {"Authorization": "Bearer a-token-0123456789", "X-Api-Key": "a-key-0123456789"}})
        with McpServer(secret=OWNER_KEY) as a, McpServer(secret=OWNER_KEY) as b:
            settings = settings_for(("a", a), ("b", b), headers=headers)
            with ready(ToolRegistry.from_settings(settings, scrubber=Scrubber(settings.secrets()))) as registry:

                async def every_kind_of_request() -> None:
                    names = ("a__add", "b__add", "a__leak", "b__leak", "a__hang", "b__hang")  # hang: a cancel too
                    await asyncio.gather(*(registry.call(n, {"a": 1, "b": 2}, secrets=[VISITOR_TOKEN]) for n in names))
                    await registry.refresh()

                run(every_kind_of_request())
            own = {"Bearer a-token-0123456789", "a-token-0123456789", "a-key-0123456789"}
            forbidden = {*settings.secrets(), VISITOR_TOKEN} - own
            for server, expected in ((a, own), (b, set())):
                assert server.requests, "the server was never called"
                for request in server.requests:
                    seen = " ".join(f"{k}: {v}" for k, v in request.headers.items())
                    assert not [secret for secret in forbidden if secret in seen], request
                    assert {secret for secret in own if secret in seen} == expected, request
                    if not expected:
                        assert "authorization" not in request.headers
                        assert "x-api-key" not in request.headers
                    else:
                        assert request.headers["authorization"] == "Bearer a-token-0123456789"
                        assert request.headers["x-api-key"] == "a-key-0123456789"


@pytest.mark.unit
class TestClientInternals:
    def test_the_client_hooks_this_module_relies_on(self):
        """The session's output-schema check (skipped here) and its request counter (read to tell a server
        which call is abandoned) still exist in the pinned `mcp`; an upgrade that renames them fails here."""
        send, receive = anyio.create_memory_object_stream[Any](0)
        with send, receive:
            session = ClientSession(receive, send)
            assert callable(session._validate_tool_result)
            assert session._request_id == 0
