"""Any OpenAI-compatible server (OpenAI, the Hugging Face router, vLLM, TGI, Ollama, llama.cpp) as a backend."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpx2
import openai
from openai import AsyncOpenAI

from services.config import DEFAULT_HF_ROUTER_MODEL, DEFAULT_OPENAI_MODEL, Settings
from services.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimitError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    StreamInterruptedError,
)
from services.llm.alarm import Alarm
from services.llm.base import (
    BackendName,
    BackendStatus,
    ChatRequest,
    Delta,
    ToolCallPiece,
    Usage,
    estimate_prompt_tokens,
)
from services.redact import Scrubber, shorten

__all__ = ["OpenAIBackend", "OpenAIEndpoint", "endpoint_from_settings", "is_hf_host", "router_endpoint"]

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
# What can end a stream early: the transport, a chunk that cannot be read (ValueError, which
# _UnreadableChunk is), an error event from the server.
# The delta fields servers stream a reasoning model's thinking in: vLLM, Ollama's /v1 and OpenRouter;
# DeepSeek-style providers and older vLLM; and some others.
_THINKING_FIELDS = ("reasoning", "reasoning_content", "reasoning_text")
# Asks for a last chunk with the reply's token counts (OpenAI, Hugging Face's router, vLLM, TGI, llama.cpp,
# Ollama). Servers that validate strictly refuse the field with a 400 or 422 that names it: vLLM before 0.4.3
# ("extra_forbidden"), Azure OpenAI's older API versions ("Unrecognized request argument supplied"), some
# gateways ("Unknown parameter"). Those get the request again without it, once, and never again.
_USAGE_OPTION = {"include_usage": True}
# Token counts past this are no count a server could mean.
_MAX_COUNT = 2**31


# A model server's listing of its models: Hugging Face's router lists a few hundred, in well under a megabyte.
_MAX_LISTING_BYTES = 8 << 20
# Seconds a chat waits for start-up's listing (which models take images, call tools) before deciding without it.
LISTING_WAIT = 5.0
_MAX_LISTED = 5000
# Tool calls one chunk may carry (a round has a few): a chunk with more is not one a model sends.
_MAX_CALLS_A_CHUNK = 64


class _StreamErrorEvent(Exception):
    """An `error` object inside the SSE stream, as some servers send when they fail after the first token."""


class _UnreadableChunk(ValueError):
    """A chunk that is not the shape the chat completions protocol gives it."""


@dataclass(frozen=True)
class OpenAIEndpoint:
    """Where to send chat requests, with what key, for which models (empty: ask the server)."""

    base_url: str | None  # None: the openai package's default, api.openai.com
    api_key: str = field(repr=False)
    models: tuple[str, ...]
    # What to check when the server rejects the credentials, in words for the person who can fix it.
    key_hint: str


def is_hf_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return any(host == suffix[1:] or host.endswith(suffix) for suffix in _HF_HOST_SUFFIXES)


def _models(settings: Settings, default: str | None) -> tuple[str, ...]:
    if settings.llm_models:
        return settings.llm_models
    if settings.llm_model:
        return (settings.llm_model,)
    return (default,) if default else ()


def endpoint_from_settings(settings: Settings) -> OpenAIEndpoint | None:
    """The owner's OpenAI-compatible endpoint the settings describe, or None when nothing is configured.

    Rules, in order: OPENAI_API_KEY (with OPENAI_BASE_URL when set); OPENAI_BASE_URL alone (a local server
    needing no key, or a Hugging Face host with HF_TOKEN); HF_TOKEN alone, through the Hugging Face router.
    """
    if settings.openai_api_key:
        models = _models(settings, None if settings.openai_base_url else DEFAULT_OPENAI_MODEL)
        return OpenAIEndpoint(settings.openai_base_url, settings.openai_api_key, models, "the OPENAI_API_KEY secret")
    if settings.openai_base_url:
        if settings.hf_token and is_hf_host(settings.openai_base_url):
            return OpenAIEndpoint(
                settings.openai_base_url, settings.hf_token, _models(settings, None), "the HF_TOKEN secret"
            )
        return OpenAIEndpoint(
            settings.openai_base_url, _NO_KEY, _models(settings, None), "the server's key (OPENAI_API_KEY)"
        )
    if settings.hf_token:
        return OpenAIEndpoint(
            settings.hf_router_url, settings.hf_token, _models(settings, DEFAULT_HF_ROUTER_MODEL), "the HF_TOKEN secret"
        )
    return None


def router_endpoint(settings: Settings, owner: OpenAIEndpoint | None) -> OpenAIEndpoint:
    """The router that signed-in visitors chat through, on their own token (given per request)."""
    same_router = owner is not None and (owner.base_url or "").rstrip("/") == settings.hf_router_url
    models = settings.hf_router_models or (owner.models if same_router and owner and owner.models else ())
    return OpenAIEndpoint(
        settings.hf_router_url,
        _NO_KEY,  # never used: every request carries the visitor's token
        models or (DEFAULT_HF_ROUTER_MODEL,),
        "your Hugging Face sign-in (sign out and in again; the token needs the inference-api scope)",
    )


def _is_timeout(error: BaseException) -> bool:
    """Whether a failure really is a timeout: the SDK's aiohttp adapter reports every aiohttp connection error
    (refused, unknown host, reset) as httpx2.ConnectTimeout, so where aiohttp is the root cause, it decides."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, aiohttp.ClientError):
            return isinstance(cause, aiohttp.ServerTimeoutError)  # connect and socket-read timeouts
        cause = cause.__cause__
    return isinstance(error, (openai.APITimeoutError, httpx2.TimeoutException, TimeoutError, asyncio.TimeoutError))


def _error_text(error: object) -> str:
    """The message of an `error` value as servers send it: an object with `message`, or a plain string."""
    if isinstance(error, Mapping):
        message = error.get("message")
        return message if isinstance(message, str) else ""
    return error if isinstance(error, str) else ""


def _read_usage(value: object) -> Usage | None:
    """The `usage` of a chunk: None when absent (`null` on every chunk but the last, as OpenAI sends it) or not
    the shape the protocol gives it; counts are taken as reported, never guessed from other fields."""
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:  # bool is an int to Python, but no count
        return None
    if not (0 <= prompt < _MAX_COUNT and 0 <= completion < _MAX_COUNT):
        return None
    return Usage(prompt, completion)


def _read_tool_calls(value: object) -> tuple[ToolCallPiece, ...]:
    """The pieces of tool calls a delta carries (`delta.tool_calls`), each checked for its shape and bounded."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_CALLS_A_CHUNK:
        raise _UnreadableChunk("tool_calls is not a short list")
    pieces = []
    for item in value:
        if not isinstance(item, dict):
            raise _UnreadableChunk("a tool call is not an object")
        index, call_id, function = item.get("index", 0), item.get("id") or "", item.get("function") or {}
        if type(index) is not int or not 0 <= index < _MAX_CALLS_A_CHUNK or not isinstance(call_id, str):
            raise _UnreadableChunk("a tool call's index or id is not one")
        if not isinstance(function, dict):
            raise _UnreadableChunk("a tool call's function is not an object")
        name, arguments = function.get("name") or "", function.get("arguments") or ""
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise _UnreadableChunk("a tool call's name or arguments is not text")
        pieces.append(ToolCallPiece(index, call_id[:200], name[:200], arguments))
    return tuple(pieces)


def _read_chunk(data: str) -> tuple[str, str, str | None, Usage | None, tuple[ToolCallPiece, ...]]:
    """(answer text, thinking text, finish_reason, usage, tool call pieces) of one `data:` line; raises on any
    shape the protocol lacks.

    Guards as the openai SDK's own stream reader has them (`_streaming.py`): an `error` object is the server
    failing, never reply text; and every value is checked for its type before it is used.
    """
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise _UnreadableChunk("a chunk is not an object")
    if chunk.get("error"):
        raise _StreamErrorEvent(_error_text(chunk["error"]))
    usage = _read_usage(chunk.get("usage"))
    choices = chunk.get("choices") or []  # usage-only chunks have none
    if not isinstance(choices, list):
        raise _UnreadableChunk("choices is not a list")
    text = thinking = ""
    finish: str | None = None
    calls: tuple[ToolCallPiece, ...] = ()
    for choice in choices:
        if not isinstance(choice, dict):
            raise _UnreadableChunk("a choice is not an object")
        if choice.get("index", 0) != 0:
            continue  # n=1 is asked for; a server that sends more is ignored past the first
        reason = choice.get("finish_reason")
        if reason is not None:
            finish = str(reason)[:40]
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise _UnreadableChunk("delta is not an object")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise _UnreadableChunk("content is not text")
        text += content or ""
        calls += _read_tool_calls(delta.get("tool_calls"))
        for name in _THINKING_FIELDS:
            value = delta.get(name)
            if isinstance(value, str) and value:
                thinking += value
                break
    return text, thinking, finish, usage, calls


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The SDK's own default TLS settings (its CA bundle, SSL_CERT_FILE and SSL_CERT_DIR), made once per process:
    reading the CA bundle is most of the cost of a new client, and a context is safe to share."""
    return httpx2.create_ssl_context()


class OpenAIBackend:
    """Streams chat completions from one shared `AsyncOpenAI` client, so connections are reused.

    The client retries connection errors, 408, 409, 429 and 5xx with backoff (`LLM_MAX_RETRIES`); those all
    happen before the first token, so a retry can never repeat text the user has already seen.
    """

    name: BackendName = "openai"

    def __init__(
        self,
        endpoint: OpenAIEndpoint,
        *,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        scrubber: Scrubber,
        stream_interval: float = 0.04,
        concurrency_limit: int | None = None,
        vision_models: tuple[str, ...] = (),
        tool_models: tuple[str, ...] = (),
    ) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._scrubber = scrubber
        self._model = endpoint.models[0] if endpoint.models else None
        self._model_lock = asyncio.Lock()
        # Models that take images: those named (VISION_MODELS; "*" for all), and those the server's listing marks.
        self._vision = frozenset(vision_models)
        self._listed_vision: frozenset[str] = frozenset()
        # Models that call tools: those named (TOOL_MODELS), and those the listing says a provider serves with tools.
        self._tooling = frozenset(tool_models)
        self._listed_tooling: frozenset[str] = frozenset()
        self._listing: list[str] | None = None
        self._listing_begun = False
        # Whether to ask for usage (`stream_options`): until the server refuses the field.
        self._asks_usage = True
        self.stream_interval = stream_interval
        self.concurrency_limit = concurrency_limit
        self._client = AsyncOpenAI(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            max_retries=max_retries,
            # The SDK's aiohttp transport (the `openai[aiohttp]` extra): reading a stream through httpx2/httpcore
            # costs an anyio cancel scope and five generator layers per chunk, several times the CPU of
            # aiohttp's C parser. The event loop that reads the backend also serves every chat.
            http_client=openai.DefaultAioHttpClient(verify=_tls_context()),
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, endpoint: OpenAIEndpoint, scrubber: Scrubber, *, owner: bool = True
    ) -> OpenAIBackend:
        """The backend for `endpoint`: the owner's (VISION_MODELS names its models that take images), or the
        router that signed-in visitors chat through (`owner=False`: its own listing says)."""
        return cls(
            endpoint,
            timeout=settings.llm_timeout,
            connect_timeout=settings.llm_connect_timeout,
            max_retries=settings.llm_max_retries,
            scrubber=scrubber,
            stream_interval=settings.stream_interval_for("openai"),
            concurrency_limit=settings.chat_concurrency,
            vision_models=settings.vision_models if owner else (),
            tool_models=settings.tool_models if owner else (),
        )

    @property
    def models(self) -> tuple[str, ...]:
        """The models a caller may pick (the first the default); empty when the server's first is used."""
        return self._endpoint.models

    @property
    def server(self) -> str:
        """Scheme and host of the endpoint: safe to show, unlike a full URL that may carry credentials."""
        parts = urlsplit(self._endpoint.base_url or "https://api.openai.com/v1")
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def status(self) -> BackendStatus:
        return BackendStatus("openai", self._model or "the first model the server lists", self.server)

    async def aclose(self) -> None:
        """Close the shared HTTP client (its connections belong to the event loop that opened them)."""
        await self._client.close()

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        """The server knows its own context window and answers 400 when a request exceeds it."""
        return request, 0

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        """From characters: the server's tokenizer is not here (`services.llm.base.estimate_prompt_tokens`)."""
        return estimate_prompt_tokens(request.messages)

    def sees_images(self, model: str | None) -> bool:
        """Whether `model` (None: the default) takes images, as VISION_MODELS or the server's listing says."""
        return self._named(model, self._vision | self._listed_vision, every="*" in self._vision)

    def calls_tools(self, model: str | None) -> bool:
        """Whether `model` (None: the default) calls tools, as TOOL_MODELS or the server's listing says."""
        return self._named(model, self._tooling | self._listed_tooling, every="*" in self._tooling)

    def _named(self, model: str | None, names: frozenset[str], *, every: bool) -> bool:
        name = model or self._model
        if every:
            return True
        # A router id may name a provider or a policy after a colon: the model is the same.
        return name is not None and bool({name, name.split(":", 1)[0]} & names)

    async def start(self) -> None:
        """Read the server's listing once, before the first chat: the default model when none is configured, and
        which models take images or call tools. A later call waits for that reading to end (a chat that comes
        first must not decide without it) and reads nothing. A server that did not answer is asked again only
        when a chat needs the default model."""
        if self._listing_begun:
            # The first reading holds the lock until it ends; a server slow to list holds a chat only so long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTING_WAIT), self._model_lock:
                    return
            return
        self._listing_begun = True
        try:
            if self._model is None:
                await self._resolve_model()
            else:
                await self._read_listing()
        except BackendError as error:
            logger.info("The model server at %s did not list its models at start-up: %s", self.server, error)

    async def _read_listing(self) -> list[str]:
        """The ids `GET /models` lists, read once (bounded in bytes and entries: the body is the server's)."""
        if self._listing is not None:
            return self._listing
        async with self._model_lock:
            if self._listing is None:
                try:
                    # Streamed (the SDK leaves the body unread), so that its size is bounded as it is read.
                    response: httpx2.Response = await self._client.get("/models", cast_to=httpx2.Response, stream=True)
                    try:
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > _MAX_LISTING_BYTES:
                                raise ValueError("listing too large")
                    finally:
                        with contextlib.suppress(*_TRANSPORT_ERRORS):
                            await response.aclose()
                    listing = json.loads(body)
                except openai.OpenAIError as e:
                    raise self._translate(e, None) from e
                except _TRANSPORT_ERRORS as e:
                    raise self._transport_failure(e) from e
                except ValueError:
                    listing = None
                data = listing.get("data") if isinstance(listing, dict) else None
                entries = [m for m in (data if isinstance(data, list) else [])[:_MAX_LISTED] if isinstance(m, dict)]
                ids = [m["id"][:200] for m in entries if isinstance(m.get("id"), str) and m["id"]]
                self._listed_vision = frozenset(m["id"][:200] for m in entries if _takes_images(m))
                self._listed_tooling = frozenset(m["id"][:200] for m in entries if _calls_tools(m))
                self._listing = ids
        return self._listing

    async def _resolve_model(self) -> str:
        """With only OPENAI_BASE_URL set (Ollama, llama.cpp, vLLM), use the first model the server lists."""
        if self._model:
            return self._model
        ids = await self._read_listing()
        if not ids:
            self._listing = None  # asked again next time: the server may be starting
            raise BackendRequestError(
                f"The model server at {self.server} lists no models it serves (GET /models): set LLM_MODELS."
            )
        if self._model is None:
            self._model = ids[0]
            logger.info("No model configured: using %r, the first model listed by %s", self._model, self.server)
        return self._model

    async def _open(self, request: ChatRequest, model: str) -> httpx2.Response:
        """Send the request and return the response whose body streams; a status error is a `BackendError`.

        The SDK's own request path (auth, base URL, retries before the first byte, status errors as
        APIStatusError) through its documented raw call, `post(..., cast_to=httpx2.Response)`, with the SSE body
        read as lines. `chat.completions.create` costs twice the CPU a request: it walks the messages through
        its TypedDict transform (nothing to rename in chat messages) and, when streamed, builds a pydantic
        ChatCompletionChunk per token.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": list(request.messages),
            "temperature": request.params.temperature,
            "max_tokens": request.params.max_tokens,
            "stream": True,
        }
        if request.tools:
            body["tools"] = list(request.tools)
        options: Any = {"headers": {"Authorization": f"Bearer {request.api_key}"}} if request.api_key else {}
        while True:
            asked_usage = self._asks_usage
            if asked_usage:
                body["stream_options"] = _USAGE_OPTION
            try:
                return await self._client.post(
                    "/chat/completions", cast_to=httpx2.Response, body=body, options=options, stream=True
                )
            except openai.APIStatusError as e:
                if asked_usage and _refuses_usage_option(e):
                    logger.info("%s refuses stream_options: reply sizes are estimated from now on", self.server)
                    self._asks_usage = False
                    del body["stream_options"]
                    continue
                raise self._translate(e, model, request.api_key) from e
            except openai.OpenAIError as e:
                raise self._translate(e, model, request.api_key) from e
            except _TRANSPORT_ERRORS as e:
                raise self._transport_failure(e) from e

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        model = request.model or await self._resolve_model()
        response = await self._open(request, model)
        pieces = 0
        finished = False
        event = ""
        # A server may echo the key it was sent (a debugging proxy, a hostile one): masked before it is shown.
        answer, thought = self._scrubber.masker(request.api_key), self._scrubber.masker(request.api_key)
        # LLM_TIMEOUT counts silence between two pieces of the reply. The transport's own read timeout (the same
        # value) would restart at every byte, so a server sending only `: keep-alive` comments, empty lines or
        # empty chunks could hold a reply open for ever; this alarm restarts only when a piece arrives.
        loop = asyncio.get_running_loop()
        idle = Alarm(loop.time() + self._timeout, loop=loop)
        idle.enter()
        try:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    event = "" if not line else event  # a blank line ends an event
                    continue  # comments (": keep-alive") and other fields
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                if event == "error":
                    raise _StreamErrorEvent(_error_text(_loads_or_text(data)))
                text, thinking, finish, usage, calls = _read_chunk(data)
                if not (text or thinking or finish or usage or calls):
                    continue  # an empty chunk is no piece
                text, thinking = answer.feed(text), thought.feed(thinking)
                finished = finished or finish is not None
                if text or thinking or finish or usage or calls:
                    pieces += 1
                    idle.leave()
                    yield Delta(text, thinking, finish, usage, calls)
                    idle.enter()
                # From this piece, or from when our consumer gave the stream back: its time is not the server's.
                idle.restart(loop.time() + self._timeout)
        except asyncio.CancelledError:
            if not idle.expired():
                raise
            logger.warning("Stream from %s cut after %d pieces: silent past LLM_TIMEOUT", self.server, pieces)
            if (rest := Delta(answer.flush(), thought.flush())).text or rest.thinking:
                yield rest  # what did arrive stays shown
            raise StreamInterruptedError(f"The reply was cut off: {self._silent()}") from None
        except (*_TRANSPORT_ERRORS, _StreamErrorEvent, ValueError) as e:  # type: ignore[misc]
            logger.warning("Stream from %s cut after %d pieces: %s", self.server, pieces, type(e).__name__)
            if (rest := Delta(answer.flush(), thought.flush())).text or rest.thinking:
                yield rest  # what did arrive stays shown
            raise StreamInterruptedError(f"The reply was cut off: {self._cut_reason(e, request.api_key)}") from e
        finally:
            idle.leave()
            idle.close()
            # Closes the HTTP response even when our consumer stops early (the user pressed Stop), which is what
            # tells the server to stop generating. A connection that is already broken may fail to close: the
            # error that broke it is the one to report.
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await response.aclose()
        if (rest := Delta(answer.flush(), thought.flush())).text or rest.thinking:
            yield rest
        if not finished:
            # Every OpenAI-compatible server ends a reply with a finish_reason; a body that just stops was cut.
            logger.warning("Stream from %s ended after %d pieces without a finish_reason", self.server, pieces)
            raise StreamInterruptedError(
                f"The reply was cut off: the model server at {self.server} closed the stream before the end."
            )

    def _detail(self, text: str, api_key: str | None) -> str:
        """An upstream explanation, fit to show: every secret masked (the request's own token too), one short line.

        Masked before it is shortened, so that a cut cannot leave half a secret unmasked; bounded before that,
        so that a huge body costs nothing.
        """
        return shorten(self._scrubber.scrub(text[:4000], api_key)) or "no details"

    def _silent(self) -> str:
        return (
            f"the model server at {self.server} sent nothing of the reply for {self._timeout:g} s (LLM_TIMEOUT). "
            "Try again, or raise LLM_TIMEOUT."
        )

    def _cut_reason(self, error: Exception, api_key: str | None) -> str:
        if _is_timeout(error):
            return self._silent()
        if isinstance(error, _StreamErrorEvent):
            return f"the model server at {self.server} reported an error: {self._detail(str(error), api_key)}"
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

    def _translate(self, error: openai.OpenAIError, model: str | None, api_key: str | None = None) -> BackendError:
        """The one place where an `openai` failure becomes a `BackendError` a person can act on."""
        server = self.server
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
                    f"The model server at {server} rejected the credentials (HTTP {status}). Check "
                    f"{self._endpoint.key_hint}.",
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
                    f"The model server at {server} does not serve model {shorten(str(model), 100)!r} (HTTP 404). "
                    "Pick another model, or set LLM_MODELS to models it serves.",
                    status_code=status,
                )
            detail = self._detail(_status_detail(error), api_key)
            return BackendRequestError(
                f"The model server at {server} refused the request (HTTP {status}): {detail}", status_code=status
            )
        return BackendError(f"The model server at {server} sent a reply that could not be read.")


def _takes_images(entry: dict[str, Any]) -> bool:
    """Whether a `/models` entry marks its model as reading images (`architecture.input_modalities`, as Hugging
    Face's router lists it)."""
    architecture = entry.get("architecture")
    modalities = architecture.get("input_modalities") if isinstance(architecture, dict) else None
    return isinstance(entry.get("id"), str) and isinstance(modalities, list) and "image" in modalities


def _calls_tools(entry: dict[str, Any]) -> bool:
    """Whether a `/models` entry marks its model as calling tools (a provider's `supports_tools`, as Hugging Face's
    router lists them)."""
    providers = entry.get("providers")
    return (
        isinstance(entry.get("id"), str)
        and isinstance(providers, list)
        and any(isinstance(p, dict) and p.get("supports_tools") is True for p in providers[:100])
    )


def _status_detail(error: openai.APIStatusError) -> str:
    """The reason a server gave: OpenAI's `{"error": {"message": ...}}` (the SDK hands over the inner object),
    TGI's `{"error": "..."}`, or a plain-text body."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, str):
            return message
    if isinstance(body, str):
        return body
    return ""  # the SDK's own message is "Error code: 400 - <the body>", nothing more to say


def _refuses_usage_option(error: openai.APIStatusError) -> bool:
    """Whether a refusal names `stream_options`: a strict server that does not know the field (see
    `_USAGE_OPTION`). Its whole body is searched, as servers put the name in a message, a `param` or a `loc`."""
    return error.status_code in (400, 422) and "stream_options" in error.message[:10_000]


def _loads_or_text(data: str) -> object:
    try:
        value = json.loads(data)
    except ValueError:
        return data
    return value.get("error", value) if isinstance(value, dict) else value
