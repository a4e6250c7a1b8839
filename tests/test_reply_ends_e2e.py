"""End-to-end: every reply ends. `python app.py` beside a fake model server that misbehaves on purpose (silent but
for keep-alive comments, or writing for ever past max_tokens), called as API clients and the page call it: a
caller who leaves closes the model server's request within a second, and a reply that would run for ever is cut
at REPLY_TIMEOUT or once it is clearly past max_tokens, with a sentence that says why."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault

pytestmark = pytest.mark.e2e

# Long enough that only the caller leaving can end a silent reply within the tests; short enough to test it.
REPLY_TIMEOUT = 3


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.02)) as server:
        yield server


@pytest.fixture(scope="module")
def app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    env = fake_backed(
        fake_openai,
        LLM_MAX_RETRIES="0",
        LLM_TIMEOUT="30",
        REPLY_TIMEOUT=str(REPLY_TIMEOUT),
        RATE_LIMIT_PER_IP="none",
        RATE_LIMIT_PER_SESSION="none",
    )
    with running_app(tmp_path_factory.mktemp("app"), **env) as running:
        yield running


@pytest.fixture(autouse=True)
def no_leftovers(fake_openai: FakeOpenAI) -> None:
    """Each test starts with no stream open: a reply a test left running (when its fix is missing) ends at
    REPLY_TIMEOUT, and must not be taken for the next test's."""
    assert fake_openai.wait_until_idle(REPLY_TIMEOUT + 2)


def until_silent(fake: FakeOpenAI) -> None:
    """Wait until the fake has sent its first piece and only comments follow, the request still open."""
    deadline = time.monotonic() + 10
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert not fake.disconnects


def read_events(stream: Iterator[str], *, until: str) -> list[str]:
    """The `data:` lines of an SSE stream, read up to the first that holds `until`."""
    seen = []
    for line in stream:
        if line.startswith("data:"):
            seen.append(line)
            if until in line:
                return seen
    raise AssertionError(f"the stream ended before {until!r}: {seen}")


class TestCallerLeaves:
    def test_a_cancelled_job_closes_the_silent_upstream(self, app: RunningApp, fake: FakeOpenAI):
        """gradio_client's `job.cancel()` while the model server is silent (keep-alive comments only)."""
        fake.behaviour.faults.append(Fault(stall_after=1))
        job = Client(app.url, verbose=False).submit("hello", api_name="/chat")
        until_silent(fake)
        left = time.monotonic()
        job.cancel()
        closed = fake.wait_for_disconnect(2)
        assert closed is not None, "the model server's request outlived the cancelled job"
        assert closed - left < 1

    def test_closing_the_call_stream_closes_the_silent_upstream(self, app: RunningApp, fake: FakeOpenAI):
        """A caller of `/gradio_api/call/chat` that hangs up on the event stream mid-reply (Gradio 6.31 only marked
        its job, which ran on until the model server spoke again)."""
        fake.behaviour.faults.append(Fault(stall_after=1))
        with httpx.Client(base_url=app.url, timeout=10) as http:
            event = http.post("gradio_api/call/chat", json={"data": ["hello"]}).json()["event_id"]
            with http.stream("GET", f"gradio_api/call/chat/{event}") as stream:
                lines = stream.iter_lines()  # held: a dropped iterator closes the connection
                read_events(lines, until='"You"')
                until_silent(fake)
                left = time.monotonic()
        closed = fake.wait_for_disconnect(2)
        assert closed is not None, "the model server's request outlived the caller"
        assert closed - left < 1

    def test_closing_the_queue_stream_closes_the_silent_upstream(self, app: RunningApp, fake: FakeOpenAI):
        """The page's way (and gradio_client's): a job joined on the queue, its session's stream closed, as when
        a tab is closed."""
        fake.behaviour.faults.append(Fault(stall_after=1))
        with httpx.Client(base_url=app.url, timeout=10) as http:
            config = http.get("config").json()
            chat = next(d for d in config["dependencies"] if d.get("api_name") == "chat")
            session = uuid.uuid4().hex
            data = ["hello"] + [None] * (len(chat["inputs"]) - 1)  # the optional inputs take their defaults
            body = {"data": data, "fn_index": chat["id"], "session_hash": session}
            assert http.post("gradio_api/queue/join", json=body).status_code == 200
            with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
                lines = stream.iter_lines()  # held: a dropped iterator closes the connection
                read_events(lines, until='"You"')
                until_silent(fake)
                left = time.monotonic()
        closed = fake.wait_for_disconnect(2)
        assert closed is not None, "the model server's request outlived the closed page"
        assert closed - left < 1


class TestRepliesEnd:
    def test_a_server_that_ignores_max_tokens(self, app: RunningApp, fake: FakeOpenAI):
        """max_tokens=16 to a server that writes for ever: what arrived is streamed, then the reply stops with a
        sentence naming the limit, and the model server's request is closed."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.endless, fake.behaviour.delay = True, True, 0.001
        job = Client(app.url, verbose=False).submit("hello", "", 0.0, 16, "", api_name="/chat")
        with pytest.raises(AppError) as caught:
            job.result(timeout=20)
        assert "went on writing well past max_tokens (16 tokens)" in str(caught.value)
        assert job.outputs()
        assert job.outputs()[-1].startswith("You said: hellot3 t4")
        assert fake.wait_for_disconnect(2) is not None

    def test_a_reply_that_runs_past_reply_timeout(self, app: RunningApp, fake: FakeOpenAI):
        """A reply still streaming at REPLY_TIMEOUT (a steady server under max_tokens' limit) is cut there."""
        fake.behaviour.ignore_max_tokens, fake.behaviour.endless = True, True
        started = time.monotonic()
        job = Client(app.url, verbose=False).submit("hello", api_name="/chat")
        with pytest.raises(AppError) as caught:
            job.result(timeout=20)
        assert REPLY_TIMEOUT <= time.monotonic() - started < REPLY_TIMEOUT + 3
        assert f"it took longer than {REPLY_TIMEOUT} s, the longest a reply may take here (REPLY_TIMEOUT)" in str(
            caught.value
        )
        assert job.outputs()
        assert fake.wait_for_disconnect(2) is not None
