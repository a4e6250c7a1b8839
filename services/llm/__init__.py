"""Chooses the chat backends from the settings: an OpenAI-compatible server, or the local model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from services.config import Settings
from services.errors import BackendNotConfiguredError, ConfigError
from services.llm.base import (
    BackendName,
    BackendStatus,
    ChatBackend,
    ChatRequest,
    Delta,
    GenerationParams,
    Message,
    Usage,
    estimate_prompt_tokens,
)
from services.llm.openai_backend import OpenAIBackend, endpoint_from_settings
from services.redact import Scrubber

__all__ = [
    "BackendName",
    "BackendStatus",
    "ChatBackend",
    "ChatRequest",
    "Delta",
    "GenerationParams",
    "Message",
    "UnavailableBackend",
    "Usage",
    "create_backend",
    "create_local_backend",
]

logger = logging.getLogger(__name__)

_WHAT_TO_SET = (
    "Set OPENAI_API_KEY (OpenAI), HF_TOKEN (Hugging Face's router), or OPENAI_BASE_URL (any OpenAI-compatible "
    "server, such as Ollama or vLLM): on a Space as a secret or variable in its Settings, on your machine in the "
    "environment; then restart."
)


class UnavailableBackend:
    """Stands in when no backend can run, so the rest of the Space works and the chat says what to set."""

    name: BackendName = "none"
    stream_interval = 0.0
    concurrency_limit: int | None = None

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def models(self) -> tuple[str, ...]:
        return ()

    def status(self) -> BackendStatus:
        return BackendStatus("none", "not configured", "", problem=self.reason)

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        return request, 0

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return estimate_prompt_tokens(request.messages)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        raise BackendNotConfiguredError(self.reason)
        yield Delta()  # pragma: no cover - makes this an async generator like the real backends

    def calls_tools(self, model: str | None) -> bool:
        return False

    def sees_images(self, model: str | None) -> bool:
        return False

    async def start(self) -> None:
        """Nothing to learn."""

    async def aclose(self) -> None:
        """Nothing to close."""


def create_local_backend(settings: Settings) -> ChatBackend:
    """The transformers backend, loaded now; `ConfigError` naming LOCAL_MODEL when it cannot be used here."""
    try:
        from services.llm.local_backend import LocalBackend
    except ImportError as e:
        raise ConfigError(
            "LOCAL_MODEL", f"cannot run here: {e} (pip install -r requirements.txt installs transformers and torch)."
        ) from None
    return LocalBackend.from_settings(settings)


def create_backend(settings: Settings, scrubber: Scrubber) -> ChatBackend:
    """The owner's backend. `LLM_BACKEND=auto` takes the OpenAI-compatible server when one is configured, else the
    local model.

    An explicit choice that cannot be honoured is a `ConfigError` (start-up stops); `auto` with nothing usable
    gives an `UnavailableBackend` whose chat error says what was tried, why it failed, and what to set.
    """
    if settings.llm_backend in ("auto", "openai"):
        endpoint = endpoint_from_settings(settings)
        if endpoint is not None:
            return OpenAIBackend.from_settings(settings, endpoint, scrubber)
        if settings.llm_backend == "openai":
            raise ConfigError("LLM_BACKEND", f"is 'openai' but no endpoint is configured. {_WHAT_TO_SET}")
    if settings.llm_backend == "local":
        return create_local_backend(settings)
    # auto, with no server configured: the local model, or, when it cannot load here (no weights, no network to
    # the Hub, no torch), a stand-in so that the tools still work and the chat says what to set.
    try:
        return create_local_backend(settings)
    except ConfigError as error:
        logger.warning("No model server is configured, and the local model could not load: %s", error)
        return UnavailableBackend(
            f"No model server is configured, and the local model could not load ({str(error).rstrip('.')}). "
            f"{_WHAT_TO_SET}"
        )
