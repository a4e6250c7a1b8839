"""Fuzz every endpoint through gradio_client and raw HTTP: always a value or a clear error, never a crash."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

# The generic text Gradio shows for an uncaught exception: seeing it means a bug, not a clear error.
GENERIC = "has raised an exception but has not enabled verbose error reporting"
# Every clear error starts with the field it is about, or is a model-server message.
CLEAR = re.compile(r"^(message|history|system_prompt|temperature|max_tokens|model|name|text): ")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

# JSON-encodable Unicode (no lone surrogates, which no JSON client can send), control characters included.
unicode_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200)
huge_text = st.integers(min_value=100_001, max_value=150_000).map(lambda n: "\u00e9\x07" * (n // 2 + 1))
anything = st.one_of(
    unicode_text,
    huge_text,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
fuzz_settings = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def fuzz_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    env = fake_backed(fake_openai, RATE_LIMIT_PER_SESSION="none", RATE_LIMIT_PER_IP="none")
    with running_app(tmp_path_factory.mktemp("fuzz"), **env) as running:
        yield running


@pytest.fixture(scope="module")
def client(fuzz_app: RunningApp) -> Client:
    return Client(fuzz_app.url, verbose=False)


def call(client: Client, *args: object, api_name: str) -> object:
    """Call and return the value, or the error; fail the test on Gradio's generic (uncaught) error.

    A request over MAX_REQUEST_BYTES is refused before Gradio sees it, with 413 (an HTTP error to the client).
    """
    try:
        return client.predict(*args, api_name=api_name)
    except AppError as error:
        assert GENERIC not in str(error), f"{api_name}{args!r:.200} crashed the handler"
        assert CLEAR.match(str(error)), f"{api_name}: unclear error {str(error)!r:.200}"
        return error
    except httpx.HTTPStatusError as error:
        assert error.response.status_code == 413, error.response.text[:200]
        return error


class TestClientFuzz:
    @fuzz_settings
    @given(message=anything, system_prompt=anything, temperature=anything, max_tokens=anything)
    def test_chat(self, client, fake_openai, message, system_prompt, temperature, max_tokens):
        """/chat answers or names the bad field, whatever the four inputs are."""
        fake_openai.behaviour.delay = 0
        result = call(client, message, system_prompt, temperature, max_tokens, api_name="/chat")
        assert isinstance(result, (str, AppError, httpx.HTTPStatusError))

    @fuzz_settings
    @given(value=anything, api_name=st.sampled_from(["/greet", "/reverse", "/upper", "/lower", "/title", "/slugify"]))
    def test_text_endpoints(self, client, value, api_name):
        """Every text endpoint returns text or a clear error."""
        result = call(client, value, api_name=api_name)
        assert isinstance(result, (str, AppError, httpx.HTTPStatusError))

    @fuzz_settings
    @given(value=anything)
    def test_count(self, client, value):
        """/count returns the three counts or a clear error."""
        result = call(client, value, api_name="/count")
        if not isinstance(result, (AppError, httpx.HTTPStatusError)):
            assert isinstance(result, tuple)
            assert [type(n) for n in result] == [int, int, int]

    def test_counter_takes_no_input(self, client):
        """The counter endpoints answer with numbers."""
        assert call(client, api_name="/reset_counter") == 0
        assert call(client, api_name="/increment") == 1


class TestRawHttpFuzz:
    """What no Python client sends: NaN literals, lone surrogates, missing or extra inputs, broken JSON."""

    # (api, body, the answer: a reply's start, the error field, or an HTTP status for bodies Gradio refuses)
    CASES = (
        ("chat", '{"data": ["hi", "s", NaN, 10]}', "temperature: expected a finite number"),  # NaN: not JSON
        ("chat", '{"data": ["hi", "s", Infinity, 10]}', "temperature: expected a finite number"),
        ("chat", '{"data": ["hi", "s", 0.5, 1e400]}', "max_tokens: expected a finite number"),
        ("chat", '{"data": ["\\ud800 hi", "s", 0.5, 10]}', "You said: \ufffd hi"),  # a lone surrogate
        ("chat", '{"data": ["hi", "\\udfff", 0.5, 10]}', "You said: hi"),
        ("reverse", '{"data": ["a\\ud800b"]}', "b\ufffda"),
        # The fifth input is the model, refused by name; a sixth is one more than /chat takes.
        ("chat", '{"data": ["hi", "s", 0.5, 10, "extra"]}', "model: 'extra' is not offered here"),
        ("chat", '{"data": ["hi", "s", 0.5, 10, "", "more"]}', 422),
        # Not text where text is taken: refused by name, never answered for its Python repr.
        ("greet", '{"data": [5]}', "name: expected text, got int"),
        ("reverse", '{"data": [{"a": 1}]}', "text: expected text, got dict"),
        ("count", '{"data": [null]}', "text: expected text, got NoneType"),
        # A file reference where no file is taken (Gradio would refuse the path, with a traceback in the log).
        ("greet", '{"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]}', 422),
        ("chat", '{"data": ["hi", {"x": [{"path": "a", "meta": {"_type": "gradio.FileData"}}]}]}', 422),
        # JSON nested past what any input needs, or past what the parser can read; a text of it for /ask.
        ("greet", '{"data": [' + "[" * 40 + "]" * 40 + "]}", 422),
        ("greet", '{"data": [' + "[" * 1100 + "]" * 1100 + "]}", 422),
        ("ask", '{"data": ["hi", "' + "[" * 3000 + '"]}', "history: is not JSON"),
        # No such endpoint: a 404 that says where the list is, not a 500.
        ("nope", '{"data": ["x"]}', 404),
        ("respond", '{"data": ["x"]}', 404),  # the page's own event: not an API endpoint
        # Too few: the documented defaults fill the rest; none at all names what is missing.
        ("chat", '{"data": ["Hello!"]}', "You said: Hello!"),
        ("chat", '{"data": []}', 422),
        (
            "ask",
            '{"data": ["Hello!", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]]}',
            "You said: Hello!",
        ),
        ("ask", '{"data": ["hi", [{"role": "system", "content": "x"}]]}', "history: message 1: 'role' must be"),
        ("chat", '{"data": "not a list"}', 422),
        ("chat", '{"data": [', 422),  # broken JSON
        ("chat", "[]", 422),
    )

    @pytest.mark.parametrize(("api", "body", "expected"), CASES)
    def test_call_api(self, fuzz_app, api, body, expected):
        """POST /gradio_api/call/<api> gives the value or the clear error, never a server error or a traceback,
        in the answer or in the log."""
        logged = len(fuzz_app.log())
        try:
            self._call(fuzz_app, api, body, expected)
        finally:
            assert "Traceback" not in fuzz_app.log()[logged:]

    @staticmethod
    def _call(fuzz_app: RunningApp, api: str, body: str, expected: str | int) -> None:
        with httpx.Client(base_url=fuzz_app.url, timeout=20) as http:
            posted = http.post(f"/gradio_api/call/{api}", content=body, headers={"content-type": "application/json"})
            if isinstance(expected, int):
                assert posted.status_code == expected, posted.text
                assert "Traceback" not in posted.text
                return
            assert posted.status_code == 200, posted.text
            text = http.get(f"/gradio_api/call/{api}/{posted.json()['event_id']}").text
            assert "Traceback" not in text
            last_data = json.loads(text.strip().splitlines()[-1].removeprefix("data:").strip())
            if "event: error" in text:
                assert last_data["error"].startswith(expected), text
            else:
                assert last_data[0] == expected, text

    @pytest.mark.parametrize(
        ("body", "detail"),
        [
            ({}, "/greet needs 'name'"),
            ({"name": "Ada", "bogus": 1}, "/greet has no input 'bogus'"),
            ({"data": ["Ada"]}, "/greet has no input 'data'"),
            ([], "/greet takes its inputs by name"),
        ],
    )
    def test_named_inputs_are_checked(self, fuzz_app, body, detail):
        """/call/v2/<api> (inputs by name): unknown and missing names are refused with a 422 that says which."""
        refused = httpx.post(fuzz_app.url + "gradio_api/call/v2/greet", json=body, timeout=20)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith(detail)
        assert "Traceback" not in fuzz_app.log()

    def test_named_inputs_are_answered(self, fuzz_app):
        with httpx.Client(base_url=fuzz_app.url, timeout=20) as http:
            posted = http.post("gradio_api/call/v2/greet", json={"name": "Ada"})
            assert posted.status_code == 200, posted.text
            assert "Hello, Ada!" in http.get(f"gradio_api/call/v2/greet/{posted.json()['event_id']}").text

    def test_a_file_reference_is_refused_where_the_page_takes_none(self, fuzz_app):
        """Over the queue (the page's and gradio_client's path) too: only an event that takes a file gets one."""
        config = httpx.get(fuzz_app.url + "config", timeout=10).json()
        greet = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "greet")
        body = {
            "data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}],
            "fn_index": greet,
            "session_hash": "fuzzfile01",
        }
        refused = httpx.post(fuzz_app.url + "gradio_api/queue/join", json=body, timeout=10)
        assert refused.status_code == 422
        assert refused.json()["detail"] == f"Event {greet}'s input 0 takes no files; the request sent a file reference."

    @pytest.mark.parametrize(
        ("fn_index", "status", "detail"),
        [
            (999, 404, "This Space has no event 999."),
            ("1", 422, '"fn_index" must be the number of one of the page\'s events.'),
            (True, 422, '"fn_index" must be the number of one of the page\'s events.'),
        ],
    )
    def test_an_event_the_page_does_not_have_is_refused(self, fuzz_app, fn_index, status, detail):
        """The queue's events by index: one that does not exist, or an index that is not a number (which Gradio
        would read as a number, and run that event on the wrong inputs), is refused without a traceback."""
        logged = len(fuzz_app.log())
        body = {"data": ["x"], "fn_index": fn_index, "session_hash": "fuzzindex1"}
        refused = httpx.post(fuzz_app.url + "gradio_api/queue/join", json=body, timeout=10)
        assert refused.status_code == status, refused.text
        assert refused.json()["detail"] == detail
        assert "Traceback" not in fuzz_app.log()[logged:]

    def test_missing_inputs_are_named_and_the_app_keeps_serving(self, fuzz_app):
        """A call with no inputs is refused with the names of those it needs, and the next call works."""
        with httpx.Client(base_url=fuzz_app.url, timeout=20) as http:
            refused = http.post("/gradio_api/call/greet", json={"data": []})
            assert refused.status_code == 422
            assert refused.json()["detail"].startswith("/greet needs 'name'")
            greeted = http.post("/gradio_api/call/greet", json={"data": ["Ada"]})
            answer = http.get(f"/gradio_api/call/greet/{greeted.json()['event_id']}").text
            assert "Hello, Ada!" in answer
