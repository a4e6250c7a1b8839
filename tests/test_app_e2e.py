"""End-to-end: `python app.py` on 127.0.0.1 beside a fake OpenAI server, called through gradio_client."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import ROOT, RunningApp, app_env, start_app, stop_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(app: RunningApp) -> Client:
    return Client(app.url, verbose=False)


class TestChat:
    def test_reply_streams_and_ends_exact(self, client, fake):
        """The reply arrives in several growing updates, and the final value is the whole reply."""
        job = client.submit("one two three four five six", api_name="/chat")
        final = job.result()
        outputs = job.outputs()
        assert final == "You said: one two three four five six"
        assert len(set(outputs)) >= 2
        assert all(final.startswith(partial) for partial in outputs)
        assert outputs[-1] == final

    def test_cancelling_stops_the_backend_stream(self, client, fake):
        """Stop (a cancelled job, a closed tab) closes the request to the model server within a second."""
        fake.behaviour.tokens = 500  # 10 s of reply at 20 ms a token
        job = client.submit("long", api_name="/chat")
        deadline = time.monotonic() + 10
        while len(job.outputs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(job.outputs()) >= 2
        cancelled_at = time.monotonic()
        job.cancel()
        while not fake.disconnects and time.monotonic() < cancelled_at + 1:
            time.sleep(0.02)
        assert fake.disconnects, "the model server kept streaming after the job was cancelled"
        assert fake.disconnects[0] - cancelled_at < 1

    def test_parameters_reach_the_backend(self, client, fake):
        """System prompt, temperature and max tokens are sent as given."""
        reply = client.predict("alpha beta gamma delta", "Be terse.", 0.3, 3, api_name="/chat")
        request = fake.requests[-1]
        assert request["messages"][0] == {"role": "system", "content": "Be terse."}
        assert request["temperature"] == 0.3
        assert request["max_tokens"] == 3
        assert reply == "You said: alpha"  # the server honoured max_tokens=3

    def test_defaults_apply_when_only_the_message_is_given(self, client, fake):
        """Optional inputs fall back to the configured defaults."""
        client.predict("hi", api_name="/chat")
        request = fake.requests[-1]
        assert request["messages"][0] == {"role": "system", "content": "You are a helpful, concise assistant."}
        assert request["temperature"] == 0.7
        assert request["max_tokens"] == 512

    def test_a_session_is_one_conversation(self, app, fake):
        """The second call from one Client carries the first exchange; a new Client starts fresh."""
        first = Client(app.url, verbose=False)
        first.predict("my name is Ada", api_name="/chat")
        first.predict("what is my name", api_name="/chat")
        assert fake.requests[-1]["messages"][1:] == [
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "You said: my name is Ada"},
            {"role": "user", "content": "what is my name"},
        ]
        Client(app.url, verbose=False).predict("hello again", api_name="/chat")
        assert fake.requests[-1]["messages"][1:] == [{"role": "user", "content": "hello again"}]

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (("hi", "sys", 5.0, 10), "temperature"),  # above 2
            (("hi", "sys", 0.5, 0), "max_tokens"),  # below 1
            (("hi", "sys", 0.5, 10**6), "max_tokens"),  # above MAX_TOKENS_CAP
            (("   ", "sys", 0.5, 10), "message"),  # empty
        ],
    )
    def test_bad_input_is_refused_before_the_backend(self, client, fake, args, field):
        """The API bypasses the sliders; the server checks every value and names the field."""
        with pytest.raises(AppError, match=f"^{field}:"):
            client.predict(*args, api_name="/chat")
        assert fake.requests == []

    def test_server_error_is_clear_and_the_next_call_works(self, client, fake):
        """A backend 500 gives a readable error, and the app serves the next request."""
        fake.behaviour.faults.append(Fault(status=500))
        with pytest.raises(AppError, match=r"failed \(HTTP 500\)\. Try again in a moment\."):
            client.predict("first", api_name="/chat")
        assert client.predict("second", api_name="/chat") == "You said: second"

    def test_rejected_key_says_which_secret(self, client, fake):
        """A 401 names the secret to check."""
        fake.behaviour.faults.append(Fault(status=401))
        with pytest.raises(AppError, match=r"rejected the credentials \(HTTP 401\)\. Check the"):
            client.predict("hi", api_name="/chat")

    def test_cut_stream_keeps_the_partial_reply(self, client, fake):
        """A stream dropped mid-reply shows what arrived, then says it was cut."""
        fake.behaviour.faults.append(Fault(cut_after=3))
        job = client.submit("one two three four five", api_name="/chat")
        with pytest.raises(AppError, match="The reply was cut off"):
            job.result()
        assert job.outputs()[-1] == "You said: one"  # the three pieces sent before the cut


class TestTools:
    def test_greet(self, client):
        """/greet returns the seed's greeting."""
        assert client.predict("Ada", api_name="/greet") == "Hello, Ada!"

    def test_greet_refuses_an_empty_name(self, client):
        """An empty name is a clear error, not an odd greeting."""
        with pytest.raises(AppError, match="^name: is empty"):
            client.predict("  ", api_name="/greet")

    @pytest.mark.parametrize(
        ("api_name", "text", "expected"),
        [
            ("/reverse", "stressed", "desserts"),
            ("/upper", "abc", "ABC"),
            ("/lower", "ABC", "abc"),
            ("/title", "hello world", "Hello World"),
            ("/slugify", "Hello, World!", "hello-world"),
        ],
    )
    def test_text_tools(self, client, api_name, text, expected):
        """Each text tool answers under its own name."""
        assert client.predict(text, api_name=api_name) == expected

    def test_count(self, client):
        """/count returns the three counts, as whole numbers: characters, words, lines."""
        assert client.predict("one two\nthree", api_name="/count") == (13, 3, 2)

    def test_tool_size_limit(self, client):
        """Text over MAX_TOOL_CHARS is refused with the limit."""
        with pytest.raises(AppError, match="at most 100,000"):
            client.predict("x" * 100_001, api_name="/reverse")

    def test_counter_is_per_session(self, app, client):
        """One Client counts 1, 2; reset gives 0 then 1; a new Client starts at 1."""
        assert [client.predict(api_name="/increment") for _ in range(2)] == [1, 2]
        assert client.predict(api_name="/reset_counter") == 0
        assert client.predict(api_name="/increment") == 1
        assert Client(app.url, verbose=False).predict(api_name="/increment") == 1


class TestDocumentedUsage:
    def test_readme_snippet_runs(self, app):
        """The README's gradio_client snippet runs as written against a live app."""
        readme = (ROOT / "README.md").read_text()
        marked = re.search(r"runs this snippet against a live app.*?\n```python\n(.*?)```", readme, flags=re.S)
        assert marked, "README.md lost the snippet marked as run by tests/test_app_e2e.py"
        snippet = marked.group(1)
        assert "http://127.0.0.1:7860/" in snippet
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(snippet.replace("http://127.0.0.1:7860/", app.url), {})
        printed = [line for line in out.getvalue().splitlines() if not line.startswith("Loaded as API")]
        assert printed[0] == "Hello, Ada!"
        assert "You said: Name three primary colours." in printed
        assert printed[-1] == "1 2"

    def test_api_names_are_documented(self, client):
        """Every public endpoint appears in README.md, and every documented one exists."""
        readme = (ROOT / "README.md").read_text()
        names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert names == {
            "/chat", "/ask", "/greet", "/reverse", "/upper", "/lower", "/title", "/slugify", "/count", "/increment",
            "/reset_counter",
        }  # fmt: skip
        for name in names:
            assert f"`{name}`" in readme

    def test_help_lists_launch_options(self):
        """`python app.py --help` lists the seed's launch options."""
        out = subprocess.run(
            [sys.executable, "app.py", "--help"], cwd=ROOT, env=app_env(), capture_output=True, text=True, check=True
        ).stdout
        for option in ("--host", "--port", "--share", "--inbrowser"):
            assert option in out

    def test_every_model_call_shares_one_concurrency_limit(self):
        """The page's three reply events and /chat are one concurrency group with LOCAL_CONCURRENCY's limit, so one
        local generation at a time, whichever way it was asked for; nothing else is in that group."""
        code = (
            "from app import demo\n"
            "print(sorted((f.name, f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()"
            " if f.concurrency_id == 'chat'))"
        )
        env = app_env(
            OPENAI_BASE_URL="http://127.0.0.1:9/v1", LLM_MODEL="m", LLM_BACKEND="openai", CHAT_CONCURRENCY="3"
        )
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        expected = [("ask", "chat", 3), ("chat", "chat", 3), ("respond", "chat", 3), ("respond_example", "chat", 3)]
        assert result.stdout.strip() == str([*expected, ("respond_retry", "chat", 3)])

    def test_demo_is_importable(self):
        """`from app import demo` builds the Blocks without launching it (the notebook path)."""
        code = "from app import demo; import gradio as gr; assert isinstance(demo, gr.Blocks); print('ok')"
        # A model server named (never called): without one, the build would try the local model first.
        env = app_env(OPENAI_BASE_URL="http://127.0.0.1:9/v1", LLM_MODEL="m")
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.stdout.strip() == "ok", result.stderr


class TestQueue:
    def test_chats_stream_at_the_same_time(self, app, fake):
        """Four chats of 2 s each finish together, not one after another (a stock event runs one at a time: 8 s)."""
        fake.behaviour.tokens = 100
        clients = [Client(app.url, verbose=False) for _ in range(4)]
        started = time.monotonic()
        jobs = [c.submit("hi", api_name="/chat") for c in clients]
        results = [job.result() for job in jobs]
        elapsed = time.monotonic() - started
        assert all(r == "".join(f"t{i} " for i in range(100)) for r in results)
        assert elapsed < 5.0, f"4 chats of 2 s took {elapsed:.2f} s: they ran one at a time"


class TestStartup:
    def test_examples_are_not_run_at_startup_on_a_space(self, tmp_path: Path):
        """On a Space examples are cached by default, calling the model with the owner's key: not here."""
        with FakeOpenAI() as server:
            running = start_app(tmp_path, OPENAI_BASE_URL=server.base_url, LLM_MODEL="m", SPACE_ID="someone/space")
            try:
                assert Client(running.url, verbose=False).predict("Ada", api_name="/greet") == "Hello, Ada!"
                assert server.requests == []
            finally:
                stop_app(running)

    def test_queue_max_size_sheds_load(self, tmp_path: Path):
        """Past QUEUE_MAX_SIZE waiting calls, a caller gets a clear 'queue is full' error instead of a hang."""
        with FakeOpenAI(Behaviour(tokens=50, delay=0.02)) as server:
            running = start_app(
                tmp_path, OPENAI_BASE_URL=server.base_url, LLM_MODEL="m", QUEUE_MAX_SIZE="1", CHAT_CONCURRENCY="1"
            )
            try:
                clients = [Client(running.url, verbose=False) for _ in range(4)]
                jobs = [c.submit("hi", api_name="/chat") for c in clients]
                outcomes = []
                for job in jobs:
                    try:
                        outcomes.append(job.result(timeout=30))
                    except Exception as error:  # the shed calls
                        outcomes.append(error)
                errors = [o for o in outcomes if isinstance(o, Exception)]
                assert errors, "no call was shed with QUEUE_MAX_SIZE=1"
                assert all("queue is full" in str(e).lower() for e in errors), errors
                assert any(isinstance(o, str) for o in outcomes)
            finally:
                stop_app(running)

    def test_malformed_variable_stops_startup(self):
        """A typo in a variable stops the app with one line naming it, not a traceback."""
        result = subprocess.run(
            [sys.executable, "app.py"], cwd=ROOT, env=app_env(LLM_TIMEOUT="soon"), capture_output=True, text=True
        )
        assert result.returncode != 0
        assert "Configuration error: LLM_TIMEOUT: expected a number, got 'soon'." in result.stderr
        assert "Traceback" not in result.stderr

    def test_nothing_configured_says_what_to_set(self, tmp_path: Path):
        """No server configured and no local weights: the tools work, and the chat says which variables to set."""
        running = start_app(tmp_path, LLM_BACKEND="auto", LOCAL_MODEL=str(tmp_path / "no-such-model"))
        try:
            client = Client(running.url, verbose=False)
            assert client.predict("Ada", api_name="/greet") == "Hello, Ada!"
            with pytest.raises(AppError, match="Set OPENAI_API_KEY .*, HF_TOKEN .*, or OPENAI_BASE_URL"):
                client.predict("hi", api_name="/chat")
        finally:
            stop_app(running)

    def test_rate_limits_say_slow_down(self, fake_openai: FakeOpenAI, tmp_path: Path):
        """Past RATE_LIMIT_PER_SESSION a client is told to slow down; past RATE_LIMIT_PER_IP, new clients too."""
        running = start_app(
            tmp_path,
            OPENAI_BASE_URL=fake_openai.base_url,
            LLM_MODEL="m",
            RATE_LIMIT_PER_SESSION="2",
            RATE_LIMIT_PER_IP="3",
        )
        try:
            first = Client(running.url, verbose=False)
            first.predict("one", api_name="/chat")
            first.predict("two", api_name="/chat")
            with pytest.raises(AppError, match=r"^Slow down: at most 2 chat messages a minute per session"):
                first.predict("three", api_name="/chat")
            second = Client(running.url, verbose=False)
            second.predict("four", api_name="/chat")
            with pytest.raises(AppError, match=r"^Slow down: at most 3 chat messages a minute per address"):
                second.predict("five", api_name="/chat")
            assert second.predict("Ada", api_name="/greet") == "Hello, Ada!"  # the tools stay open
        finally:
            stop_app(running)

    def test_refused_connection_is_clear_and_recovers(self, tmp_path: Path):
        """A backend that is down gives a clear error; once it is up, the next chat works."""
        port = free_port()
        running = start_app(tmp_path, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", LLM_MODEL="m", LLM_MAX_RETRIES="0")
        try:
            client = Client(running.url, verbose=False)
            with pytest.raises(AppError, match=f"Could not connect to the model server at http://127.0.0.1:{port}"):
                client.predict("hi", api_name="/chat")
            with FakeOpenAI(port=port):
                assert client.predict("back up", api_name="/chat").endswith("back up")
        finally:
            stop_app(running)
