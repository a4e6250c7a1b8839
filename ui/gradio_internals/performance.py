"""Workarounds for Gradio's performance, each with what it works around, where it is reported, and when to delete it.

Applied by `ui.gradio_internals.apply`; checked against Gradio's own code by tests/test_ui_gradio_internals.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import inspect
import sys
import types
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import gradio as gr
import gradio.queueing
import gradio.state_holder

__all__ = [
    "SessionStateWithoutDeepLinks",
    "UnkeptConfigs",
    "cache_init_signatures",
    "keep_no_session_configs",
    "skip_missing_matplotlib",
    "wake_the_idle_queue_on_push",
]

# While the queue is idle, its loops wait for the next push, and look again after this long at the latest.
IDLE_WAIT_SECONDS = 1.0


def skip_missing_matplotlib() -> None:
    """Gradio tries `import matplotlib` around every streamed update (utils.MatplotlibBackendMananger) and ignores
    the ImportError; Python does not cache a failed import, so each update searched sys.path again. None in
    sys.modules is Python's own way to say "not importable": the import then fails at once. Only when matplotlib
    is absent, so a Plot would still work.

    Upstream: docs/upstream/gradio.md (searched gradio-app/gradio: not reported). Delete when MatplotlibBackendMananger
    imports matplotlib once (or only for Plot outputs).
    """
    if importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def cache_init_signatures(blocks: gr.Blocks) -> None:
    """Every component config Gradio builds calls `inspect.signature(cls.__init__)`: for each new session, for the
    components an event touches, and again on each prop update. `inspect.signature` returns a function's
    `__signature__` when it has one (PEP 362), so computing it once per class changes nothing but the time.

    Upstream: docs/upstream/gradio.md. Delete when BlocksConfig.config_for_block caches the signature.
    """
    for block in blocks.blocks.values():
        for cls in type(block).__mro__:
            init = vars(cls).get("__init__")
            if inspect.isfunction(init) and "__signature__" not in vars(init):
                init.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]


class UnkeptConfigs(MutableMapping[int, Any]):
    """A session's per-component configs (SessionState.config_values), never built and never kept.

    Gradio builds the config of every component for each new session, and then records in it every value an
    event sends or returns (`_update_value_in_config`); it reads them back only to make a deep link
    (`SessionState.components`, for `/gradio_api/deep_link`). This app turns deep links off
    (`ui.gradio_internals.requests`), so the configs were pure cost: the build, on the event loop, for each
    session, and the memory of every conversation a session ever sent or was sent, kept until the session is
    evicted. Here each component reads as present with an empty config (so nothing is built, and no value is
    recorded) and writes are dropped; iterating finds none (a deep link would carry no values).
    """

    def __getitem__(self, key: int) -> Any:
        return {}

    def __setitem__(self, key: int, value: Any) -> None:
        """Dropped: nothing reads a session's configs without deep links."""

    def __delitem__(self, key: int) -> None:
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int)

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _WithoutComponents:
    """What SessionState.__init__ reads of a Blocks, with no components, so that it builds no config."""

    def __init__(self, blocks: gr.Blocks) -> None:
        self.default_config = blocks.default_config
        self.blocks: dict[int, Any] = {}


class SessionStateWithoutDeepLinks(gradio.state_holder.SessionState):
    """Gradio's SessionState (its own __init__ runs), with `UnkeptConfigs` for the per-component configs.

    Upstream: docs/upstream/gradio.md. Delete when SessionState builds config_values only for deep links.
    """

    def __init__(self, blocks: gr.Blocks) -> None:
        super().__init__(_WithoutComponents(blocks))  # type: ignore[arg-type]
        self.config_values = UnkeptConfigs()  # type: ignore[assignment]

    def __setitem__(self, key: int, value: Any) -> None:
        """Gradio's own (a State's value with its time to live, or the component an update made), without the
        config it builds after it for `config_values`."""
        block = self.blocks_config.blocks.get(key)
        if isinstance(block, gr.State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
        else:
            self.blocks_config.blocks[key] = value

    def _update_config(self, key: int) -> None:
        """Nothing: after an event updates a component's properties (the chat box made busy, then ready), Gradio
        builds its whole config again, API info included (a JSON schema generated by pydantic, on the event
        loop), only to keep it in `config_values`."""


def keep_no_session_configs() -> None:
    """The sessions Gradio's StateHolder makes become SessionStateWithoutDeepLinks. (The few places that build a
    throwaway SessionState directly, such as MCP calls, keep Gradio's own.)"""
    gradio.state_holder.SessionState = SessionStateWithoutDeepLinks  # type: ignore[misc]


class _Wake:
    """The queue's wake-up: one asyncio.Event for the loop the queue runs on, made again when it runs on another
    (a Blocks closed and launched again runs its queue on a new loop; an Event belongs to the first that waits)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._event = loop, asyncio.Event()
        return self._event


class _IdlePoll(float):
    """A poll interval of Gradio's queue (the number it was), carrying the queue it belongs to."""

    queue: gradio.queueing.Queue
    wake: _Wake


def _is_idle(queue: gradio.queueing.Queue) -> bool:
    return len(queue) == 0 and all(job is None for job in queue.active_jobs)


async def _sleep(delay: float, result: Any = None) -> Any:
    """`asyncio.sleep` as gradio.queueing calls it; an idle queue's poll waits for its next push instead."""
    if isinstance(delay, _IdlePoll) and _is_idle(delay.queue):
        wake = delay.wake.event()
        # Idle now means every push so far has been handled: a wake-up left from one is stale.
        wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), IDLE_WAIT_SECONDS)
        return result
    return await asyncio.sleep(delay, result)


class _QueueingAsyncio(types.ModuleType):
    """The `asyncio` gradio.queueing sees: Python's own, but for `sleep`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    sleep = staticmethod(_sleep)


def wake_the_idle_queue_on_push(blocks: gr.Blocks) -> None:
    """Gradio's queue looks for work every millisecond (`Queue.start_processing`, `sleep_when_free`) and for
    progress every 10 ms, busy or idle: most of the CPU an idle Space uses, on the event loop. Here, while
    nothing is queued or running, both wait until the next push (`Queue.push`, the one way in) wakes them, or
    IDLE_WAIT_SECONDS; with work about, they poll as Gradio does.

    Upstream: docs/upstream/gradio.md, "The queue polls when idle". Delete when the idle queue waits for a push.
    """
    queue = blocks._queue
    wake = _Wake()
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        poll = _IdlePoll(getattr(queue, name))
        poll.queue, poll.wake = queue, wake
        setattr(queue, name, poll)
    push: Callable[..., Awaitable[Any]] = queue.push

    async def push_then_wake(*args: Any, **kwargs: Any) -> Any:
        try:
            return await push(*args, **kwargs)
        finally:
            wake.event().set()

    queue.push = push_then_wake  # type: ignore[method-assign]
    if not isinstance(gradio.queueing.asyncio, _QueueingAsyncio):
        gradio.queueing.asyncio = _QueueingAsyncio("asyncio")
