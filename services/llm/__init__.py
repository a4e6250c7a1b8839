"""Chooses the chat backend from the settings: an OpenAI-compatible server, or the local model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from services.config import Settings
from services.errors import BackendNotConfiguredError, ConfigError
from services.llm.base import ChatBackend, GenerationParams, Message
from services.llm.openai_backend import OpenAIBackend

__all__ = ["ChatBackend", "GenerationParams", "Message", "UnavailableBackend", "create_backend"]

logger = logging.getLogger(__name__)

_WHAT_TO_SET = (
    "Set OPENAI_API_KEY (OpenAI), HF_TOKEN (Hugging Face's router), or OPENAI_BASE_URL (any OpenAI-compatible "
    "server, such as Ollama or vLLM) as a secret or variable of the Space, then restart it."
)


class UnavailableBackend:
    """Stands in when no backend can run, so the rest of the Space works and the chat says what to set."""

    name = "none"
    model = "not configured"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def fit(self, messages: Sequence[Message], params: GenerationParams) -> tuple[list[Message], int]:
        return list(messages), 0

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str]:
        raise BackendNotConfiguredError(self.reason)
        yield ""  # pragma: no cover - makes this an async generator like the real backends


def _local_backend(settings: Settings) -> ChatBackend | None:
    """The transformers backend, or None when its packages are not installed."""
    try:
        from services.llm.local_backend import LocalBackend
    except ImportError as e:
        logger.warning("Local backend unavailable: %s", e)
        return None
    return LocalBackend.from_settings(settings)


def create_backend(settings: Settings) -> ChatBackend:
    """`LLM_BACKEND=auto` takes the OpenAI-compatible server when one is configured, else the local model.

    An explicit choice that cannot be honoured is a `ConfigError` (start-up stops); `auto` with nothing
    usable gives an `UnavailableBackend` whose chat error says what to set.
    """
    if settings.llm_backend in ("auto", "openai"):
        remote = OpenAIBackend.from_settings(settings)
        if remote is not None:
            return remote
        if settings.llm_backend == "openai":
            raise ConfigError("LLM_BACKEND", f"is 'openai' but no endpoint is configured. {_WHAT_TO_SET}")
    if settings.llm_backend == "local":
        local = _local_backend(settings)
        if local is None:
            raise ConfigError(
                "LLM_BACKEND",
                "is 'local' but transformers and torch are not installed (pip install -r requirements.txt).",
            )
        return local
    # auto, with no server configured: the local model, or, when it cannot load here (no weights, no internet,
    # no torch), a stand-in so the tools still work and the chat says what to set.
    try:
        local = _local_backend(settings)
    except ConfigError as error:
        logger.warning("No model server configured, and the local model could not load: %s", error)
        return UnavailableBackend(f"No model server is configured and the local model could not load. {_WHAT_TO_SET}")
    if local is None:
        return UnavailableBackend(f"No language model is configured. {_WHAT_TO_SET}")
    return local
