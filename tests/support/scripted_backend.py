"""A backend in memory, for tests of the page's logic in-process: it plays back the pieces it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from services.errors import ServiceError
from services.llm.base import BackendName, BackendStatus, ChatRequest, Delta, estimate_prompt_tokens

__all__ = ["ScriptedBackend"]


@dataclass
class ScriptedBackend:
    """Streams `script` (its Deltas, `delay` seconds apart), then raises `fail` if set. `requests` records every
    request; `closed` counts streams closed before their end (Stop)."""

    script: Sequence[Delta] = (Delta("Hello"), Delta(" there"), Delta(finish_reason="stop"))
    delay: float = 0.0
    fail: ServiceError | None = None
    models: tuple[str, ...] = ("scripted",)
    requests: list[ChatRequest] = field(default_factory=list)
    closed: int = 0
    name: BackendName = "openai"
    stream_interval: float = 0.0
    concurrency_limit: int | None = None
    vision: bool = False
    tooling: bool = False
    started: int = 0

    def status(self) -> BackendStatus:
        return BackendStatus("openai", self.models[0], "http://scripted")

    def fit(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        return request, 0

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return estimate_prompt_tokens(request.messages)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        finished = False
        try:
            for delta in self.script:
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield delta
            if self.fail is not None:
                raise self.fail
            finished = True
        finally:
            if not finished:
                self.closed += 1

    def calls_tools(self, model: str | None) -> bool:
        return self.tooling

    def sees_images(self, model: str | None) -> bool:
        return self.vision

    async def start(self) -> None:
        self.started += 1

    async def aclose(self) -> None:
        """Nothing to close."""
