"""The attacks a public Space meets, replayed over real HTTP against the launched app (security issue, rows 1-14).

Each class is one row of the issue's table: a hostile browser, a hostile API caller, or a hostile model server
(the test server, misbehaving on purpose). Rows 5 and 6 need a browser: tests/test_browser_security.py.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault

pytestmark = pytest.mark.e2e

KEY = "sk-attack-Kq7vN2pX9wLm4RtZ"
PASSWORD = "correct-horse-battery-staple"


def forms(secret: str) -> list[str]:
    """The forms a server echoes a secret in: exact, any case, URL-encoded, base64 (as in a Basic header)."""
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    return [secret, secret.upper(), secret.lower(), urllib.parse.quote(secret, safe=""), basic[8:-4]]


def page_event(url: str, elem_id: str, event: str) -> int:
    """The index of the page's event on the component with `elem_id` (what the browser sends as fn_index)."""
    config = httpx.get(url + "config", timeout=10).json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d["id"] for d in config["dependencies"] if [component, event] in d["targets"])


def page_data(url: str, fn_index: int, by_label: dict[str, Any]) -> list[Any]:
    """The `data` of a page event, in the order its config lists the inputs, from values by component label."""
    config = httpx.get(url + "config", timeout=10).json()
    labels = {c["id"]: c.get("props", {}).get("label") for c in config["components"]}
    inputs = next(d["inputs"] for d in config["dependencies"] if d["id"] == fn_index)
    return [by_label[labels[component]] for component in inputs]


def queue_call(url: str, fn_index: int, data: list[Any], *, session: str | None = None) -> list[dict[str, Any]]:
    """One event through Gradio's queue protocol, as the page does it: its messages, until the stream closes."""
    session = session or uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    with httpx.Client(base_url=url, timeout=30) as http:
        joined = http.post("gradio_api/queue/join", json=body)
        joined.raise_for_status()
        messages = []
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    messages.append(message)
                    if message.get("msg") in ("close_stream", "process_completed"):
                        break
    return messages


@pytest.fixture(scope="module")
def hostile() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.005)) as server:
        yield server


@pytest.fixture
def upstream(hostile: FakeOpenAI) -> FakeOpenAI:
    hostile.reset()
    return hostile


@pytest.fixture(scope="module")
def target(hostile: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    env = fake_backed(
        hostile, OPENAI_API_KEY=KEY, LLM_MAX_RETRIES="0", RATE_LIMIT_PER_IP="none", RATE_LIMIT_PER_SESSION="none"
    )
    with running_app(tmp_path_factory.mktemp("attacks"), **env) as app:
        yield app


def chat_error(app: RunningApp, message: str = "hello") -> str:
    with pytest.raises(AppError) as caught:
        Client(app.url, verbose=False).predict(message, api_name="/chat")
    return str(caught.value)


def call_error(app: RunningApp, data: list[Any]) -> str:
    """The error of `/gradio_api/call/chat` (curl's path): the text of its `event: error`."""
    with httpx.Client(base_url=app.url, timeout=20) as http:
        event_id = http.post("gradio_api/call/chat", json={"data": data}).json()["event_id"]
        text = http.get(f"gradio_api/call/chat/{event_id}").text
    assert "event: error" in text, text
    return text


class TestRow1UpstreamErrorQuotingTheKey:
    def test_an_sse_error_event_quoting_the_header_reaches_no_one(self, target, upstream):
        """A mid-reply error event that quotes `Authorization: Bearer <key>`: the page's, /chat's and curl's
        error texts say the server reported an error, without the key, and so does the log."""
        quoted = f"upstream failed for Authorization: Bearer {KEY}"
        upstream.behaviour.faults.append(Fault(error_after=2, message=quoted))
        upstream.behaviour.faults.append(Fault(error_after=2, message=quoted, error_event=True))
        shown = [chat_error(target), call_error(target, ["hello"])]
        for text in shown:
            assert "reported an error: upstream failed for Authorization: Bearer ***" in text
            assert KEY not in text
        assert KEY not in target.log()


class TestRow1KeyStreamedAsTheReply:
    @pytest.mark.parametrize("form", ["exact", "upper", "lower", "url", "basic"])
    def test_a_key_the_server_streams_back_reaches_no_one(self, target, upstream, form):
        """A server that streams the key it was sent as the answer, cut between two chunks: curl's /chat and
        gradio_client's /ask show the reply with the key masked, and no update holds any part of it."""
        echoed = {
            "exact": KEY,
            "upper": KEY.upper(),
            "lower": KEY.lower(),
            "url": urllib.parse.quote(KEY, safe=""),
            "basic": base64.b64encode(f"user:{KEY}".encode()).decode(),
        }[form]
        upstream.behaviour.pieces = ("here: ", echoed[:9], echoed[9:] + " ok")
        with httpx.Client(base_url=target.url, timeout=20) as http:
            event_id = http.post("gradio_api/call/chat", json={"data": ["hello"]}).json()["event_id"]
            streamed = http.get(f"gradio_api/call/chat/{event_id}").text
        asked = Client(target.url, verbose=False).predict("hello", api_name="/ask")
        # What "user:" and the padding alone decide of the base64 stays.
        masked = "here: dXNlcjp***g== ok" if form == "basic" else "here: *** ok"
        assert f'data: ["{masked}"]' in streamed
        assert asked == masked
        for variant in forms(KEY):
            assert variant[:12] not in streamed
            assert variant not in target.log()


class TestRow2EncodedKeyInA400:
    @pytest.mark.parametrize("form", forms(KEY), ids=["exact", "upper", "lower", "url", "base64"])
    def test_no_form_of_the_key_is_shown_or_logged(self, target, upstream, form):
        """A 400 whose message holds the key in any form servers echo: masked in the error and the log."""
        upstream.behaviour.faults.append(Fault(status=400, message=f"bad request, key {form} rejected"))
        text = chat_error(target)
        assert "refused the request (HTTP 400): bad request, key " in text
        for variant in forms(KEY):
            assert variant not in text
            assert variant not in target.log()


class TestRow3MalformedStreams:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (b'data: {"error": "a plain string"}\n\n', "reported an error: a plain string"),
            (b'data: "just a string"\n\n', "sent a reply that could not be read"),  # not an object
            (b"data: [1, 2]\n\n", "sent a reply that could not be read"),
            (b'data: {"choices": [{"delta": {"content": 42}}]}\n\n', "sent a reply that could not be read"),
            (b'data: {"choices": "many"}\n\n', "sent a reply that could not be read"),
            (b"data: {not json\n\n", "sent a reply that could not be read"),
        ],
    )
    def test_a_clear_error_and_no_traceback(self, target, upstream, raw, expected):
        """Any shape of chunk ends the reply with a clear sentence; no AttributeError, no traceback."""
        upstream.behaviour.faults.append(Fault(raw_after=1, raw=raw))
        assert expected in chat_error(target)
        assert "Traceback" not in target.log()
        assert "AttributeError" not in target.log()


class TestRow4OversizedConversations:
    def test_a_huge_body_is_refused_at_the_edge(self, target):
        """6.5 MB sent to the page's reply event is refused with 413 before Gradio parses it."""
        fn_index = page_event(target.url, "message", "submit")
        body = {"data": ["x" * 6_500_000], "fn_index": fn_index, "session_hash": "attacker"}
        refused = httpx.post(target.url + "gradio_api/queue/join", json=body, timeout=30)
        assert refused.status_code == 413
        assert "larger than this Space accepts" in refused.json()["detail"]

    def test_too_many_messages_are_refused_before_the_model(self, target, upstream):
        """A history of 5,000 turns (under the byte cap) is refused by count, and nothing reaches the server."""
        history = json.dumps([{"role": "user" if i % 2 == 0 else "assistant", "content": "a"} for i in range(5000)])
        with pytest.raises(AppError, match=r"^history: has 5,000 messages; at most 200 are accepted\."):
            Client(target.url, verbose=False).predict("hi", history, api_name="/ask")
        assert upstream.requests == []

    def test_the_page_never_reads_a_conversation_from_the_browser(self, target):
        """The page's reply event takes the message and the parameters only: no conversation to send."""
        config = httpx.get(target.url + "config", timeout=10).json()
        types = {c["id"]: c["type"] for c in config["components"]}
        fn_index = page_event(target.url, "message", "submit")
        inputs = next(d["inputs"] for d in config["dependencies"] if d["id"] == fn_index)
        assert sorted(types[i] for i in inputs) == ["dropdown", "multimodaltextbox", "slider", "slider", "textbox"]


class TestRow5DeepLinks:
    def test_the_deep_link_route_is_gone(self, target):
        """No session's values can be turned into a link another visitor opens."""
        assert httpx.get(target.url + "gradio_api/deep_link", params={"session_hash": "x"}).status_code == 404


class TestRow7Uploads:
    def test_a_large_upload_is_refused(self, target):
        """Past the largest file the Space takes (MAX_ATTACHMENT_BYTES, 10 MiB by default, above MAX_UPLOAD_BYTES),
        /gradio_api/upload answers 413."""
        files = {"files": ("big.json", b"x" * 11_000_000, "application/json")}
        assert httpx.post(target.url + "gradio_api/upload", files=files, timeout=30).status_code == 413

    def test_a_small_upload_is_still_accepted(self, target):
        """The limit is not a wall: a file under it is taken."""
        files = {"files": ("small.json", b"{}", "application/json")}
        assert httpx.post(target.url + "gradio_api/upload", files=files, timeout=30).status_code == 200


class TestRow11And12RoutesTheSpaceDoesNotUse:
    def test_run_history_is_off(self, target):
        """Gradio's run history (which could call the Hub with the owner's token) is not served."""
        assert httpx.get(target.url + "gradio_api/run-history/buckets").status_code == 404
        assert httpx.post(target.url + "gradio_api/run-history/connect", json={}).status_code in (404, 405)

    def test_direct_run_routes_skip_no_queue(self, target):
        """POST /gradio_api/run/chat, which would bypass the queue's limits, is refused."""
        answer = httpx.post(target.url + "gradio_api/run/chat", json={"data": ["hi"]}, timeout=10)
        assert answer.status_code == 404
        assert "does not accept direct HTTP POST requests" in answer.text


class TestRow13LoneSurrogates:
    def test_a_lone_surrogate_in_a_page_message_streams(self, target, upstream):
        """The page's reply event with a lone surrogate in the message answers, with U+FFFD in its place."""
        fn_index = page_event(target.url, "message", "submit")
        values = {
            "Message": {"text": "MESSAGE", "files": []},
            "System prompt": "s",
            "Temperature": 0.5,
            "Max tokens": 10,
            "Model": "fake-model",
        }
        # Written by hand: no JSON encoder writes a lone surrogate, but the JSON text may hold its escape.
        session = uuid.uuid4().hex
        data = json.dumps(page_data(target.url, fn_index, values)).replace('"MESSAGE"', '"\\ud800 hi"')
        body = f'{{"data": {data}, "fn_index": {fn_index}, "session_hash": "{session}"}}'
        with httpx.Client(base_url=target.url, timeout=30) as http:
            joined = http.post("gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
            assert joined.status_code == 200
            with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
                completed = next(
                    json.loads(line[5:])
                    for line in events.iter_lines()
                    if line.startswith("data:") and '"process_completed"' in line
                )
        assert completed["success"] is True
        chat = completed["output"]["data"][1]
        assert chat[-1]["content"][0]["text"] == "You said: \ufffd hi"


class TestRow14ShortInput:
    def test_a_short_call_takes_the_documented_defaults(self, target, upstream):
        """`{"data": ["Hello!"]}` is answered, with the defaults for the rest."""
        with httpx.Client(base_url=target.url, timeout=20) as http:
            event_id = http.post("gradio_api/call/chat", json={"data": ["Hello!"]}).json()["event_id"]
            text = http.get(f"gradio_api/call/chat/{event_id}").text
        assert text.rstrip().endswith('data: ["You said: Hello!"]')
        assert upstream.requests[-1]["temperature"] == 0.7

    def test_an_empty_call_names_what_is_missing(self, target):
        """`{"data": []}` is refused with 422 naming the message, and no traceback."""
        refused = httpx.post(target.url + "gradio_api/call/chat", json={"data": []}, timeout=10)
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith("/chat needs 'message'")
        assert "Traceback" not in target.log()


class TestRows8And9ForgedAddresses:
    @staticmethod
    def chats(app: RunningApp, headers_per_call: list[list[tuple[str, str]]]) -> int:
        """How many of these /chat calls (each its own session, with these headers) were answered."""
        answered = 0
        for headers in headers_per_call:
            with httpx.Client(base_url=app.url, timeout=20) as http:
                # A list of pairs, so that a header given twice is sent as two lines.
                event_id = http.post("gradio_api/call/chat", json={"data": ["hi"]}, headers=headers).json()["event_id"]
                text = http.get(f"gradio_api/call/chat/{event_id}").text
                answered += "event: complete" in text
        return answered

    def test_no_trusted_proxy_ignores_x_forwarded_for(self, hostile, tmp_path):
        """TRUSTED_PROXIES=0: a forged X-Forwarded-For from 127.0.0.1 does not make ten callers of one."""
        env = fake_backed(hostile, TRUSTED_PROXIES="0", RATE_LIMIT_PER_IP="5", RATE_LIMIT_PER_SESSION="none")
        with running_app(tmp_path, **env) as app:
            forged = [[("X-Forwarded-For", f"10.0.0.{i}")] for i in range(10)]
            assert self.chats(app, forged) == 5

    def test_all_header_lines_count_together(self, hostile, tmp_path):
        """TRUSTED_PROXIES=1: with a forged first X-Forwarded-For line and the proxy's own last, the address is
        the proxy's entry, so ten calls are one caller."""
        env = fake_backed(hostile, TRUSTED_PROXIES="1", RATE_LIMIT_PER_IP="5", RATE_LIMIT_PER_SESSION="none")
        with running_app(tmp_path, **env) as app:
            lines = [[("X-Forwarded-For", f"10.0.0.{i}"), ("X-Forwarded-For", "203.0.113.7")] for i in range(10)]
            assert self.chats(app, lines) == 5


class TestRow10LoginThrottle:
    def test_wrong_passwords_get_429_with_retry_after(self, hostile, tmp_path):
        """Past LOGIN_ATTEMPTS_PER_MINUTE failures from one address, /login answers 429 with Retry-After; another
        address (the right user elsewhere) still logs in."""
        env = fake_backed(hostile, APP_AUTH=f"ada:{PASSWORD}", LOGIN_ATTEMPTS_PER_MINUTE="3", TRUSTED_PROXIES="1")
        with running_app(tmp_path, **env) as app, httpx.Client(base_url=app.url, timeout=10) as http:
            attacker = {"X-Forwarded-For": "198.51.100.9"}
            statuses = [
                http.post("login", data={"username": "ada", "password": f"guess{i}"}, headers=attacker).status_code
                for i in range(6)
            ]
            assert statuses == [400, 400, 400, 429, 429, 429]
            throttled = http.post("login", data={"username": "ada", "password": PASSWORD}, headers=attacker)
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["Retry-After"]) <= 60
            right_user = {"X-Forwarded-For": "192.0.2.44"}
            assert (
                http.post("login", data={"username": "ada", "password": PASSWORD}, headers=right_user).status_code
                == 200
            )
