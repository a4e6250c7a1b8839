"""Any OpenAI-compatible server (OpenAI, the Hugging Face router, vLLM, TGI, Ollama, llama.cpp) as a backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpx2
import openai
from openai import AsyncOpenAI

from services.config import DEFAULT_HF_ROUTER_MODEL, DEFAULT_OPENAI_MODEL, HF_ROUTER_URL, Settings
from services.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimitError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    StreamInterruptedError,
)
from services.llm.base import GenerationParams, Message

__all__ = ["OpenAIBackend", "OpenAIEndpoint", "endpoint_from_settings"]

logger = logging.getLogger(__name__)

# Hosts that may receive HF_TOKEN when it is used as the key of a custom OPENAI_BASE_URL. Any other host
# (a third-party server, a typo) must never be sent the owner's Hugging Face token.
_HF_HOST_SUFFIXES = (".huggingface.co", ".hf.space", ".huggingface.cloud")
# Servers that need no key (Ollama, llama.cpp, vLLM without --api-key) still need a non-empty string here,
# because the `openai` client refuses to start without one.
_NO_KEY = "not-needed"
# What reading a streamed body can raise: the transport errors of httpx2, the openai package's HTTP client (the
# same tuple as openai._httpx2.request_exceptions(), whose module is private), and those of aiohttp, its
# transport here, that the SDK's adapter does not map to httpx2 errors.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.RequestError,
    ssl.SSLError,
    anyio.EndOfStream,
    aiohttp.ClientError,
    asyncio.TimeoutError,
)


class _StreamErrorEvent(Exception):
    """An `error` object inside the SSE stream, as some servers send when they fail after the first token."""


@dataclass(frozen=True)
class OpenAIEndpoint:
    """Where to send chat requests, with what key, for which model (None: ask the server)."""

    base_url: str | None  # None: the openai package's default, api.openai.com
    api_key: str = field(repr=False)
    model: str | None
    key_source: str  # which variable the key came from, for messages: "OPENAI_API_KEY", "HF_TOKEN", or ""


def _is_timeout(error: BaseException) -> bool:
    """Whether a failure really is a timeout: the SDK's aiohttp adapter reports every aiohttp connection error
    (refused, unknown host, reset) as httpx2.ConnectTimeout, so where aiohttp is the root cause, it decides."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, aiohttp.ClientError):
            return isinstance(cause, aiohttp.ServerTimeoutError)  # connect and socket-read timeouts
        cause = cause.__cause__
    return isinstance(error, (openai.APITimeoutError, httpx2.TimeoutException, TimeoutError, asyncio.TimeoutError))


def _is_hf_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return any(host == suffix[1:] or host.endswith(suffix) for suffix in _HF_HOST_SUFFIXES)


def endpoint_from_settings(settings: Settings) -> OpenAIEndpoint | None:
    """The OpenAI-compatible endpoint the settings describe, or None when nothing is configured.

    Rules, in order: OPENAI_API_KEY (with OPENAI_BASE_URL when set); OPENAI_BASE_URL alone (a local server
    needing no key, or a Hugging Face host with HF_TOKEN); HF_TOKEN alone, through the Hugging Face router.
    """
    if settings.openai_api_key:
        model = settings.llm_model or (None if settings.openai_base_url else DEFAULT_OPENAI_MODEL)
        return OpenAIEndpoint(settings.openai_base_url, settings.openai_api_key, model, "OPENAI_API_KEY")
    if settings.openai_base_url:
        if settings.hf_token and _is_hf_host(settings.openai_base_url):
            return OpenAIEndpoint(settings.openai_base_url, settings.hf_token, settings.llm_model, "HF_TOKEN")
        return OpenAIEndpoint(settings.openai_base_url, _NO_KEY, settings.llm_model, "")
    if settings.hf_token:
        return OpenAIEndpoint(
            HF_ROUTER_URL, settings.hf_token, settings.llm_model or DEFAULT_HF_ROUTER_MODEL, "HF_TOKEN"
        )
    return None


class OpenAIBackend:
    """Streams chat completions from one shared `AsyncOpenAI` client, so connections are reused.

    The client retries connection errors, 408, 409, 429 and 5xx with backoff (`LLM_MAX_RETRIES`); those all
    happen before the first token, so a retry can never repeat text the user has already seen.
    """

    name = "openai"

    def __init__(self, endpoint: OpenAIEndpoint, *, timeout: float, connect_timeout: float, max_retries: int) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._model = endpoint.model
        self._model_lock = asyncio.Lock()
        self._client = AsyncOpenAI(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            max_retries=max_retries,
            # The SDK's aiohttp transport (the `openai[aiohttp]` extra): reading a stream through httpx2/httpcore
            # costs an anyio cancel scope and five generator layers per chunk, 2.5x the CPU of aiohttp's C parser
            # (64 streams, this machine). The event loop that reads the backend also serves every chat.
            http_client=openai.DefaultAioHttpClient(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend | None:
        endpoint = endpoint_from_settings(settings)
        if endpoint is None:
            return None
        return cls(
            endpoint,
            timeout=settings.llm_timeout,
            connect_timeout=settings.llm_connect_timeout,
            max_retries=settings.llm_max_retries,
        )

    @property
    def model(self) -> str:
        return self._model or "the server's first model"

    @property
    def server(self) -> str:
        """Scheme and host of the endpoint: safe to show, unlike a full URL that may carry credentials."""
        parts = urlsplit(self._endpoint.base_url or "https://api.openai.com/v1")
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    async def aclose(self) -> None:
        """Close the shared HTTP client (its connections belong to the event loop that opened them)."""
        await self._client.close()

    def fit(self, messages: Sequence[Message], params: GenerationParams) -> tuple[list[Message], int]:
        """The server knows its own context window and answers 400 when a request exceeds it."""
        return list(messages), 0

    async def _resolve_model(self) -> str:
        """With only OPENAI_BASE_URL set (Ollama, llama.cpp, vLLM), use the first model the server lists."""
        if self._model:
            return self._model
        async with self._model_lock:
            if self._model is None:
                try:
                    page = await self._client.models.list()
                except openai.OpenAIError as e:
                    raise self._translate(e) from e
                except _TRANSPORT_ERRORS as e:
                    raise self._transport_failure(e) from e
                ids = [m.id for m in page.data]
                if not ids:
                    raise BackendRequestError(f"The model server at {self.server} lists no models: set LLM_MODEL.")
                self._model = ids[0]
                logger.info("LLM_MODEL not set: using %r, the first model listed by %s", self._model, self.server)
        return self._model

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        model = await self._resolve_model()
        # The SDK's own request path (auth, base URL, retries before the first byte, status errors as
        # APIStatusError) through its documented raw call, `post(..., cast_to=httpx2.Response)`, with the SSE body
        # read as lines. `chat.completions.create` costs twice the CPU a request: it walks the messages through
        # its TypedDict transform (nothing to rename in chat messages) and, when streamed, builds a pydantic
        # ChatCompletionChunk per token, which was a third of the app's CPU (bench/chat_stream.py, py-spy).
        body = {
            "model": model,
            "messages": list(messages),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "stream": True,
        }
        try:
            response = await self._client.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True)
        except openai.OpenAIError as e:
            raise self._translate(e) from e
        except _TRANSPORT_ERRORS as e:
            raise self._transport_failure(e) from e
        received: list[str] = []
        finished = False
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": keep-alive"), "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    # An error event mid-stream (the server gave up): report it, never show it as reply text.
                    raise _StreamErrorEvent(str(chunk["error"].get("message") or chunk["error"])[:300])
                for choice in chunk.get("choices") or ():  # usage-only chunks have none
                    finished = finished or choice.get("finish_reason") is not None
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        received.append(piece)
                        yield piece
        except (*_TRANSPORT_ERRORS, _StreamErrorEvent, ValueError) as e:
            logger.warning("Stream from %s cut after %d pieces: %s", self.server, len(received), type(e).__name__)
            raise StreamInterruptedError(
                f"The reply was cut off: {self._cut_reason(e)}", partial="".join(received)
            ) from e
        finally:
            # Closes the HTTP response even when our consumer stops early (the user pressed Stop), which is what
            # tells the server to stop generating. A connection that is already broken may fail to close: the
            # error that broke it is the one to report.
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await response.aclose()
        if not finished:
            # Every OpenAI-compatible server ends a reply with a finish_reason; a body that just stops was cut.
            logger.warning("Stream from %s ended after %d pieces without a finish_reason", self.server, len(received))
            raise StreamInterruptedError(
                f"The reply was cut off: the model server at {self.server} closed the stream before the end.",
                partial="".join(received),
            )

    def _cut_reason(self, error: Exception) -> str:
        if _is_timeout(error):
            return f"the model server at {self.server} sent nothing for {self._timeout:g} s (LLM_TIMEOUT)."
        if isinstance(error, _StreamErrorEvent):
            return f"the model server at {self.server} reported an error: {error}"
        if isinstance(error, ValueError):
            return f"the model server at {self.server} sent a reply that could not be read."
        return f"the connection to the model server at {self.server} was lost. Try again."

    def _timed_out(self) -> BackendTimeoutError:
        return BackendTimeoutError(
            f"The model server at {self.server} did not answer within {self._timeout:g} s. "
            "Try again, or raise LLM_TIMEOUT."
        )

    def _transport_failure(self, error: Exception) -> BackendError:
        """A failure the SDK lets through untranslated: the aiohttp adapter maps only some aiohttp errors to
        httpx2 ones (a malformed response, for one, arrives as aiohttp.ClientResponseError)."""
        # The type only: aiohttp's messages quote the full URL, which may carry credentials.
        logger.warning("Request to %s failed: %s", self.server, type(error).__name__)
        if _is_timeout(error):
            return self._timed_out()
        return BackendUnavailableError(
            f"The model server at {self.server} sent a reply that could not be read, or closed the connection. "
            "Check that OPENAI_BASE_URL points at an OpenAI-compatible server."
        )

    def _translate(self, error: openai.OpenAIError) -> BackendError:
        """The one place where an `openai` failure becomes a `BackendError` a person can act on."""
        server = self.server
        key_hint = self._endpoint.key_source or "OPENAI_API_KEY (or HF_TOKEN)"
        if isinstance(error, openai.APITimeoutError) and _is_timeout(error):
            return self._timed_out()
        if isinstance(error, openai.APIConnectionError):
            return BackendUnavailableError(
                f"Could not connect to the model server at {server}. Check that it is running and that "
                "OPENAI_BASE_URL points at it."
            )
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            if status in (401, 403):
                return BackendAuthError(
                    f"The model server at {server} rejected the credentials (HTTP {status}). Check the {key_hint} "
                    "secret.",
                    status_code=status,
                )
            if status == 429:
                return BackendRateLimitError(
                    f"The model server at {server} is rate-limiting requests (HTTP 429). Wait a moment and try again.",
                    status_code=status,
                )
            if status >= 500:
                return BackendUnavailableError(
                    f"The model server at {server} failed (HTTP {status}). Try again in a moment.",
                    status_code=status,
                )
            if status == 404:
                return BackendRequestError(
                    f"The model server at {server} does not serve model {self._model!r} (HTTP 404). "
                    "Set LLM_MODEL to a model it serves.",
                    status_code=status,
                )
            return BackendRequestError(
                f"The model server at {server} refused the request (HTTP {status}): {self._detail(error)}",
                status_code=status,
            )
        return BackendError(f"The model server at {server} sent a reply that could not be read.")

    def _detail(self, error: openai.APIStatusError) -> str:
        """The server's own explanation of a 4xx (e.g. 'context length exceeded'), scrubbed and shortened."""
        body = error.body
        message = body.get("message") if isinstance(body, dict) else None
        text = str(message or error.message or "no details")
        secret = self._endpoint.api_key
        if secret and secret != _NO_KEY:
            text = text.replace(secret, "***")
        return text[:300]
