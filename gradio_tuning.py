"""Work that Gradio 6.31 repeats on the streaming path, done once instead. Each was found with py-spy on the app
under 64 concurrent chats (bench/chat_stream.py) and leaves behaviour exactly as Gradio defines it, which
tests/test_gradio_tuning.py checks against Gradio's own code.

They are tied to the pinned gradio (requirements.txt): on an upgrade, run the tests and the bench again, and drop
any a new release has made needless.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from copy import copy
from typing import Any

import gradio as gr
import gradio.state_holder
from gradio.blocks import BlocksConfig

__all__ = ["LazySessionState", "apply", "cache_init_signatures", "skip_missing_matplotlib"]


def skip_missing_matplotlib() -> None:
    """Gradio tries `import matplotlib` around every streamed update (utils.MatplotlibBackendMananger) and ignores
    the ImportError. Python does not cache a failed import, so without matplotlib each update searched sys.path
    again: ~40% of the server's CPU while streaming. None in sys.modules is Python's own way to say "not
    importable": the import then fails at once. Only when matplotlib is absent, so a Plot would still work."""
    if importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def cache_init_signatures(blocks: gr.Blocks) -> None:
    """Every component config Gradio builds calls `inspect.signature(cls.__init__)`: for each new session, for
    every component of the app, and again on each prop update. `inspect.signature` returns a function's
    `__signature__` when it has one (PEP 362), so computing it once per class changes nothing but the time
    (a new session's configs: 2.4 ms before, 1.0 ms after, in-process)."""
    for block in blocks.blocks.values():
        for cls in type(block).__mro__:
            init = vars(cls).get("__init__")
            if inspect.isfunction(init) and "__signature__" not in vars(init):
                init.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]


class _LazyConfigs(dict[int, Any]):
    """A session's per-component configs (SessionState.config_values), each built the first time it is read.

    Gradio reads them only to record a component's latest value (for an event's inputs and outputs) and, for
    every component at once, for a deep link; so most are never needed. Reads, writes and membership build at
    most the one config concerned; anything that sees the whole dict (iteration, copies, comparisons, the other
    dict methods) first builds the rest, in the components' order, as the eager dict has them.
    """

    def __init__(self, build: Callable[[int], Any], keys: Iterable[int]) -> None:
        super().__init__()
        self._build = build
        self._order = tuple(keys)
        self._pending = set(self._order)

    def _load(self, key: int) -> Any:
        value = self._build(key)  # a build that fails leaves the key to be built next time
        self._pending.discard(key)
        dict.__setitem__(self, key, value)
        return value

    def _load_all(self) -> None:
        if not self._pending:
            return
        for key in self._order:
            if key in self._pending:
                self._load(key)
        ordered = {key: dict.__getitem__(self, key) for key in self._order if dict.__contains__(self, key)}
        later = {key: value for key, value in dict.items(self) if key not in ordered}
        dict.clear(self)
        dict.update(self, ordered)
        dict.update(self, later)

    def __missing__(self, key: int) -> Any:
        if key in self._pending:
            return self._load(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._pending

    def __setitem__(self, key: int, value: Any) -> None:
        self._pending.discard(key)
        dict.__setitem__(self, key, value)

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._pending)


def _after_loading_all(name: str) -> Callable[..., Any]:
    method = getattr(dict, name)

    def loaded(self: _LazyConfigs, *args: Any, **kwargs: Any) -> Any:
        self._load_all()
        return method(self, *args, **kwargs)

    loaded.__name__ = name
    return loaded


for _name in (
    "__iter__", "__reversed__", "__eq__", "__ne__", "__repr__", "__or__", "__ior__", "__delitem__",
    "keys", "values", "items", "copy", "pop", "popitem", "setdefault", "update", "clear",
):  # fmt: skip
    setattr(_LazyConfigs, _name, _after_loading_all(_name))


class LazySessionState(gradio.state_holder.SessionState):
    """Gradio's SessionState, with its per-component configs built on first use instead of all at its start.

    A session starts on a visitor's first event (and on every `gradio_client.Client`'s first call). Building
    the config of every component of the app then, one after another on the event loop, was most of the cost
    of joining the queue: with 64 visitors arriving at once the last waited for all 64 (bench/chat_stream.py:
    1.27x -> 1.12x the model server's time at 64 streams, +343 -> +299 ms to the first token). The rest is
    Gradio's own `__init__` (tests/test_gradio_tuning.py compares the two).
    """

    def __init__(self, blocks: gr.Blocks) -> None:
        self.blocks_config = copy(blocks.default_config)
        # The components as they are now, as Gradio's eager build sees them. (The builder holds these, not the
        # session: a session that refers to itself would wait for the cyclic garbage collector to be freed.)
        at_start = {key: block for key, block in self.blocks_config.blocks.items() if key in blocks.blocks}
        self.config_values = _LazyConfigs(lambda key: BlocksConfig.config_for_block(key, [], at_start[key]), at_start)
        self.state_data: dict[int, Any] = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


def build_session_configs_lazily() -> None:
    """The sessions Gradio's StateHolder makes for visitors and API clients become LazySessionState. (The few
    places that build a throwaway SessionState directly, such as MCP calls, keep Gradio's own.)"""
    gradio.state_holder.SessionState = LazySessionState  # type: ignore[misc]


def apply(blocks: gr.Blocks) -> None:
    """All of the above. They act on Gradio itself, so on every Blocks in this process (`from app import demo`
    in a notebook included), and change nothing of what Gradio does, only how often it does it."""
    skip_missing_matplotlib()
    cache_init_signatures(blocks)
    build_session_configs_lazily()
