"""Tests for services/llm/openai_backend.py against a real local server speaking the OpenAI streaming protocol.

Every request goes over loopback to `tests.support.fake_openai` (or to a bare socket, for servers that do not
speak HTTP at all): nothing of the `openai` client is patched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest

from services.config import DEFAULT_HF_ROUTER_MODEL, DEFAULT_OPENAI_MODEL, HF_ROUTER_URL, load_settings
from services.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimitError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    StreamInterruptedError,
)
from services.llm import openai_backend
from services.llm.base import BackendStatus, ChatRequest, Delta, GenerationParams, Message, Usage
from services.llm.openai_backend import (
    OpenAIBackend,
    OpenAIEndpoint,
    endpoint_from_settings,
    is_hf_host,
    router_endpoint,
)
from services.redact import Scrubber
from tests.support.fake_openai import MODEL, Behaviour, FakeOpenAI, Fault, free_port

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    """This module's server streams without pauses; the tests where the pieces' timing matters set a delay."""
    with FakeOpenAI(Behaviour()) as server:
        yield server


# Neither secret is shaped like a credential (no sk-/hf_ prefix, under 32 characters), so only the backend's
# Scrubber (the owner's key) and the request's secret scope (the visitor's token) can mask them. Their base64
# holds a "+", so the URL-safe alphabet spells it differently. No form of either begins with a character that
# ends a piece of the fake's replies here, so the masking of replies holds nothing back in the streaming tests
# (TestSecretsInTheReply is where it does).
OWNER_KEY = "#owner~key/42+secret?"
VISITOR_TOKEN = "visitor.tok~n/99+x!"
KEY_HINT = "the OPENAI_API_KEY secret"
ROUTER_HINT = "your Hugging Face sign-in (sign out and in again; the token needs the inference-api scope)"

MESSAGES: list[Message] = [{"role": "user", "content": "hello there"}]
PARAMS = GenerationParams(temperature=0.5, max_tokens=100)
REQUEST = ChatRequest(MESSAGES, PARAMS, model="m")
# The fake's echo of MESSAGES, one token a piece, then the chunk that carries the finish_reason, then the one with
# the usage that the backend asks for (the fake's count: 2 words and 4 tokens for the one message; 4 pieces).
ECHO = [
    Delta("You"),
    Delta(" said:"),
    Delta(" hello"),
    Delta(" there"),
    Delta(finish_reason="stop"),
    Delta(usage=Usage(6, 4)),
]


def make_backend(
    base_url: str | None,
    *,
    key: str = OWNER_KEY,
    models: tuple[str, ...] = ("m",),
    key_hint: str = KEY_HINT,
    timeout: float = 10.0,
    max_retries: int = 0,
) -> OpenAIBackend:
    return OpenAIBackend(
        OpenAIEndpoint(base_url, key, models, key_hint),
        timeout=timeout,
        connect_timeout=timeout,
        max_retries=max_retries,
        scrubber=Scrubber([OWNER_KEY]),
    )


def server_of(base_url: str) -> str:
    """How the backend names a server in its messages: scheme://host:port, without the path."""
    return base_url.removesuffix("/v1")


def run_streams(backend: OpenAIBackend, *requests: ChatRequest) -> list[list[Delta]]:
    """Stream each request in turn in one event loop (the client's connections belong to it), then close."""

    async def go() -> list[list[Delta]]:
        try:
            replies = []
            for request in requests:
                replies.append([delta async for delta in backend.stream(request)])
            return replies
        finally:
            await backend.aclose()

    return asyncio.run(go())


def run_stream(backend: OpenAIBackend, request: ChatRequest = REQUEST) -> list[Delta]:
    return run_streams(backend, request)[0]


def run_failing(backend: OpenAIBackend, request: ChatRequest = REQUEST) -> tuple[list[Delta], BackendError]:
    """The deltas that arrived before the stream failed, and the error it failed with."""
    received: list[Delta] = []

    async def go() -> None:
        try:
            async for delta in backend.stream(request):
                received.append(delta)
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as caught:
        asyncio.run(go())
    return received, caught.value


@contextlib.contextmanager
def raw_server(answer: bytes | None) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads each request and sends `answer` back, or, for None, says nothing and
    holds the connection open; yields its base URL."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        held: list[socket.socket] = []

        def serve() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    conn.recv(65536)
                    if answer is None:
                        held.append(conn)
                        continue
                    with conn:
                        conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
        finally:
            for conn in held:
                conn.close()


def http_response(status: str, body: str, content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 response, for `raw_server`."""
    data = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def echoed_forms(secret: str) -> dict[str, str]:
    """The forms a server may quote a secret back in."""
    return {
        "exact": secret,
        "upper-cased": secret.upper(),
        "URL-encoded": quote(secret, safe=""),
        "base64": b64(secret),
        "basic auth": "Authorization: Basic " + b64("user:" + secret),
        "URL-safe base64": base64.urlsafe_b64encode(secret.encode()).decode(),
        "hex": secret.encode().hex(),
    }


def assert_no_secret(text: str) -> None:
    for secret in (OWNER_KEY, VISITOR_TOKEN):
        for name, form in echoed_forms(secret).items():
            encoded = form.removeprefix("Authorization: Basic ")
            assert encoded not in text, f"{name} form of {secret!r} shown"
        assert secret.lower() not in text.lower()


class TestEndpoint:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            # OpenAI itself, with its default model.
            ({"OPENAI_API_KEY": "sk-1"}, OpenAIEndpoint(None, "sk-1", (DEFAULT_OPENAI_MODEL,), KEY_HINT)),
            # LLM_MODEL is a one-name LLM_MODELS.
            ({"OPENAI_API_KEY": "sk-1", "LLM_MODEL": "gpt-x"}, OpenAIEndpoint(None, "sk-1", ("gpt-x",), KEY_HINT)),
            # The list as given: blanks and repeats dropped, order kept, the first the default.
            ({"OPENAI_API_KEY": "sk-1", "LLM_MODELS": "b, a,,b"}, OpenAIEndpoint(None, "sk-1", ("b", "a"), KEY_HINT)),
            # A custom server with a key: no OpenAI default model, the server is asked for its first.
            (
                {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": "http://localhost:8000/v1/"},
                OpenAIEndpoint("http://localhost:8000/v1", "sk-1", (), KEY_HINT),
            ),
            # With both set, the OpenAI key wins and HF_TOKEN goes nowhere.
            (
                {"OPENAI_API_KEY": "sk-1", "HF_TOKEN": "hf_1"},
                OpenAIEndpoint(None, "sk-1", (DEFAULT_OPENAI_MODEL,), KEY_HINT),
            ),
            # An explicit key is used even for a Hugging Face host.
            (
                {"OPENAI_API_KEY": "sk-1", "HF_TOKEN": "hf_1", "OPENAI_BASE_URL": HF_ROUTER_URL},
                OpenAIEndpoint(HF_ROUTER_URL, "sk-1", (), KEY_HINT),
            ),
            # Ollama, llama.cpp, vLLM: no key, the model asked of the server.
            (
                {"OPENAI_BASE_URL": "http://localhost:11434/v1"},
                OpenAIEndpoint("http://localhost:11434/v1", "not-needed", (), "the server's key (OPENAI_API_KEY)"),
            ),
            # A Hugging Face Inference Endpoint gets HF_TOKEN as its key.
            (
                {"OPENAI_BASE_URL": "https://x.endpoints.huggingface.cloud/v1", "HF_TOKEN": "hf_1", "LLM_MODEL": "tgi"},
                OpenAIEndpoint("https://x.endpoints.huggingface.cloud/v1", "hf_1", ("tgi",), "the HF_TOKEN secret"),
            ),
            # Any other host never receives HF_TOKEN.
            (
                {"OPENAI_BASE_URL": "https://evil.example.com/v1", "HF_TOKEN": "hf_1"},
                OpenAIEndpoint("https://evil.example.com/v1", "not-needed", (), "the server's key (OPENAI_API_KEY)"),
            ),
            # HF_TOKEN alone: the router, with its default model.
            (
                {"HF_TOKEN": "hf_1"},
                OpenAIEndpoint(HF_ROUTER_URL, "hf_1", (DEFAULT_HF_ROUTER_MODEL,), "the HF_TOKEN secret"),
            ),
            # HF_TOKEN with LLM_MODELS: router ids, provider suffixes and all.
            (
                {"HF_TOKEN": "hf_1", "LLM_MODELS": "a/b:fastest,c/d"},
                OpenAIEndpoint(HF_ROUTER_URL, "hf_1", ("a/b:fastest", "c/d"), "the HF_TOKEN secret"),
            ),
        ],
    )
    def test_settings_give_the_endpoint(self, env: dict[str, str], expected: OpenAIEndpoint):
        """Each combination of key, URL and token gives the documented base URL, key, models and key hint."""
        assert endpoint_from_settings(load_settings(env)) == expected

    def test_nothing_configured(self):
        """No key, no URL, no token: no endpoint."""
        assert endpoint_from_settings(load_settings({})) is None

    def test_the_key_stays_out_of_repr(self):
        """An endpoint's repr (a log line, a traceback) never shows its key."""
        endpoint = endpoint_from_settings(load_settings({"OPENAI_API_KEY": "sk-do-not-show"}))
        assert "sk-do-not-show" not in repr(endpoint)

    @pytest.mark.parametrize(
        ("url", "hf"),
        [
            ("https://huggingface.co/v1", True),  # the apex domain itself
            ("https://router.huggingface.co/v1", True),  # the router
            ("https://my-space.hf.space/v1", True),  # a Space
            ("https://x.us-east-1.aws.endpoints.huggingface.cloud/v1", True),  # an Inference Endpoint
            ("https://Router.HuggingFace.CO/v1", True),  # host names are case-insensitive
            ("https://router.huggingface.co:8443/v1", True),  # a port changes nothing
            ("https://evil.example.com/v1", False),  # another host
            ("https://huggingface.co.evil.com/v1", False),  # the HF name as a prefix of another domain
            ("https://evilhuggingface.co/v1", False),  # a suffix match without the dot
            ("https://huggingface.co@evil.com/v1", False),  # the HF name as userinfo: the host is evil.com
            ("https://evil.com/huggingface.co/v1", False),  # the HF name in the path
            ("https://evil.com/v1?u=router.huggingface.co", False),  # the HF name in the query
            ("https://hf.space.evil.com/v1", False),  # a Space suffix as a prefix
            ("http://localhost:8000/v1", False),  # a local server
        ],
    )
    def test_hf_token_goes_to_hugging_face_hosts_only(self, url: str, hf: bool):
        """is_hf_host reads the host alone, and only an HF host gets HF_TOKEN as a custom URL's key."""
        assert is_hf_host(url) is hf
        endpoint = endpoint_from_settings(load_settings({"OPENAI_BASE_URL": url, "HF_TOKEN": "hf_owner_token"}))
        assert endpoint is not None
        assert endpoint.api_key == ("hf_owner_token" if hf else "not-needed")


class TestRouterEndpoint:
    @pytest.mark.parametrize(
        ("env", "models"),
        [
            ({}, (DEFAULT_HF_ROUTER_MODEL,)),  # no owner endpoint: the router's default model
            ({"HF_ROUTER_MODELS": "a,b"}, ("a", "b")),  # the visitors' own list
            ({"HF_TOKEN": "hf_1"}, (DEFAULT_HF_ROUTER_MODEL,)),  # the owner on the router, default models
            ({"HF_TOKEN": "hf_1", "LLM_MODELS": "x,y"}, ("x", "y")),  # the owner on the router shares its list
            # The router named by OPENAI_BASE_URL is the same router: the list is shared too.
            ({"HF_TOKEN": "hf_1", "OPENAI_BASE_URL": HF_ROUTER_URL + "/", "LLM_MODELS": "x"}, ("x",)),
            ({"HF_TOKEN": "hf_1", "LLM_MODELS": "x", "HF_ROUTER_MODELS": "z"}, ("z",)),  # HF_ROUTER_MODELS wins
            ({"OPENAI_API_KEY": "sk-1", "LLM_MODELS": "gpt-x"}, (DEFAULT_HF_ROUTER_MODEL,)),  # OpenAI's ids don't
            # A custom server's models are not the router's.
            ({"OPENAI_BASE_URL": "http://localhost:8000/v1", "LLM_MODELS": "llama"}, (DEFAULT_HF_ROUTER_MODEL,)),
        ],
    )
    def test_models_for_signed_in_visitors(self, env: dict[str, str], models: tuple[str, ...]):
        """The router's models: HF_ROUTER_MODELS, else the owner's when the owner uses that router, else the
        default; the key is never the owner's (each request carries the visitor's token)."""
        settings = load_settings(env)
        assert router_endpoint(settings, endpoint_from_settings(settings)) == OpenAIEndpoint(
            HF_ROUTER_URL, "not-needed", models, ROUTER_HINT
        )

    def test_follows_hf_router_url(self):
        """HF_ROUTER_URL moves the visitors' router, and an owner on it shares its model list."""
        settings = load_settings({"HF_ROUTER_URL": "https://proxy.hf.space/v1/", "HF_TOKEN": "hf_1", "LLM_MODEL": "q"})
        owner = endpoint_from_settings(settings)
        assert owner == OpenAIEndpoint("https://proxy.hf.space/v1", "hf_1", ("q",), "the HF_TOKEN secret")
        assert router_endpoint(settings, owner) == OpenAIEndpoint(
            "https://proxy.hf.space/v1", "not-needed", ("q",), ROUTER_HINT
        )


class TestStatus:
    def test_openai_default(self):
        """No base URL is api.openai.com; the status shows the default model and that server."""
        backend = make_backend(None, models=(DEFAULT_OPENAI_MODEL, "gpt-x"))
        assert backend.status() == BackendStatus("openai", DEFAULT_OPENAI_MODEL, "https://api.openai.com")
        assert backend.models == (DEFAULT_OPENAI_MODEL, "gpt-x")
        asyncio.run(backend.aclose())

    def test_where_never_shows_credentials_or_path(self):
        """A URL carrying user:password shows as scheme://host:port only."""
        backend = make_backend("http://user:hunter22@127.0.0.1:8000/some/v1", models=())
        assert backend.status() == BackendStatus("openai", "the first model the server lists", "http://127.0.0.1:8000")
        assert backend.models == ()
        asyncio.run(backend.aclose())

    def test_fit_leaves_the_request_to_the_server(self):
        """The server knows its context window: fit returns the very same request, nothing dropped."""
        backend = make_backend(None)
        request, dropped = backend.fit(REQUEST)
        assert request is REQUEST
        assert dropped == 0
        asyncio.run(backend.aclose())

    def test_from_settings_takes_the_pacing_and_limits(self):
        """STREAM_INTERVAL_MS and CHAT_CONCURRENCY reach the backend; by default 40 ms and no limit."""
        endpoint = OpenAIEndpoint(None, "sk-1", ("m",), KEY_HINT)
        tuned = load_settings({"OPENAI_API_KEY": "sk-1", "STREAM_INTERVAL_MS": "100", "CHAT_CONCURRENCY": "3"})
        backend = OpenAIBackend.from_settings(tuned, endpoint, Scrubber(tuned.secrets()))
        default = OpenAIBackend.from_settings(load_settings({}), endpoint, Scrubber(()))
        assert (backend.stream_interval, backend.concurrency_limit) == (0.1, 3)
        assert (default.stream_interval, default.concurrency_limit) == (0.04, None)
        assert backend.name == "openai"
        asyncio.run(backend.aclose())
        asyncio.run(default.aclose())


class TestStreaming:
    def test_streams_pieces_and_sends_parameters(self, fake: FakeOpenAI):
        """Pieces arrive one by one, the last carries finish_reason "stop", and the request carries the
        messages and parameters."""
        assert run_stream(make_backend(fake.base_url)) == ECHO
        body = fake.requests[-1]
        assert {k: v for k, v in body.items() if k != "_headers"} == {
            "model": "m",
            "messages": MESSAGES,
            "temperature": 0.5,
            "max_tokens": 100,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def test_length_finish_on_the_last_delta(self, fake: FakeOpenAI):
        """A reply stopped at max_tokens ends with a Delta whose finish_reason is "length"."""
        request = ChatRequest(MESSAGES, GenerationParams(temperature=0, max_tokens=2), model="m")
        assert run_stream(make_backend(fake.base_url), request) == [
            Delta("You"),
            Delta(" said:"),
            Delta(finish_reason="length"),
            Delta(usage=Usage(6, 2)),
        ]
        assert fake.requests[-1]["max_tokens"] == 2
        assert fake.requests[-1]["temperature"] == 0

    @pytest.mark.parametrize("style", ["reasoning", "reasoning_content", "reasoning_text"])
    def test_thinking_from_each_delta_field(self, fake: FakeOpenAI, style: str):
        """Thinking streamed in any of the three delta fields servers use arrives as Delta.thinking."""
        fake.behaviour.thinking = "let me think"
        fake.behaviour.thinking_style = style  # type: ignore[assignment]
        thinking = [Delta(thinking="let"), Delta(thinking=" me"), Delta(thinking=" think")]
        assert run_stream(make_backend(fake.base_url)) == thinking + ECHO[:-1] + [Delta(usage=Usage(6, 3 + 4))]

    def test_thinking_counts_against_max_tokens(self, fake: FakeOpenAI):
        """A reply that spends max_tokens thinking ends with "length" and no answer text."""
        fake.behaviour.thinking = "one two three"
        request = ChatRequest(MESSAGES, GenerationParams(temperature=0, max_tokens=2), model="m")
        assert run_stream(make_backend(fake.base_url), request) == [
            Delta(thinking="one"),
            Delta(thinking=" two"),
            Delta(finish_reason="length"),
            Delta(usage=Usage(6, 2)),
        ]

    def test_think_tags_pass_through_as_text(self, fake: FakeOpenAI):
        """<think> tags in the content stay text here: services.chat splits them, whatever the backend."""
        fake.behaviour.thinking = "hmm ok"
        fake.behaviour.thinking_style = "tags"
        tags = [Delta("<think>"), Delta("hmm"), Delta(" ok"), Delta("</think>\n\n")]
        assert run_stream(make_backend(fake.base_url)) == tags + ECHO[:-1] + [Delta(usage=Usage(6, 4 + 4))]

    def test_next_request_works_after_a_failure(self, fake: FakeOpenAI):
        """A failure leaves the shared client usable."""
        backend = make_backend(fake.base_url)
        fake.behaviour.faults.append(Fault(status=500))

        async def go() -> list[Delta]:
            with pytest.raises(BackendUnavailableError):
                [delta async for delta in backend.stream(REQUEST)]
            deltas = [delta async for delta in backend.stream(REQUEST)]
            await backend.aclose()
            return deltas

        assert asyncio.run(go()) == ECHO

    def test_retries_a_server_error_before_the_first_token(self, fake: FakeOpenAI):
        """With retries on, a 503 before any text is retried, and the reply streams once, cleanly."""
        fake.behaviour.faults.append(Fault(status=503))
        assert run_stream(make_backend(fake.base_url, max_retries=1)) == ECHO
        assert len(fake.requests) == 2


class TestModel:
    def test_the_requests_model_is_sent(self, fake: FakeOpenAI):
        """ChatRequest.model is the model asked for, over the endpoint's default."""
        request = ChatRequest(MESSAGES, PARAMS, model="picked")
        run_stream(make_backend(fake.base_url, models=("default", "picked")), request)
        assert fake.requests[-1]["model"] == "picked"

    def test_no_model_takes_the_endpoints_default(self, fake: FakeOpenAI):
        """Without a model in the request, the endpoint's first model is asked for."""
        run_stream(make_backend(fake.base_url, models=("default", "picked")), ChatRequest(MESSAGES, PARAMS))
        assert fake.requests[-1]["model"] == "default"

    def test_no_model_anywhere_takes_the_servers_first(self, fake: FakeOpenAI):
        """With no model configured, the first model the server lists is used, kept for later requests, and
        shown by status()."""
        fake.behaviour.models = ("first-listed", "second")
        backend = make_backend(fake.base_url, models=())
        server = server_of(fake.base_url)
        assert backend.status() == BackendStatus("openai", "the first model the server lists", server)

        async def go() -> None:
            [delta async for delta in backend.stream(ChatRequest(MESSAGES, PARAMS))]
            fake.behaviour.models = ("changed",)
            [delta async for delta in backend.stream(ChatRequest(MESSAGES, PARAMS))]
            await backend.aclose()

        asyncio.run(go())
        assert [body["model"] for body in fake.requests] == ["first-listed", "first-listed"]
        assert backend.status() == BackendStatus("openai", "first-listed", server)

    def test_a_requests_model_needs_no_discovery(self, fake: FakeOpenAI):
        """A request naming its model is sent as it is, and the default is still left to the server."""
        backend = make_backend(fake.base_url, models=())
        run_stream(backend, ChatRequest(MESSAGES, PARAMS, model="named"))
        assert fake.requests[-1]["model"] == "named"
        assert backend.status().model == "the first model the server lists"

    def test_a_server_listing_no_models(self, fake: FakeOpenAI):
        """A server that lists no models gives a request error that says to set LLM_MODELS."""
        fake.behaviour.models = ()
        deltas, error = run_failing(make_backend(fake.base_url, models=()), ChatRequest(MESSAGES, PARAMS))
        assert deltas == []
        assert type(error) is BackendRequestError
        assert str(error) == (
            f"The model server at {server_of(fake.base_url)} lists no models it serves (GET /models): set LLM_MODELS."
        )
        assert fake.requests == []

    def test_the_fake_lists_its_model_by_default(self, fake: FakeOpenAI):
        """The fake server's own model list is what an unconfigured backend picks."""
        run_stream(make_backend(fake.base_url, models=()), ChatRequest(MESSAGES, PARAMS))
        assert fake.requests[-1]["model"] == MODEL

    def test_concurrent_first_requests_ask_once(self, fake: FakeOpenAI):
        """Several first requests at once all get the server's first model (discovery runs under a lock)."""
        fake.behaviour.models = ("first-listed",)
        backend = make_backend(fake.base_url, models=())

        async def go() -> list[list[Delta]]:
            async def one() -> list[Delta]:
                return [delta async for delta in backend.stream(ChatRequest(MESSAGES, PARAMS))]

            try:
                return list(await asyncio.gather(*(one() for _ in range(4))))
            finally:
                await backend.aclose()

        assert asyncio.run(go()) == [ECHO] * 4
        assert [body["model"] for body in fake.requests] == ["first-listed"] * 4

    @pytest.mark.parametrize(
        ("status", "error_type", "message"),
        [
            # The key is checked on /models too, and the message says which.
            (
                "401 Unauthorized",
                BackendAuthError,
                "rejected the credentials (HTTP 401). Check the OPENAI_API_KEY secret.",
            ),
            ("503 Service Unavailable", BackendUnavailableError, "failed (HTTP 503). Try again in a moment."),  # down
        ],
    )
    def test_discovery_failure_is_a_named_error(self, status: str, error_type: type[BackendError], message: str):
        """A failing GET /models becomes the same named errors as a failing chat request."""
        with raw_server(http_response(status, '{"error": {"message": "nope"}}')) as base_url:
            deltas, error = run_failing(make_backend(base_url, models=()), ChatRequest(MESSAGES, PARAMS))
        assert deltas == []
        assert type(error) is error_type
        assert str(error) == f"The model server at {server_of(base_url)} {message}"

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            pytest.param("[1, 2]", "application/json", id="list"),  # a list, not a model list object
            pytest.param("not json", "application/json", id="invalid-json"),  # JSON promised, text sent
            pytest.param("<html>proxy login</html>", "text/html", id="html"),  # a captive portal or proxy page
            pytest.param('{"object": "list"}', "application/json", id="no-data"),  # no data at all
            pytest.param('{"object": "list", "data": null}', "application/json", id="null-data"),  # data null
        ],
    )
    def test_discovery_answer_of_the_wrong_shape(self, body: str, content_type: str):
        """A 200 from GET /models that is not a model list is a BackendError naming the server, never an
        AttributeError, TypeError or JSONDecodeError."""
        with raw_server(http_response("200 OK", body, content_type)) as base_url:
            deltas, error = run_failing(make_backend(base_url, models=()), ChatRequest(MESSAGES, PARAMS))
        assert deltas == []
        assert str(error).startswith(f"The model server at {server_of(base_url)} ")


class TestListing:
    def test_the_listing_says_which_models_see_images(self, fake: FakeOpenAI):
        """Start-up reads `GET /models` once: a model the listing marks as reading images sees them."""
        fake.behaviour.models, fake.behaviour.vision_models = ("v", "b"), ("v",)
        backend = make_backend(fake.base_url, models=("v", "b"))

        async def go() -> None:
            await backend.start()
            await backend.start()
            await backend.aclose()

        asyncio.run(go())
        assert (backend.sees_images("v"), backend.sees_images("b")) == (True, False)
        assert len(fake.listings) == 1

    def test_a_chat_waits_for_the_start_up_reading(self, fake: FakeOpenAI):
        """A chat that comes while start-up's listing is on its way waits for it, instead of deciding that no
        model sees images; nothing is read twice."""
        fake.behaviour.models, fake.behaviour.vision_models = ("v",), ("v",)
        fake.behaviour.listing_delay = 0.3
        backend = make_backend(fake.base_url, models=("v",))

        async def go() -> bool:
            starting = asyncio.ensure_future(backend.start())
            await asyncio.sleep(0.05)
            await backend.start()  # what the assistant awaits before a turn
            seen = backend.sees_images("v")
            await starting
            await backend.aclose()
            return seen

        assert asyncio.run(go()) is True
        assert len(fake.listings) == 1

    def test_a_slow_listing_holds_a_chat_only_so_long(self, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch):
        """A server that takes long to list holds a chat LISTING_WAIT seconds at most; it then goes on with the
        models named in the settings."""
        monkeypatch.setattr(openai_backend, "LISTING_WAIT", 0.2)
        fake.behaviour.models, fake.behaviour.vision_models = ("v",), ("v",)
        fake.behaviour.listing_delay = 5.0
        backend = make_backend(fake.base_url, models=("v",))

        async def go() -> tuple[float, bool]:
            starting = asyncio.ensure_future(backend.start())
            await asyncio.sleep(0.05)
            began = time.monotonic()
            await backend.start()
            waited = time.monotonic() - began
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await backend.aclose()
            return waited, backend.sees_images("v")

        waited, seen = asyncio.run(go())
        assert 0.2 <= waited < 1.5
        assert seen is False


class TestCredentials:
    def test_the_backends_own_key(self, fake: FakeOpenAI):
        """A request without api_key is sent with the backend's key."""
        run_stream(make_backend(fake.base_url))
        assert fake.requests[-1]["_headers"]["authorization"] == f"Bearer {OWNER_KEY}"

    def test_a_requests_key_replaces_the_backends(self, fake: FakeOpenAI):
        """A request with api_key sends that key instead, and the next request without one goes back to the
        backend's: per-request credentials never stick to the shared client."""
        visitor = ChatRequest(MESSAGES, PARAMS, model="m", api_key=VISITOR_TOKEN)
        run_streams(make_backend(fake.base_url), visitor, REQUEST, visitor)
        assert [body["_headers"]["authorization"] for body in fake.requests] == [
            f"Bearer {VISITOR_TOKEN}",
            f"Bearer {OWNER_KEY}",
            f"Bearer {VISITOR_TOKEN}",
        ]

    def test_router_never_sends_the_owners_token(self, fake: FakeOpenAI):
        """The visitors' router sends each visitor's token, and never HF_TOKEN, even for a request without one."""
        settings = load_settings(
            {"HF_ROUTER_URL": fake.base_url, "HF_TOKEN": "hf_owner_token_1", "LLM_MAX_RETRIES": "0"}
        )
        endpoint = router_endpoint(settings, endpoint_from_settings(settings))
        backend = OpenAIBackend.from_settings(settings, endpoint, Scrubber(settings.secrets()))
        visitor = ChatRequest(MESSAGES, PARAMS, api_key=VISITOR_TOKEN)
        run_streams(backend, visitor, ChatRequest(MESSAGES, PARAMS))
        assert [body["_headers"]["authorization"] for body in fake.requests] == [
            f"Bearer {VISITOR_TOKEN}",
            "Bearer not-needed",
        ]
        assert [body["model"] for body in fake.requests] == [DEFAULT_HF_ROUTER_MODEL] * 2

    def test_keyless_server(self, fake: FakeOpenAI):
        """A server that needs no key gets the placeholder, never an empty Authorization."""
        endpoint = endpoint_from_settings(load_settings({"OPENAI_BASE_URL": fake.base_url, "LLM_MODEL": "m"}))
        assert endpoint is not None
        run_stream(OpenAIBackend(endpoint, timeout=10, connect_timeout=10, max_retries=0, scrubber=Scrubber(())))
        assert fake.requests[-1]["_headers"]["authorization"] == "Bearer not-needed"


class TestStatusErrors:
    @pytest.mark.parametrize(
        ("status", "error_type", "message"),
        [
            # A wrong key: names what to check.
            (401, BackendAuthError, "rejected the credentials (HTTP 401). Check the OPENAI_API_KEY secret."),
            # A key without the right: the same advice.
            (403, BackendAuthError, "rejected the credentials (HTTP 403). Check the OPENAI_API_KEY secret."),
            # Too many requests, after the client's own retries.
            (429, BackendRateLimitError, "is rate-limiting requests (HTTP 429). Wait a moment and try again."),
            # The server's own failures.
            (500, BackendUnavailableError, "failed (HTTP 500). Try again in a moment."),
            (502, BackendUnavailableError, "failed (HTTP 502). Try again in a moment."),
            (503, BackendUnavailableError, "failed (HTTP 503). Try again in a moment."),
            # An unknown model: names it, and what to set.
            (
                404,
                BackendRequestError,
                "does not serve model 'm' (HTTP 404). Pick another model, or set LLM_MODELS to models it serves.",
            ),
            # A refused request: the server's own reason.
            (400, BackendRequestError, "refused the request (HTTP 400): simulated failure"),
            (422, BackendRequestError, "refused the request (HTTP 422): simulated failure"),
        ],
    )
    def test_status_becomes_a_named_error(
        self, fake: FakeOpenAI, status: int, error_type: type[BackendError], message: str
    ):
        """Each HTTP failure becomes its own BackendError with an actionable message and its status code."""
        fake.behaviour.faults.append(Fault(status=status))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == []
        assert type(error) is error_type
        assert str(error) == f"The model server at {server_of(fake.base_url)} {message}"
        assert error.status_code == status

    def test_rejected_visitor_token_names_the_sign_in(self, fake: FakeOpenAI):
        """On the visitors' router, a 401 tells the visitor to sign in again, not to check an owner's secret."""
        settings = load_settings({"HF_ROUTER_URL": fake.base_url, "LLM_MAX_RETRIES": "0"})
        backend = OpenAIBackend.from_settings(settings, router_endpoint(settings, None), Scrubber(()))
        fake.behaviour.faults.append(Fault(status=401))
        _, error = run_failing(backend, ChatRequest(MESSAGES, PARAMS, api_key=VISITOR_TOKEN))
        assert type(error) is BackendAuthError
        assert str(error) == (
            f"The model server at {server_of(fake.base_url)} rejected the credentials (HTTP 401). Check {ROUTER_HINT}."
        )

    @pytest.mark.parametrize(
        ("upstream", "shown"),
        [
            ("model m does not support tools", "model m does not support tools"),  # shown as the server said it
            ("first line\n\n  second\tline", "first line second line"),  # one line, whitespace runs collapsed
            ("word " * 100, " ".join(["word"] * 40) + "…"),  # shortened to 200 characters
            ("", "no details"),  # an empty reason still reads as a sentence
        ],
    )
    def test_upstream_detail_is_one_short_line(self, fake: FakeOpenAI, upstream: str, shown: str):
        """A 400's upstream reason is kept, on one line of at most 200 characters."""
        fake.behaviour.faults.append(Fault(status=400, message=upstream))
        _, error = run_failing(make_backend(fake.base_url))
        prefix = f"The model server at {server_of(fake.base_url)} refused the request (HTTP 400): "
        assert str(error) == prefix + shown
        assert len(str(error)) - len(prefix) <= 200

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            # Text Generation Inference: {"error": "<reason>", "error_type": ...}.
            pytest.param(
                '{"error": "Input validation error: max_new_tokens must be <= 4096", "error_type": "validation"}',
                "application/json",
                id="tgi",
            ),
            # A plain-text reason, as proxies and small servers send.
            pytest.param("Input validation error: max_new_tokens must be <= 4096", "text/plain", id="text"),
        ],
    )
    def test_upstream_detail_in_other_error_shapes(self, body: str, content_type: str):
        """A 400 whose reason is a bare string (TGI's error shape, or a text body) still shows that reason."""
        with raw_server(http_response("400 Bad Request", body, content_type)) as base_url:
            _, error = run_failing(make_backend(base_url))
        assert type(error) is BackendRequestError
        assert str(error) == (
            f"The model server at {server_of(base_url)} refused the request (HTTP 400): Input validation error: "
            "max_new_tokens must be <= 4096"
        )


def hostile_fault(channel: str, text: str) -> Fault:
    """A fault whose server text is `text`, sent the way `channel` says."""
    if channel == "http 400":
        return Fault(status=400, message=text)
    if channel == "error object":
        return Fault(error_after=1, message=text)
    if channel == "event: error":
        return Fault(error_after=1, message=text, error_event=True)
    # "error string": an error that is a bare string in a data line.
    return Fault(raw_after=1, raw=b'data: {"error": "' + text.encode() + b'"}\n\n')


HOSTILE_CASES = [
    pytest.param(secret, form, id=f"{who}-{form}")
    for who, secret in (("owner", OWNER_KEY), ("visitor", VISITOR_TOKEN))
    for form in echoed_forms(secret)
]


class TestHostileTexts:
    @pytest.mark.parametrize("channel", ["http 400", "error object", "event: error", "error string"])
    @pytest.mark.parametrize(("secret", "form"), HOSTILE_CASES)
    def test_echoed_secret_is_masked(self, fake: FakeOpenAI, channel: str, secret: str, form: str):
        """A server text quoting the owner's key or the visitor's token, in any form, reaches the error masked."""
        fake.behaviour.faults.append(hostile_fault(channel, f"bad credentials: {echoed_forms(secret)[form]}"))
        request = ChatRequest(MESSAGES, PARAMS, model="m", api_key=VISITOR_TOKEN)
        _, error = run_failing(make_backend(fake.base_url), request)
        text = str(error)
        server = server_of(fake.base_url)
        if channel == "http 400":
            assert type(error) is BackendRequestError
            assert text.startswith(f"The model server at {server} refused the request (HTTP 400): bad credentials: ")
        else:
            assert type(error) is StreamInterruptedError
            assert text.startswith(
                f"The reply was cut off: the model server at {server} reported an error: bad credentials: "
            )
        assert "***" in text
        assert "\n" not in text
        assert_no_secret(text)

    def test_the_visitors_token_is_a_secret_only_for_its_request(self, fake: FakeOpenAI):
        """The visitor's token is masked during its own request, and the owner's scrubber knows nothing of it
        afterwards: the secret scope ends with the stream."""
        scrubber = Scrubber([OWNER_KEY])
        backend = OpenAIBackend(
            OpenAIEndpoint(fake.base_url, OWNER_KEY, ("m",), KEY_HINT),
            timeout=10,
            connect_timeout=10,
            max_retries=0,
            scrubber=scrubber,
        )
        fake.behaviour.faults.append(Fault(status=400, message=f"token {VISITOR_TOKEN} and key {OWNER_KEY}"))
        _, error = run_failing(backend, ChatRequest(MESSAGES, PARAMS, model="m", api_key=VISITOR_TOKEN))
        assert str(error).endswith("refused the request (HTTP 400): token *** and key ***")
        assert scrubber.scrub(f"token {VISITOR_TOKEN}") == f"token {VISITOR_TOKEN}"

    def test_a_long_hostile_text_is_masked_before_it_is_shortened(self, fake: FakeOpenAI):
        """A secret that straddles the 200-character cut is masked whole, not cut into a readable prefix."""
        fake.behaviour.faults.append(Fault(status=400, message="x" * 190 + " " + OWNER_KEY))
        _, error = run_failing(make_backend(fake.base_url))
        assert str(error).endswith(": " + "x" * 190 + " ***")
        assert OWNER_KEY[:8] not in str(error)


class TestSecretsInTheReply:
    @pytest.mark.parametrize(("secret", "form"), HOSTILE_CASES)
    def test_a_secret_streamed_as_reply_text_is_masked(self, fake: FakeOpenAI, secret: str, form: str):
        """A server that streams the key it was sent back as the answer, cut between chunks anywhere: no piece
        shown holds any of it, and the rest of the reply arrives whole."""
        echoed = echoed_forms(secret)[form]
        text = f"here it is: {echoed} and more"
        start = len("here it is: ")
        # Cuts just inside its start and spread over it, each a request to the server (the stream masker's own
        # tests, tests/test_redact.py, cut anywhere).
        for cut in sorted({start + 1, start + 2, *range(start + 3, start + len(echoed), max(3, len(echoed) // 6))}):
            fake.reset()
            fake.behaviour.delay = 0.0  # the pieces' timing plays no part here
            fake.behaviour.pieces = (text[:cut], text[cut:])
            request = ChatRequest(MESSAGES, PARAMS, model="m", api_key=VISITOR_TOKEN)
            deltas = run_stream(make_backend(fake.base_url), request)
            shown = "".join(delta.text for delta in deltas)
            assert shown.startswith("here it is: "), shown
            assert shown.endswith(" and more"), shown
            assert "***" in shown
            for piece in deltas:
                assert_no_secret(piece.text)
            assert_no_secret(shown)

    def test_a_secret_streamed_as_thinking_is_masked(self, fake: FakeOpenAI):
        fake.behaviour.thinking = f"the key is {OWNER_KEY} ok"
        deltas = run_stream(make_backend(fake.base_url))
        thinking = "".join(delta.thinking for delta in deltas)
        assert thinking == "the key is *** ok"
        assert "".join(delta.text for delta in deltas) == "You said: hello there"

    def test_only_what_could_begin_a_secret_is_held_back(self, fake: FakeOpenAI):
        """Each chunk is shown as it came, but for an end that could begin the key, shown with the next chunk."""
        fake.behaviour.pieces = ("one ", "two #own", "ed it", " now")
        texts = [delta.text for delta in run_stream(make_backend(fake.base_url))]
        assert texts == ["one ", "two ", "#owned it", " now", "", ""]  # then the finish, then the usage

    def test_text_after_the_finish_reason_is_masked_with_what_came_before(self):
        """A hostile server that sends the key's start with the finish_reason and its end after: still masked."""

        def chunk(content: str, finish: str | None = None) -> str:
            choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
            return "data: " + json.dumps({"choices": [choice]}) + "\n\n"

        body = chunk("the key is " + OWNER_KEY[:7], "stop") + chunk(OWNER_KEY[7:] + " ok") + "data: [DONE]\n\n"
        with raw_server(http_response("200 OK", body, "text/event-stream")) as base_url:
            deltas = run_stream(make_backend(base_url))
        assert "".join(delta.text for delta in deltas) == "the key is *** ok"
        assert [delta.finish_reason for delta in deltas if delta.finish_reason] == ["stop"]

    def test_text_held_back_is_shown_when_the_stream_is_cut(self, fake: FakeOpenAI):
        """A reply that ends on what could begin the key ("#owner~") and is then cut: that end still shows."""
        fake.behaviour.pieces = ("one ", "two #owner~", " never sent")
        fake.behaviour.faults.append(Fault(cut_after=2))
        received, error = run_failing(make_backend(fake.base_url))
        assert type(error) is StreamInterruptedError
        assert "".join(delta.text for delta in received) == "one two #owner~"


UNREADABLE_CHUNKS = [
    pytest.param(b'data: "a string"\n\n', id="chunk-string"),  # JSON, but a string instead of an object
    pytest.param(b"data: [1, 2]\n\n", id="chunk-list"),  # a list instead of an object
    pytest.param(b"data: 42\n\n", id="chunk-number"),  # a number instead of an object
    pytest.param(b"data: null\n\n", id="chunk-null"),  # null instead of an object
    pytest.param(b'data: {"choices": {"0": {}}}\n\n', id="choices-object"),  # choices must be a list
    pytest.param(b'data: {"choices": "abc"}\n\n', id="choices-string"),  # choices must be a list
    pytest.param(b'data: {"choices": [1]}\n\n', id="choice-number"),  # each choice must be an object
    pytest.param(b'data: {"choices": [{"index": 0, "delta": "text"}]}\n\n', id="delta-string"),  # not an object
    pytest.param(b'data: {"choices": [{"index": 0, "delta": [1]}]}\n\n', id="delta-list"),  # not an object
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n', id="content-number"),
    # Content parts (a list) are not what a chat completion chunk streams.
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": ["a"]}}]}\n\n', id="content-list"),
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": true}}]}\n\n', id="content-bool"),
    pytest.param(b"data: {not json\n\n", id="invalid-json"),  # not JSON at all
    pytest.param(b'data: {"choices": [}\n\n', id="truncated-json"),  # JSON cut short
    pytest.param(b"data: \xff\xfe\n\n", id="not-utf8"),  # bytes that are not text
]

ERROR_REPORTS = [
    pytest.param(b'data: {"error": "a plain string"}\n\n', "a plain string", id="error-string"),  # a bare reason
    pytest.param(b'data: {"error": {"message": "GPU fell over"}}\n\n', "GPU fell over", id="error-object"),
    pytest.param(b'data: {"error": {"message": 5}}\n\n', "no details", id="error-message-number"),  # no text
    pytest.param(b'data: {"error": 7}\n\n', "no details", id="error-number"),  # neither object nor text
    pytest.param(b"event: error\ndata: not json at all\n\n", "not json at all", id="event-text"),  # plain text
    pytest.param(b'event: error\ndata: "quoted"\n\n', "quoted", id="event-json-string"),  # a JSON string
    pytest.param(b'event: error\ndata: {"message": "flat"}\n\n', "flat", id="event-flat-object"),  # no wrapper
    pytest.param(b"event: error\ndata: [1, 2]\n\n", "no details", id="event-list"),  # no reason to show
]


class TestMalformedStreams:
    @pytest.mark.parametrize("raw", UNREADABLE_CHUNKS)
    def test_unreadable_chunk_is_an_interruption(self, fake: FakeOpenAI, raw: bytes):
        """A chunk of the wrong shape ends the reply with "could not be read", never an AttributeError or
        TypeError, after the pieces that did arrive."""
        fake.behaviour.faults.append(Fault(raw_after=1, raw=raw))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == [Delta("You")]
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} sent a reply that could not "
            "be read."
        )

    @pytest.mark.parametrize(("raw", "reason"), ERROR_REPORTS)
    def test_error_in_the_stream_is_reported_not_shown(self, fake: FakeOpenAI, raw: bytes, reason: str):
        """An error inside the stream ends the reply with the server's reason, never as reply text."""
        fake.behaviour.faults.append(Fault(raw_after=1, raw=raw))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == [Delta("You")]
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} reported an error: {reason}"
        )

    @pytest.mark.parametrize("error_event", [False, True])
    def test_the_fakes_error_event(self, fake: FakeOpenAI, error_event: bool):
        """The fake's own mid-stream error, as a data line or as `event: error`, after two pieces."""
        fake.behaviour.faults.append(Fault(error_after=2, message="GPU fell over", error_event=error_event))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == [Delta("You"), Delta(" said:")]
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} reported an error: GPU fell over"
        )

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b": keep-alive\n\n", id="comment"),  # an SSE comment
            pytest.param(b"event: ping\n\n", id="event-without-data"),  # an event with no data
            # An error event with no data: the blank line ends it, and the next data line is a chunk again.
            pytest.param(b"event: error\n\n", id="error-event-without-data"),
            # A usage-only chunk, as OpenAI sends with stream_options.include_usage and Azure as its first.
            pytest.param(b'data: {"choices": [], "usage": {"total_tokens": 3}}\n\n', id="empty-choices"),
            pytest.param(b'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk"}\n\n', id="no-choices"),
            pytest.param(b'data: {"choices": null}\n\n', id="null-choices"),  # as some servers send
            pytest.param(b'data: {"error": null, "choices": [{"index": 0, "delta": {}}]}\n\n', id="null-error"),
            pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": null}}]}\n\n', id="null-content"),
            # A second choice (n=1 was asked for) is ignored.
            pytest.param(b'data: {"choices": [{"index": 1, "delta": {"content": "other"}}]}\n\n', id="second-choice"),
            # Thinking that is not text is no thinking.
            pytest.param(b'data: {"choices": [{"index": 0, "delta": {"reasoning": 5}}]}\n\n', id="number-thinking"),
        ],
    )
    def test_harmless_lines_are_skipped(self, fake: FakeOpenAI, raw: bytes):
        """Lines that carry no reply text leave the reply as it is."""
        fake.behaviour.faults.append(Fault(raw_after=1, raw=raw))
        assert run_stream(make_backend(fake.base_url)) == ECHO

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b'data:{"choices": [{"index": 0, "delta": {"content": "!"}}]}\n\n', id="no-space"),
            pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": "!"}}]}\r\n\r\n', id="crlf"),
        ],
    )
    def test_data_lines_in_other_spellings(self, fake: FakeOpenAI, raw: bytes):
        """`data:` without a space, and CRLF line ends, are read as the SSE format allows."""
        fake.behaviour.faults.append(Fault(raw_after=1, raw=raw))
        assert run_stream(make_backend(fake.base_url)) == [ECHO[0], Delta("!"), *ECHO[1:]]


class TestCutStreams:
    def test_cut_connection(self, fake: FakeOpenAI):
        """A connection dropped mid-reply raises StreamInterruptedError after the pieces that arrived."""
        fake.behaviour.faults.append(Fault(cut_after=2))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == [Delta("You"), Delta(" said:")]
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the connection to the model server at {server_of(fake.base_url)} was lost. "
            "Try again."
        )

    @pytest.mark.parametrize("end_after", [0, 3])
    def test_body_ending_without_finish_reason(self, fake: FakeOpenAI, end_after: int):
        """A body that just stops, with no finish_reason, is reported as cut, not as a complete reply."""
        fake.behaviour.faults.append(Fault(end_after=end_after))
        deltas, error = run_failing(make_backend(fake.base_url))
        assert deltas == ECHO[:end_after]
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} closed the stream before the end."
        )

    def test_closing_early_disconnects_promptly(self, fake: FakeOpenAI):
        """Closing the stream after one piece returns at once, and the server sees the client go away."""
        fake.behaviour.tokens, fake.behaviour.delay = 200, 0.02

        async def go() -> tuple[float, float]:
            backend = make_backend(fake.base_url)
            stream = backend.stream(REQUEST)
            assert await anext(stream) == Delta("t0 ")
            started = time.monotonic()
            await stream.aclose()  # type: ignore[attr-defined]
            closed = time.monotonic() - started
            while not fake.disconnects and time.monotonic() - started < 2:
                await asyncio.sleep(0.01)
            await backend.aclose()
            return closed, (fake.disconnects[0] - started) if fake.disconnects else float("inf")

        closed, seen = asyncio.run(go())
        assert closed < 0.5
        assert seen < 1.0
        assert len(fake.disconnects) == 1
        assert len(fake.requests) == 1

    def test_closing_from_another_task(self, fake: FakeOpenAI):
        """A stream read in one task and closed from another (Gradio's /cancel closes the iterator from the
        request handler) closes cleanly, and the server sees the disconnect."""
        fake.behaviour.tokens, fake.behaviour.delay = 200, 0.02

        async def go() -> None:
            backend = make_backend(fake.base_url)
            stream = backend.stream(ChatRequest(MESSAGES, PARAMS, model="m", api_key=VISITOR_TOKEN))
            assert await anext(stream) == Delta("t0 ")
            await asyncio.create_task(stream.aclose())  # type: ignore[attr-defined]
            started = time.monotonic()
            while not fake.disconnects and time.monotonic() - started < 2:
                await asyncio.sleep(0.01)
            await backend.aclose()

        asyncio.run(go())
        assert len(fake.disconnects) == 1


class TestConnectionFailures:
    @pytest.mark.parametrize("models", [("m",), ()])
    def test_refused_connection(self, models: tuple[str, ...]):
        """Nothing listening: a clear 'could not connect' naming the server, for the chat and for model
        discovery alike."""
        base_url = f"http://127.0.0.1:{free_port()}/v1"
        deltas, error = run_failing(make_backend(base_url, models=models), ChatRequest(MESSAGES, PARAMS))
        assert deltas == []
        assert type(error) is BackendUnavailableError
        assert str(error) == (
            f"Could not connect to the model server at {server_of(base_url)}. Check that it is running and that "
            "OPENAI_BASE_URL points at it."
        )

    @pytest.mark.parametrize("models", [("m",), ()])
    def test_a_server_that_does_not_speak_http(self, models: tuple[str, ...]):
        """A reply that is not HTTP is a clear 'could not be read' for the chat and for model discovery alike."""
        with raw_server(b"NOT HTTP AT ALL\r\n\r\n") as base_url:
            deltas, error = run_failing(make_backend(base_url, models=models), ChatRequest(MESSAGES, PARAMS))
        assert deltas == []
        assert type(error) is BackendUnavailableError
        assert str(error) == (
            f"The model server at {server_of(base_url)} sent a reply that could not be read, or closed the "
            "connection. Check that OPENAI_BASE_URL points at an OpenAI-compatible server."
        )

    @pytest.mark.parametrize("models", [("m",), ()])
    def test_silent_server_times_out(self, models: tuple[str, ...]):
        """A server that accepts the connection and never answers gives a timeout that names LLM_TIMEOUT."""
        with raw_server(None) as base_url:
            started = time.monotonic()
            deltas, error = run_failing(
                make_backend(base_url, models=models, timeout=0.3), ChatRequest(MESSAGES, PARAMS)
            )
            elapsed = time.monotonic() - started
        assert deltas == []
        assert type(error) is BackendTimeoutError
        assert str(error) == (
            f"The model server at {server_of(base_url)} did not answer within 0.3 s. Try again, or raise LLM_TIMEOUT."
        )
        assert elapsed < 3

    def test_stall_mid_stream_times_out(self, fake: FakeOpenAI):
        """A server that stalls after the first bytes past LLM_TIMEOUT (read from the settings) cuts the reply."""
        fake.behaviour.delay = 2
        settings = load_settings({"OPENAI_BASE_URL": fake.base_url, "LLM_TIMEOUT": "0.3", "LLM_MAX_RETRIES": "0"})
        endpoint = OpenAIEndpoint(fake.base_url, "not-needed", ("m",), KEY_HINT)
        deltas, error = run_failing(OpenAIBackend.from_settings(settings, endpoint, Scrubber(())))
        assert deltas == []
        assert type(error) is StreamInterruptedError
        assert str(error) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} sent nothing of the reply for "
            "0.3 s (LLM_TIMEOUT). Try again, or raise LLM_TIMEOUT."
        )


def run_bounded(backend: OpenAIBackend, request: ChatRequest = REQUEST, *, within: float = 5.0) -> list[Delta]:
    """`run_stream`, failing (not hanging) when the stream has not ended `within` seconds."""

    async def go() -> list[Delta]:
        try:
            return await asyncio.wait_for(collect(backend.stream(request)), within)
        finally:
            await backend.aclose()

    return asyncio.run(go())


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


# What a server may send while it writes nothing: none of it is a piece of the reply.
SILENCE = [
    pytest.param(b": keep-alive\n\n", id="comment"),
    pytest.param(b"\n", id="empty-line"),
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {}}]}\n\n', id="empty-chunk"),
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {"content": ""}}]}\n\n', id="empty-content"),
    pytest.param(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n', id="role-only"),
    pytest.param(b'data: {"choices": [], "usage": null}\n\n', id="null-usage"),
]


class TestSilence:
    @pytest.mark.parametrize("filler", SILENCE)
    def test_a_server_sending_only_filler_times_out(self, fake: FakeOpenAI, filler: bytes):
        """LLM_TIMEOUT counts time without a piece of the reply: comments, blank lines and empty chunks every
        50 ms do not keep a reply open, and the connection is closed."""
        fake.behaviour.faults.append(Fault(stall_after=2, stall_with=filler, stall_every=0.05))
        received: list[Delta] = []
        backend = make_backend(fake.base_url, timeout=0.3)
        started = time.monotonic()

        async def go() -> None:
            try:
                async for delta in backend.stream(REQUEST):
                    received.append(delta)
            finally:
                await backend.aclose()

        with pytest.raises(StreamInterruptedError) as caught:
            asyncio.run(asyncio.wait_for(go(), 5))
        elapsed = time.monotonic() - started
        assert received == [Delta("You"), Delta(" said:")]
        assert str(caught.value) == (
            f"The reply was cut off: the model server at {server_of(fake.base_url)} sent nothing of the reply for "
            "0.3 s (LLM_TIMEOUT). Try again, or raise LLM_TIMEOUT."
        )
        assert 0.3 <= elapsed < 2
        assert fake.wait_for_disconnect(1) is not None

    def test_pieces_slower_than_the_timeout_in_all_are_fine(self, fake: FakeOpenAI):
        """The limit is on each silence, not on the reply: pieces 0.2 s apart for 0.8 s, under a 0.6 s LLM_TIMEOUT,
        stream to the end."""
        fake.behaviour.tokens, fake.behaviour.delay = 4, 0.2
        deltas = run_bounded(make_backend(fake.base_url, timeout=0.6))
        assert "".join(delta.text for delta in deltas) == "t0 t1 t2 t3 "
        assert deltas[-1].usage == Usage(6, 4)

    def test_a_slow_consumer_is_not_the_servers_silence(self, fake: FakeOpenAI):
        """Time the reader spends between two pieces (a busy event loop, a slow client) is not counted."""
        fake.behaviour.delay = 0.0

        async def go() -> list[Delta]:
            backend = make_backend(fake.base_url, timeout=0.3)
            deltas = []
            try:
                async for delta in backend.stream(REQUEST):
                    if not deltas:
                        await asyncio.sleep(0.6)  # twice LLM_TIMEOUT, between the first piece and the next
                    deltas.append(delta)
            finally:
                await backend.aclose()
            return deltas

        assert asyncio.run(go()) == ECHO


class TestUsage:
    def test_asked_for_and_carried_on_its_own_last_delta(self, fake: FakeOpenAI):
        """`stream_options.include_usage` is sent, and the server's last chunk (usage, no choices) arrives as a
        Delta with only usage, as reported (not estimated)."""
        deltas = run_stream(make_backend(fake.base_url))
        assert fake.requests[-1]["stream_options"] == {"include_usage": True}
        assert deltas[-1] == Delta(usage=Usage(6, 4, estimated=False))

    def test_a_server_that_sends_none(self, fake: FakeOpenAI):
        """A server that ignores the option (older TGI, Ollama before 0.5) ends without a usage Delta."""
        fake.behaviour.usage = False
        assert run_stream(make_backend(fake.base_url)) == ECHO[:-1]

    def test_usage_on_every_chunk_counts_up(self, fake: FakeOpenAI):
        """vLLM's continuous usage stats: every piece carries the count so far."""
        fake.behaviour.usage_every_chunk = True
        deltas = run_stream(make_backend(fake.base_url))
        assert [delta.usage.completion_tokens for delta in deltas if delta.usage] == [0, 1, 2, 3, 4, 4, 4]

    @pytest.mark.parametrize(
        "usage",
        [
            pytest.param('{"total_tokens": 3}', id="no-counts"),
            pytest.param('{"prompt_tokens": "5", "completion_tokens": 2}', id="text-count"),
            pytest.param('{"prompt_tokens": true, "completion_tokens": 2}', id="bool-count"),
            pytest.param('{"prompt_tokens": -1, "completion_tokens": 2}', id="negative"),
            pytest.param('{"prompt_tokens": 1e400, "completion_tokens": 2}', id="float"),
            pytest.param('{"prompt_tokens": 99999999999, "completion_tokens": 2}', id="absurd"),
            pytest.param("[1, 2]", id="list"),
        ],
    )
    def test_a_malformed_usage_is_no_usage(self, fake: FakeOpenAI, usage: str):
        """Counts are taken only as the protocol gives them: whole, non-negative, plausible numbers."""
        fake.behaviour.usage = False
        fake.behaviour.faults.append(Fault(raw_after=1, raw=f'data: {{"choices": [], "usage": {usage}}}\n\n'.encode()))
        assert run_stream(make_backend(fake.base_url)) == ECHO[:-1]

    def test_estimate_of_a_prompt(self):
        """Before sending, the prompt is estimated from characters: 4 a token, rounded up, and 4 tokens a message,
        plus 3 for the reply's cue."""
        backend = make_backend("http://127.0.0.1:1/v1")
        messages: list[Message] = [{"role": "system", "content": "x" * 9}, {"role": "user", "content": "y" * 8}]
        assert backend.estimate_prompt_tokens(ChatRequest(messages, PARAMS)) == 5 + 4 * 2 + 3
        asyncio.run(backend.aclose())


class TestStrictServers:
    @pytest.mark.parametrize(
        "refusal",
        [
            # vLLM before 0.4.3 (pydantic's extra="forbid"), as the fake's strict mode answers.
            pytest.param(None, id="vllm-extra-forbidden"),
            # Azure OpenAI's older API versions.
            pytest.param(
                Fault(status=400, message="Unrecognized request argument supplied: stream_options"), id="azure"
            ),
            # A gateway that checks parameters.
            pytest.param(Fault(status=400, message="Unknown parameter: 'stream_options'."), id="gateway"),
            # A pydantic server answering 422.
            pytest.param(Fault(status=422, message="body.stream_options: Extra inputs are not permitted"), id="422"),
        ],
    )
    def test_a_refused_stream_options_is_dropped_and_remembered(self, fake: FakeOpenAI, refusal: Fault | None):
        """A 400 or 422 that names stream_options: the request is sent again without it, the reply streams (with
        no usage), and later requests to this backend never send it."""
        if refusal is None:
            fake.behaviour.strict = True
        else:
            fake.behaviour.usage = False
            fake.behaviour.faults.append(refusal)
        first, second = run_streams(make_backend(fake.base_url), REQUEST, REQUEST)
        assert first == second == ECHO[:-1]
        assert ["stream_options" in body for body in fake.requests] == [True, False, False]

    def test_a_refusal_that_does_not_name_it_is_not_retried(self, fake: FakeOpenAI):
        """Any other 400 is the request's own fault: reported at once, and the option is still asked for."""
        fake.behaviour.faults.append(Fault(status=400, message="max_tokens is too large"))
        backend = make_backend(fake.base_url)

        async def go() -> list[Delta]:
            with pytest.raises(BackendRequestError, match="max_tokens is too large"):
                await collect(backend.stream(REQUEST))
            deltas = await collect(backend.stream(REQUEST))
            await backend.aclose()
            return deltas

        assert asyncio.run(go()) == ECHO
        assert ["stream_options" in body for body in fake.requests] == [True, True]

    def test_a_strict_server_that_refuses_again_is_an_error(self, fake: FakeOpenAI):
        """Retried once only: a server that refuses the request without the option too gives its reason."""
        fake.behaviour.faults.extend(
            [Fault(status=400, message="no stream_options here"), Fault(status=400, message="nor this")]
        )
        deltas, error = run_failing(make_backend(fake.base_url))
        assert (deltas, type(error)) == ([], BackendRequestError)
        assert str(error).endswith("refused the request (HTTP 400): nor this")
        assert len(fake.requests) == 2
