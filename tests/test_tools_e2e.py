"""The chat model calls the tools of MCP servers, through the launched app: a real MCP server built on the official
SDK (tests/support/mcp_server.py: a tool that answers, one that hangs, one that fails), and the test model server
streaming tool calls as OpenAI-compatible servers do."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from playwright.sync_api import expect

from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.browser import chromium
from tests.support.fake_openai import MODEL, Behaviour, FakeOpenAI, free_port
from tests.support.mcp_server import McpServer

pytestmark = pytest.mark.e2e

OWNER_KEY = "sk-owner-key-never-for-tools-5a9c"
HISTORY_SECRET = "history-secret-never-for-tools-77"
TOOL_KEY = "calc-server-key-0123456789"


@pytest.fixture(scope="module")
def calc() -> Iterator[McpServer]:
    with McpServer(name="calc", required_headers={"authorization": f"Bearer {TOOL_KEY}"}) as server:
        yield server


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour()) as server:
        yield server


@pytest.fixture
def upstream(model_server: FakeOpenAI) -> FakeOpenAI:
    model_server.reset()
    return model_server


def tools_env(model_server: FakeOpenAI, calc: McpServer, *, down: str, **env: str) -> dict[str, str]:
    """An app whose model calls tools, with the calc server (its key in MCP_HEADERS) and one that is down."""
    return fake_backed(
        model_server,
        OPENAI_API_KEY=OWNER_KEY,
        HISTORY_SECRET=HISTORY_SECRET,
        TOOL_MODELS=MODEL,
        MCP_SERVERS=f"calc={calc.url},gone={down}",
        MCP_HEADERS=json.dumps({"calc": {"Authorization": f"Bearer {TOOL_KEY}"}}),
        TOOL_TIMEOUT="2",
        MAX_TOOL_STEPS="3",
        RATE_LIMIT_PER_IP="none",
        RATE_LIMIT_PER_SESSION="none",
        **env,
    )


@pytest.fixture(scope="module")
def target(model_server: FakeOpenAI, calc: McpServer, tmp_path_factory) -> Iterator[RunningApp]:
    down = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there: down at start-up
    with running_app(tmp_path_factory.mktemp("tools"), **tools_env(model_server, calc, down=down)) as app:
        wait_for_tools(app, "calc")
        yield app


def wait_for_tools(app: RunningApp, server: str, timeout: float = 30.0) -> None:
    """Start-up waits at most START_WAIT for a server and the app serves without it until it answers; a busy
    runner's first MCP handshake can take longer than that, so the tests wait for the app's own word."""
    deadline = time.monotonic() + timeout
    offered = re.compile(rf"MCP server {re.escape(server)}: [1-9]\d* tool\(s\) offered")
    while not offered.search(app.log()):
        assert time.monotonic() < deadline, f"{server}'s tools were not offered in {timeout:g} s:\n{app.log()}"
        time.sleep(0.05)


def ask(app: RunningApp, message: str = "Use the tool") -> str:
    answer: str = Client(app.url, verbose=False).predict(message, api_name="/ask")
    return answer


class TestTheLoop:
    def test_a_call_and_its_result_reach_the_model(self, target, upstream, calc):
        """The model is offered the calc server's tools; it calls add; the result goes back; it answers."""
        upstream.behaviour.tool_calls = (("calc__add", '{"a": 2, "b": 3}'),)
        assert ask(target) == "Tool said: 5"
        first, second = upstream.requests
        assert {tool["function"]["name"] for tool in first["tools"]} >= {"calc__add", "calc__hang", "calc__fail"}
        asked, answered = second["messages"][-2:]
        assert asked["role"] == "assistant"
        assert asked["tool_calls"][0]["function"] == {"name": "calc__add", "arguments": '{"a": 2, "b": 3}'}
        assert answered == {"role": "tool", "tool_call_id": asked["tool_calls"][0]["id"], "content": "5"}

    def test_calls_of_one_round_run_together(self, target, upstream):
        """Two calls in one round: both results go back in one request."""
        upstream.behaviour.tool_calls = (("calc__add", '{"a": 1, "b": 1}'), ("calc__lookup", '{"city": "oslo"}'))
        assert ask(target) == "Tool said: 2 | Oslo: -3 °C, snow"
        assert len(upstream.requests) == 2

    def test_an_unknown_tool_or_bad_arguments_go_back_to_the_model(self, target, upstream):
        """Not a crash: the model reads what was wrong and answers."""
        upstream.behaviour.tool_calls = (("calc__nope", "{}"), ("calc__add", '{"a": "two"'))
        answer = ask(target)
        assert answer.startswith("Tool said: ")
        unknown, broken = upstream.requests[-1]["messages"][-2:]
        assert "calc__add" in unknown["content"]  # the tools there are, named
        assert broken["role"] == "tool"

    def test_a_failing_tool_is_an_error_the_model_reads(self, target, upstream):
        upstream.behaviour.tool_calls = (("calc__fail", '{"reason": "out of paper"}'),)
        assert "out of paper" in ask(target)

    def test_a_model_that_never_stops_calling_ends_at_max_tool_steps(self, target, upstream):
        upstream.behaviour.tool_calls, upstream.behaviour.call_forever = (("calc__add", '{"a": 1, "b": 2}'),), True
        with pytest.raises(AppError, match=r"still calling tools after 3 rounds \(MAX_TOOL_STEPS\)"):
            ask(target)
        assert len(upstream.requests) == 3

    def test_a_hanging_tool_ends_the_reply_at_tool_timeout(self, target, upstream, calc):
        """The reply ends with the notice within seconds, and the server hears the call was given up."""
        upstream.behaviour.tool_calls = (("calc__hang", "{}"),)
        started = time.monotonic()
        with pytest.raises(AppError, match=r"calc__hang did not answer within 2 s \(TOOL_TIMEOUT\)"):
            ask(target)
        assert time.monotonic() - started < 15
        assert len(upstream.requests) == 1

    def test_only_a_model_that_calls_tools_is_offered_them(self, target, upstream):
        """A plain chat without tool calls is answered in one request; the next request offers the tools."""
        assert ask(target, "Hello") == "You said: Hello"
        assert len(upstream.requests) == 1


class TestServers:
    def test_no_credential_reaches_a_tool_server_but_its_own(self, target, upstream, calc):
        """Every request the tool server received carries its own key and none of the Space's secrets."""
        upstream.behaviour.tool_calls = (("calc__add", '{"a": 1, "b": 1}'),)
        ask(target)
        seen = json.dumps([request.headers for request in calc.requests])
        assert calc.requests
        for secret in (OWNER_KEY, HISTORY_SECRET):
            assert secret not in seen
        assert all(request.headers.get("authorization") == f"Bearer {TOOL_KEY}" for request in calc.requests)


@pytest.mark.browser
def test_the_page_shows_each_call_then_the_answer_and_keeps_them(target, upstream, tmp_path: Path):
    """Chromium: the status line names the tools and the server that was down at start-up (the Space runs on);
    the step names the tool, shows its arguments and result, then the answer; after a reload the saved chat still
    shows the step."""
    upstream.behaviour.tool_calls = (("calc__add", '{"a": 20, "b": 22}'),)
    upstream.behaviour.delay = 0.05
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        page.goto(target.url)
        expect(page.locator("#status-line")).to_contain_text("Tools: calc (8); unavailable: gone (cannot connect).")
        page.locator("#message textarea").fill("What is 20 + 22?")
        page.locator("#message textarea").press("Enter")
        expect(page.locator("#chatbot")).to_contain_text("🔧 calc__add")
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("Tool said: 42")
        page.get_by_text("🔧 calc__add").click()
        expect(page.locator("#chatbot")).to_contain_text('{"a": 20, "b": 22}')
        expect(page.locator("#past-chats input")).to_have_count(1)
        page.reload()
        expect(page.locator("#chatbot")).to_contain_text("🔧 calc__add")
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("Tool said: 42")
        page.context.close()
