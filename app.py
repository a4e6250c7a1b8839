"""The Space's entry: `build_demo` makes the one `gr.Blocks` (its queue included) from the settings and a backend.

- `python app.py` (what a Space runs; `--help` for the options) builds it from the environment and launches it.
- `from app import demo` builds it from the environment on first use, for notebooks and `gradio app.py`.
- Tests call `build_demo(Settings(...), backend)` with a backend of their own.

The page's pieces live in `ui/`, everything else in `services/`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import gradio as gr

from services.access import Access
from services.assistant import Assistant
from services.config import Settings, load_settings
from services.errors import ConfigError
from services.llm import ChatBackend, create_backend, create_local_backend
from services.llm.openai_backend import OpenAIBackend, endpoint_from_settings, router_endpoint
from services.ratelimit import ChatRateLimits
from services.redact import Scrubber, install_log_redaction
from services.sessions import SessionStore
from services.signin import decide_sign_in
from ui import gradio_patches
from ui.chat import ChatPanel
from ui.chat_api import ChatApi
from ui.history import HISTORY_JS, HistoryPanel
from ui.launch import SpaceBlocks
from ui.tools import Tools

__all__ = ["TITLE", "build_demo", "demo_from_environment", "main"]

logger = logging.getLogger("app")
# Built on first use (`__getattr__`), or by `main`.
demo: SpaceBlocks

TITLE = "Space Chat"
DESCRIPTION = (
    "Chat with a language model that streams its answer, plus a few small text tools. Your chats are kept in "
    "your browser (see the sidebar). Call every tool from code, or from an MCP client: see *Use via API* at the "
    "bottom of the page."
)


def _models_of(backend: ChatBackend) -> tuple[str, ...]:
    return tuple(getattr(backend, "models", ()))


def build_demo(settings: Settings, backend: ChatBackend, *, access: Access | None = None) -> SpaceBlocks:
    """The Space's Blocks for `settings`, chatting with `backend` (the owner's), queue and all; not launched.

    `access` says who else answers (the router for signed-in visitors, the local model for anonymous ones);
    without it, everyone chats with `backend`.
    """
    access = access or Access(owner=backend, owner_models=_models_of(backend))
    sessions = SessionStore(
        capacity=settings.session_capacity,
        ttl=settings.session_ttl,
        max_messages=settings.max_history_messages,
        max_chars=settings.max_history_chars,
    )
    assistant = Assistant(settings, access, ChatRateLimits.from_settings(settings))
    history = HistoryPanel(settings, sessions)
    chat = ChatPanel(assistant, sessions, history)
    tools = Tools(settings, sessions)
    # One limit for every call of a model (the page's replies, /chat, /ask): the in-process model runs
    # LOCAL_CONCURRENCY replies at a time, a model server CHAT_CONCURRENCY (no limit by default). With several
    # backends, each keeps its own (the local model's slots), and the queue does not hold the others back.
    backends = access.backends()
    limit = backends[0].concurrency_limit if len(backends) == 1 else None
    demo = SpaceBlocks(
        settings,
        title=TITLE,
        head=f"<script>{HISTORY_JS}</script>",
        on_shutdown=[b.aclose for b in backends],
        # Files Gradio caches (uploads, exports) are deleted hourly once an hour old.
        delete_cache=(3600, 3600),
    )
    with demo:
        gr.Markdown(f"# {TITLE}\n{DESCRIPTION}")
        history.build()
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat.build(demo, concurrency_limit=limit)
            with gr.Tab("Text tools", id="tools"):
                tools.build_tools_tab()
            with gr.Tab("Greeting", id="greeting"):
                tools.build_greeting_tab()
            with gr.Tab("Counter", id="counter"):
                tools.build_counter_tab()
        # Sessions' server-side data ends with SESSION_TTL_MINUTES or SESSION_CAPACITY, not with `demo.unload`:
        # Gradio 6.31 cannot rebuild an unload event from the config, so it would make `gr.load` fail.
        ChatApi(assistant, sessions).build(concurrency_limit=limit)
    # max_size bounds how many calls may wait; past it callers get "queue full" instead of a hang. api_open=False
    # closes the direct /run routes, which would skip the queue's limits.
    demo.queue(max_size=settings.queue_max_size, default_concurrency_limit=None, api_open=False)
    gradio_patches.apply(demo)
    return demo


def demo_from_environment() -> SpaceBlocks:
    """The Space as its environment configures it: settings, log redaction, backends, sign-in; then `build_demo`.

    A malformed variable stops start-up with one line naming it (`SystemExit`), instead of a traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One INFO line per HTTP request to the model server is noise, and costs time on the streaming path.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        settings = load_settings()
        scrubber = Scrubber(settings.secrets())
        # Before anything can log: a library that logs a request or an error must not print a key or password.
        install_log_redaction(scrubber)
        owner = create_backend(settings, scrubber)
        decision = decide_sign_in(settings)
        router = None
        if decision.offered:
            endpoint = router_endpoint(settings, endpoint_from_settings(settings))
            router = OpenAIBackend.from_settings(settings, endpoint, scrubber)
        local = None
        if settings.anonymous_chat == "local":
            local = owner if owner.name == "local" else create_local_backend(settings)
    except ConfigError as error:
        raise SystemExit(f"Configuration error: {error}") from None
    access = Access(
        owner=owner,
        owner_models=_models_of(owner),
        router=router,
        router_models=_models_of(router) if router else (),
        anonymous=settings.anonymous_chat,
        local=local,
        dev_token=None if settings.on_space else settings.hf_token,
    )
    return build_demo(settings, owner, access=access)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the Space Chat app locally.")
    parser.add_argument("--host", help="interface to bind (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public share link")
    parser.add_argument("--inbrowser", action="store_true", help="open the app in a browser tab")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """The command line: parse the options first, so that `--help` answers before any model loads."""
    args = _parse_args(argv)
    global demo
    demo = demo_from_environment()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share or None, inbrowser=args.inbrowser)


def __getattr__(name: str) -> Any:
    """`from app import demo` builds the Space from the environment once, on first use (PEP 562)."""
    if name == "demo":
        built = demo_from_environment()
        globals()["demo"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
