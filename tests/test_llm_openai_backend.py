"""Tests for services/llm/openai_backend.py against a real local server speaking the OpenAI streaming protocol."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from services.config import DEFAULT_HF_ROUTER_MODEL, HF_ROUTER_URL, load_settings
from services.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimitError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    StreamInterruptedError,
)
from services.llm.base import GenerationParams
from services.llm.openai_backend import OpenAIBackend, endpoint_from_settings
from tests.fake_openai import Fault, free_port

MESSAGES = [{"role": "user", "content": "hello there"}]
PARAMS = GenerationParams(temperature=0.5, max_tokens=100)


def backend_for(base_url: str, **env: str) -> OpenAIBackend:
    settings = load_settings({"OPENAI_BASE_URL": base_url, "LLM_MAX_RETRIES": "0", **env})
    backend = OpenAIBackend.from_settings(settings)
    assert backend is not None
    return backend


def run_stream(backend: OpenAIBackend, *, times: int = 1) -> list[str]:
    """Stream `times` replies in one event loop (the client's connections belong to it); return the last."""

    async def go() -> list[str]:
        try:
            for _ in range(times):
                pieces = [piece async for piece in backend.stream(MESSAGES, PARAMS)]
            return pieces
        finally:
            await backend.aclose()

    return asyncio.run(go())


class TestEndpoint:
    def test_openai_key_alone_uses_openai(self):
        """OPENAI_API_KEY alone: api.openai.com with the default model."""
        endpoint = endpoint_from_settings(load_settings({"OPENAI_API_KEY": "sk-1"}))
        assert endpoint is not None
        assert (endpoint.base_url, endpoint.api_key, endpoint.model) == (None, "sk-1", "gpt-4o-mini")

    def test_hf_token_alone_uses_the_router(self):
        """HF_TOKEN alone: Hugging Face's OpenAI-compatible router, with the token as key."""
        endpoint = endpoint_from_settings(load_settings({"HF_TOKEN": "hf_1"}))
        assert endpoint is not None
        assert (endpoint.base_url, endpoint.api_key, endpoint.model) == (HF_ROUTER_URL, "hf_1", DEFAULT_HF_ROUTER_MODEL)

    def test_openai_key_wins_over_hf_token(self):
        """With both set, the OpenAI key is used."""
        endpoint = endpoint_from_settings(load_settings({"OPENAI_API_KEY": "sk-1", "HF_TOKEN": "hf_1"}))
        assert endpoint is not None
        assert endpoint.api_key == "sk-1"

    def test_base_url_alone_needs_no_key(self):
        """A local server (Ollama, llama.cpp) works with only OPENAI_BASE_URL; the model is asked of it."""
        endpoint = endpoint_from_settings(load_settings({"OPENAI_BASE_URL": "http://localhost:11434/v1"}))
        assert endpoint is not None
        assert endpoint.model is None
        assert endpoint.api_key == "not-needed"

    def test_hf_token_never_goes_to_a_foreign_host(self):
        """HF_TOKEN is sent to Hugging Face hosts only, never to another OPENAI_BASE_URL."""
        foreign = load_settings({"OPENAI_BASE_URL": "https://evil.example.com/v1", "HF_TOKEN": "hf_1"})
        lookalike = load_settings({"OPENAI_BASE_URL": "https://huggingface.co.evil.com/v1", "HF_TOKEN": "hf_1"})
        endpoint_hf = load_settings({"OPENAI_BASE_URL": "https://x.endpoints.huggingface.cloud/v1", "HF_TOKEN": "hf_1"})
        assert endpoint_from_settings(foreign).api_key == "not-needed"  # type: ignore[union-attr]
        assert endpoint_from_settings(lookalike).api_key == "not-needed"  # type: ignore[union-attr]
        assert endpoint_from_settings(endpoint_hf).api_key == "hf_1"  # type: ignore[union-attr]

    def test_nothing_configured(self):
        """No key, no URL, no token: no endpoint."""
        assert endpoint_from_settings(load_settings({})) is None


class TestStreaming:
    def test_streams_pieces_and_sends_parameters(self, fake):
        """Pieces arrive one by one, and the request carries the messages and parameters."""
        pieces = run_stream(backend_for(fake.base_url, LLM_MODEL="my-model", OPENAI_API_KEY="sk-test"))
        assert pieces == ["You", " said:", " hello", " there"]
        request = fake.requests[-1]
        assert request["model"] == "my-model"
        assert request["messages"] == MESSAGES
        assert request["temperature"] == 0.5
        assert request["max_tokens"] == 100
        assert request["stream"] is True
        assert request["_headers"]["authorization"] == "Bearer sk-test"

    def test_model_is_discovered_when_unset(self, fake):
        """With only OPENAI_BASE_URL, the first model the server lists is used."""
        backend = backend_for(fake.base_url)
        run_stream(backend)
        assert fake.requests[-1]["model"] == "fake-model"
        assert backend.model == "fake-model"

    def test_closing_early_stops_reading(self, fake):
        """Closing the stream after one piece returns at once instead of reading the whole reply."""
        fake.behaviour.tokens = 200

        async def go() -> float:
            backend = backend_for(fake.base_url)
            stream = backend.stream(MESSAGES, PARAMS)
            await anext(stream)
            started = time.monotonic()
            await stream.aclose()  # type: ignore[attr-defined]
            elapsed = time.monotonic() - started
            await backend.aclose()
            return elapsed

        assert asyncio.run(go()) < 0.5

    def test_retries_a_server_error_before_the_first_token(self, fake):
        """A 503 before any text is retried; the user sees one clean reply."""
        fake.behaviour.faults.append(Fault(status=503))
        pieces = run_stream(backend_for(fake.base_url, LLM_MAX_RETRIES="1"))
        assert "".join(pieces) == "You said: hello there"
        assert len(fake.requests) == 2


class TestErrors:
    CASES = (
        (401, BackendAuthError, "rejected the credentials (HTTP 401)"),
        (403, BackendAuthError, "rejected the credentials (HTTP 403)"),
        (429, BackendRateLimitError, "rate-limiting"),
        (500, BackendUnavailableError, "failed (HTTP 500)"),
        (503, BackendUnavailableError, "failed (HTTP 503)"),
        (404, BackendRequestError, "Set LLM_MODEL"),
        (400, BackendRequestError, "refused the request (HTTP 400): simulated failure"),
    )

    @pytest.mark.parametrize(("status", "error_type", "text"), CASES)
    def test_status_becomes_a_named_error(self, fake, status, error_type, text):
        """Each HTTP failure becomes its own BackendError with an actionable message."""
        fake.behaviour.faults.append(Fault(status=status))
        with pytest.raises(error_type, match=text.replace("(", r"\(").replace(")", r"\)")) as info:
            run_stream(backend_for(fake.base_url, LLM_MODEL="m"))
        assert info.value.status_code == status

    def test_server_detail_is_scrubbed_of_the_key(self, fake):
        """A 400 whose text repeats the key shows *** instead."""
        fake.behaviour.faults.append(Fault(status=400, message="bad key sk-very-secret"))
        with pytest.raises(BackendRequestError) as info:
            run_stream(backend_for(fake.base_url, LLM_MODEL="m", OPENAI_API_KEY="sk-very-secret"))
        assert "sk-very-secret" not in str(info.value)
        assert "***" in str(info.value)

    def test_refused_connection(self):
        """Nothing listening: a clear 'could not connect' naming the server, not a traceback."""
        port = free_port()
        with pytest.raises(
            BackendUnavailableError, match=f"Could not connect to the model server at http://127.0.0.1:{port}"
        ):
            run_stream(backend_for(f"http://127.0.0.1:{port}/v1", LLM_MODEL="m"))

    @pytest.mark.parametrize("model", ["m", None])
    def test_a_server_that_does_not_speak_http(self, model):
        """A reply that is not HTTP (aiohttp's ClientResponseError, which the SDK lets through untranslated) is a
        clear 'could not be read' for the chat and for model discovery alike, never a raw traceback."""
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()

            def answer() -> None:
                with contextlib.suppress(OSError):
                    while True:
                        conn, _ = server.accept()
                        with conn:
                            conn.recv(65536)
                            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

            threading.Thread(target=answer, daemon=True).start()
            port = server.getsockname()[1]
            env = {"LLM_MODEL": model} if model else {}
            with pytest.raises(BackendUnavailableError, match="could not be read") as info:
                run_stream(backend_for(f"http://127.0.0.1:{port}/v1", LLM_MAX_RETRIES="0", **env))
        assert f"http://127.0.0.1:{port}" in str(info.value)

    def test_read_timeout(self, fake):
        """A server that stalls past LLM_TIMEOUT gives a timeout that names the setting."""
        fake.behaviour.delay = 2
        with pytest.raises((BackendTimeoutError, StreamInterruptedError), match="LLM_TIMEOUT"):
            run_stream(backend_for(fake.base_url, LLM_MODEL="m", LLM_TIMEOUT="0.3"))

    def test_cut_stream_keeps_the_partial_reply(self, fake):
        """A connection dropped mid-reply raises StreamInterruptedError carrying what arrived."""
        fake.behaviour.faults.append(Fault(cut_after=2))
        with pytest.raises(StreamInterruptedError, match="connection to the model server .* was lost") as info:
            run_stream(backend_for(fake.base_url, LLM_MODEL="m"))
        assert info.value.partial == "You said:"

    def test_error_event_mid_stream_is_reported_not_shown(self, fake):
        """An SSE error object after some tokens ends the reply with the server's reason, never as reply text."""
        fake.behaviour.faults.append(Fault(error_after=2, message="GPU fell over"))
        with pytest.raises(StreamInterruptedError, match="reported an error: GPU fell over") as info:
            run_stream(backend_for(fake.base_url, LLM_MODEL="m"))
        assert info.value.partial == "You said:"

    def test_stream_ending_without_finish_reason_is_a_cut(self, fake):
        """A body that just stops, with no finish_reason, is reported as cut, not as a complete reply."""
        fake.behaviour.faults.append(Fault(end_after=3))
        with pytest.raises(StreamInterruptedError, match="closed the stream before the end") as info:
            run_stream(backend_for(fake.base_url, LLM_MODEL="m"))
        assert info.value.partial == "You said: hello"

    def test_next_request_works_after_a_failure(self, fake):
        """A failure leaves the shared client usable."""
        backend = backend_for(fake.base_url, LLM_MODEL="m")
        fake.behaviour.faults.append(Fault(status=500))

        async def go() -> str:
            with pytest.raises(BackendError):
                [piece async for piece in backend.stream(MESSAGES, PARAMS)]
            text = "".join([piece async for piece in backend.stream(MESSAGES, PARAMS)])
            await backend.aclose()
            return text

        assert asyncio.run(go()) == "You said: hello there"
