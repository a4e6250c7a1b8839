"""Workarounds tied to the pinned Gradio (requirements.txt), all in one place, applied by `build_demo`.

Each says what it works around, where that is reported upstream, and when to delete it. They are checked against
Gradio's own code by tests/test_ui_gradio_patches.py. On any other Gradio version they are skipped with a warning:
re-run the tests and the bench, then move the pin or delete what a new release has made needless.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

import gradio as gr
import gradio.queueing
import gradio.state_holder

__all__ = [
    "PATCHED_VERSION",
    "SessionStateWithoutDeepLinks",
    "UnkeptConfigs",
    "apply",
    "called_through_mcp",
    "cancel_jobs_whose_client_left",
    "keep_out_of_mcp",
]

logger = logging.getLogger(__name__)

PATCHED_VERSION = "6.31.0"
F = TypeVar("F", bound=Callable[..., Any])


def _version_ok(what: str) -> bool:
    if gr.__version__ == PATCHED_VERSION:
        return True
    warnings.warn(
        f"ui/gradio_patches.py was written for gradio {PATCHED_VERSION}, not {gr.__version__}: {what} skipped.",
        stacklevel=3,
    )
    return False


def skip_missing_matplotlib() -> None:
    """Gradio tries `import matplotlib` around every streamed update (utils.MatplotlibBackendMananger) and ignores
    the ImportError; Python does not cache a failed import, so each update searched sys.path again. None in
    sys.modules is Python's own way to say "not importable": the import then fails at once. Only when matplotlib
    is absent, so a Plot would still work.

    Upstream: not reported as of 2026-12-01 (searched gradio-app/gradio). Delete when MatplotlibBackendMananger
    imports matplotlib once (or only for Plot outputs).
    """
    if importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def cache_init_signatures(blocks: gr.Blocks) -> None:
    """Every component config Gradio builds calls `inspect.signature(cls.__init__)`: for each new session, for the
    components an event touches, and again on each prop update. `inspect.signature` returns a function's
    `__signature__` when it has one (PEP 362), so computing it once per class changes nothing but the time.

    Upstream: not reported as of 2026-12-01. Delete when BlocksConfig.config_for_block caches the signature.
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
    (`SessionState.components`, for `/gradio_api/deep_link`). This app turns deep links off (`ui.middleware`),
    so the configs were pure cost: the build, on the event loop, for each session, and the memory of every
    conversation a session ever sent or was sent, kept until the session is evicted. Here each component reads
    as present with an empty config (so nothing is built, and no value is recorded) and writes are dropped;
    iterating finds none (a deep link would carry no values).
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

    Upstream: not reported as of 2026-12-01. Delete when SessionState builds config_values only for deep links.
    """

    def __init__(self, blocks: gr.Blocks) -> None:
        super().__init__(_WithoutComponents(blocks))  # type: ignore[arg-type]
        self.config_values = UnkeptConfigs()  # type: ignore[assignment]


def keep_no_session_configs() -> None:
    """The sessions Gradio's StateHolder makes become SessionStateWithoutDeepLinks. (The few places that build a
    throwaway SessionState directly, such as MCP calls, keep Gradio's own.)"""
    gradio.state_holder.SessionState = SessionStateWithoutDeepLinks  # type: ignore[misc]


def keep_out_of_mcp(fn: F) -> F:
    """Keep a documented API endpoint out of the MCP server's tools.

    Gradio 6.31 makes every public endpoint an MCP tool; the maintainers' answer is to hide the endpoint from the
    API docs altogether (gradio-app/gradio#11463). Endpoints that only mean something inside one Gradio session
    (the session's conversation, its counter) must stay documented for gradio_client but are wrong for agents:
    Gradio's MCP server sends every agent's calls through one shared client, so one session. The MCP server
    lists only functions whose `_mcp_type` is unset or "tool" (mcp.py, `list_tools`).

    Delete when Gradio offers a per-endpoint MCP switch.
    """
    if gr.__version__ == PATCHED_VERSION:
        fn._mcp_type = "session-only"  # type: ignore[attr-defined]
    return fn


# Gradio's MCP server calls queued tools through one shared gradio_client, whose requests carry this header
# (mcp.py, `_get_or_create_client`). A caller can send it too, but only to refuse itself a session endpoint.
_MCP_CLIENT_HEADER = ("x-gradio-user", "mcp")


def called_through_mcp(request: gr.Request | None) -> bool:
    """Whether this call came through Gradio's MCP server: then it has no session of its own (every agent's
    calls share the server's one client), so a session endpoint must refuse it, even called by name (Gradio's
    `call_tool` does not check what `keep_out_of_mcp` hides)."""
    name, value = _MCP_CLIENT_HEADER
    return request is not None and request.headers.get(name) == value


def cancel_jobs_whose_client_left() -> None:
    """A job whose client has gone (its event stream closed: a tab closed, an API caller that hung up on
    `/call/<api>/<event_id>` or `/queue/data`) is cancelled at once, as `/cancel` would, so that its `finally`
    blocks run and the model server's request is closed within a second.

    Gradio 6.31 only marks such jobs not alive (`Queue.clean_events`, called from `queue_data_helper` when the
    stream's client disconnects) and stops them the next time they yield: a reply waiting on a silent model
    server (one sending only `: keep-alive` comments, or thinking for minutes) kept its upstream connection until
    the server spoke again. The running job is the task Gradio named `<session>_<fn>` + `<gradio-sep>` + the event
    id (`utils.set_task_name`), the name `/cancel` finds it by. The tasks are cancelled before Gradio's own method
    awaits anything: it runs while the stream's own task is being cancelled.

    Upstream: not reported as of 2026-12-02. Delete when a client's disconnect cancels its running jobs.
    """
    queue_class = gradio.queueing.Queue
    original = queue_class.clean_events
    if getattr(original, "cancels_running_jobs", False):
        return

    async def clean_events(self: Any, *, session_hash: str | None = None, event_id: str | None = None) -> None:
        names = {
            f"{event.session_hash}_{event.fn._id}<gradio-sep>{event._id}"
            for job in self.active_jobs
            if job
            for event in job
            if (session_hash is not None and event.session_hash == session_hash)
            or (event_id is not None and event._id == event_id)
        }
        if names:
            for task in asyncio.all_tasks():
                if task.get_name() in names:
                    task.cancel()
        await original(self, session_hash=session_hash, event_id=event_id)

    clean_events.cancels_running_jobs = True  # type: ignore[attr-defined]
    queue_class.clean_events = clean_events  # type: ignore[method-assign]


def apply(blocks: gr.Blocks) -> None:
    """The process-wide tuning above, for this Blocks; on another Gradio version, nothing (with a warning)."""
    if not _version_ok("performance workarounds"):
        return
    skip_missing_matplotlib()
    cache_init_signatures(blocks)
    keep_no_session_configs()
    cancel_jobs_whose_client_left()
    # LoginButton's page-load check is a public endpoint in 6.31, which made it an MCP tool with no description.
    keep_out_of_mcp(gr.LoginButton._check_login_status)
