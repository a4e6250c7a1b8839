"""The Space's entry: `build_demo` makes the one `gr.Blocks` (its queue included) from the settings and a backend.

- `python app.py` (what a Space runs; `--help` for the options) builds it from the environment and launches it.
- `from app import demo` builds it from the environment on first use, for notebooks and `gradio app.py`.
- Tests call `build_demo(Settings(...), Access(owner=backend))` with a backend of their own.

The page's pieces live in `ui/`, everything else in `services/`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {port}")
    return port


def _port_from_environment() -> int | None:
    """GRADIO_SERVER_PORT, checked before Gradio is imported: Gradio reads it as a number when it loads, and a
    malformed value would end in its traceback."""
    value = os.environ.get("GRADIO_SERVER_PORT", "").strip()
    try:
        return _port(value) if value else None
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"Configuration error: GRADIO_SERVER_PORT: {error}.") from None


_ENV_PORT = _port_from_environment()

import gradio as gr

from services.access import Access
from services.assistant import Assistant
from services.attachments import AttachmentReader
from services.attachments.held import HeldAttachments
from services.budget import DailyBudgets
from services.config import Settings, load_settings
from services.conversation import Limits
from services.errors import ConfigError
from services.llm import create_backend, create_local_backend
from services.llm.openai_backend import OpenAIBackend, endpoint_from_settings, router_endpoint
from services.mcp_tools import ToolRegistry
from services.ratelimit import ChatRateLimits
from services.redact import Scrubber, install_log_redaction
from services.saved_chats import ChatArchive, Seal
from services.sessions import SessionStore
from services.signin import decide_sign_in
from ui import gradio_internals
from ui.chat import ChatPanel
from ui.chat_api import ChatApi
from ui.gradio_internals.page import PAGE_FIXES_JS
from ui.launch import SpaceBlocks
from ui.saved_chats import SAVED_CHATS_JS, SavedChatsPanel
from ui.tools import Tools

__all__ = ["TITLE", "build_demo", "demo_from_environment", "main"]

logger = logging.getLogger("app")
# Built on first use (`__getattr__`), or by `main`.
demo: SpaceBlocks

TITLE = "Space Chat"
DEFAULT_PORT = 7860
DESCRIPTION = (
    "Chat with a language model that streams its answer, plus a few small text tools. Your chats are kept in "
    "your browser (see the sidebar). Call every tool from code, or from an MCP client: see *Use via API* at the "
    "bottom of the page."
)


def build_demo(settings: Settings, access: Access, *, tool_servers: ToolRegistry | None = None) -> SpaceBlocks:
    """The Space's Blocks for `settings`, queue and all, not launched; `access` says who answers whom (the
    owner's backend, the router for signed-in visitors, the local model for anonymous ones), `tool_servers` the
    MCP servers whose tools the model may call (connected when the server starts)."""
    # A session keeps its conversation as a browser would store it (HISTORY_CONVERSATION_CHARS); what the model
    # is sent of it is trimmed again, to MAX_HISTORY_CHARS, by services.chat.
    sessions = SessionStore(
        capacity=settings.session_capacity,
        ttl=settings.session_ttl,
        max_messages=settings.max_history_messages,
        max_chars=settings.history_conversation_chars,
    )
    # Attached files are read in worker processes, started with the server (a demo that is only built starts none).
    reader = AttachmentReader(settings) if settings.max_attachments else None
    budgets = DailyBudgets(
        owner_daily=settings.owner_daily_tokens,
        per_address_daily=settings.daily_tokens_per_ip,
        sign_in_offered=access.sign_in,
        report_every=settings.usage_log_interval,
    )
    assistant = Assistant(
        settings,
        access,
        ChatRateLimits.from_settings(settings),
        budgets=budgets,
        reader=reader,
        held=HeldAttachments(max_bytes=settings.attachment_memory),
        tools=tool_servers,
    )
    saved = SavedChatsPanel(
        _archive(settings),
        sessions,
        max_import_bytes=settings.max_upload_bytes,
        kept=lambda attached: assistant.attachment(attached) is not None,
    )
    chat = ChatPanel(assistant, sessions, saved, settings=settings, access=access)
    tools = Tools(settings, sessions)
    # One limit for every call of a model (the page's replies, /chat, /ask): the in-process model runs
    # LOCAL_CONCURRENCY replies at a time, a model server CHAT_CONCURRENCY (no limit by default). With several
    # backends, each keeps its own (the local model's slots), and the queue does not hold the others back.
    backends = access.backends()
    limit = backends[0].concurrency_limit if len(backends) == 1 else None
    demo = SpaceBlocks(
        settings,
        title=TITLE,
        head=f"<script>{SAVED_CHATS_JS}</script><script>{PAGE_FIXES_JS}</script>",
        on_startup=[*(b.start for b in backends), *(_in_thread(r.start) for r in (reader, tool_servers) if r)],
        on_shutdown=[*(b.aclose for b in backends), *(_in_thread(r.close) for r in (reader, tool_servers) if r)],
        # A /call without a session hash is a session for that one call: what it kept goes once it is answered.
        on_session_end=[sessions.drop],
        # Files Gradio caches (uploads, exports) are deleted hourly once an hour old.
        delete_cache=(3600, 3600),
    )
    with demo:
        gr.Markdown(f"# {TITLE}\n{DESCRIPTION}")
        saved.build()
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
        ChatApi(assistant, sessions, settings=settings).build(concurrency_limit=limit)
    # max_size bounds how many calls may wait; past it callers get "queue full" instead of a hang. api_open=False
    # closes the direct /run routes, which would skip the queue's limits.
    demo.queue(max_size=settings.queue_max_size, default_concurrency_limit=None, api_open=False)
    gradio_internals.apply(demo)
    return demo


def _in_thread(work: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """`work` (starting or stopping worker processes, MCP sessions: seconds at most) off the event loop."""

    async def run() -> None:
        await asyncio.to_thread(work)

    return run


def _archive(settings: Settings) -> ChatArchive:
    """The saved chats' rules, signed with HISTORY_SECRET (or a key made for this start only, with a warning)."""
    secret = settings.history_secret
    if not secret:
        logger.warning(
            "HISTORY_SECRET is not set: saved chats are signed with a key made for this start only, so visitors' "
            "saved chats will not survive a restart. Set HISTORY_SECRET (a Space secret) to keep them."
        )
        secret = secrets.token_hex(32)
    limits = Limits(settings.max_history_messages, settings.history_conversation_chars)
    return ChatArchive(
        Seal(secret, limits=limits),
        conversation_chars=settings.history_conversation_chars,
        total_chars=settings.history_total_chars,
        max_import_bytes=settings.max_upload_bytes,
    )


def demo_from_environment() -> SpaceBlocks:
    """The Space as its environment configures it: settings, log redaction, backends, sign-in; then `build_demo`.

    A malformed variable stops start-up with one line naming it (`SystemExit`), instead of a traceback.
    """
    _configure_logging()
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
            router = OpenAIBackend.from_settings(settings, endpoint, scrubber, owner=False)
        local = None
        if settings.anonymous_chat == "local":
            local = owner if owner.name == "local" else create_local_backend(settings)
    except ConfigError as error:
        raise SystemExit(f"Configuration error: {error}") from None
    _one_handler_for_libraries()
    access = Access(
        owner=owner,
        router=router,
        anonymous=settings.anonymous_chat,
        local=local,
        dev_token=None if settings.on_space else settings.hf_token,
    )
    servers = ToolRegistry.from_settings(settings, scrubber=scrubber) if settings.mcp_servers else None
    return build_demo(settings, access, tool_servers=servers)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)  # a library's warnings.warn() through the same handler, once
    # One INFO line per HTTP request to the model server is noise, and costs time on the streaming path.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _one_handler_for_libraries()


def _one_handler_for_libraries() -> None:
    """huggingface_hub and transformers give their loggers a stderr handler of their own, on top of the root one,
    which would print each of their lines twice: their records go to the root handler only."""
    for name in ("huggingface_hub", "transformers"):
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            if isinstance(handler, logging.StreamHandler):
                library.removeHandler(handler)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the Space Chat app locally.")
    parser.add_argument("--host", help="interface to bind (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, help=f"port to listen on (default: GRADIO_SERVER_PORT, else {DEFAULT_PORT})"
    )
    parser.add_argument("--share", action="store_true", help="also open a temporary public share link")
    parser.add_argument("--inbrowser", action="store_true", help="open the app in a browser tab")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _port_taken(host: str | None, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "127.0.0.1", port))
        except OSError:
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """The command line: parse the options first, so that `--help` answers before any model loads.

    A port that is taken (--port, GRADIO_SERVER_PORT, or the default 7860) stops start-up with one line, before
    anything loads: Gradio would otherwise move to the next free port without a word, and the app would not be
    where README says.
    """
    args = _parse_args(argv)
    port = args.port or _ENV_PORT or DEFAULT_PORT
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or None
    if _port_taken(host, port):
        source = "--port" if args.port else "GRADIO_SERVER_PORT" if _ENV_PORT else "the default port"
        raise SystemExit(
            f"Cannot start: port {port} ({source}) is already in use by another program. Stop it, or pick another "
            "port with --port."
        )
    global demo
    demo = demo_from_environment()
    # A Space (and `docker stop`, systemd) stops the app with SIGTERM: let it end as Ctrl+C does, through
    # Gradio's own shutdown, so that the backends' connections are closed (SpaceBlocks' on_shutdown).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.launch(server_name=args.host, server_port=port, share=args.share or None, inbrowser=args.inbrowser)
    except OSError as error:
        # Taken between the check above and the launch.
        raise SystemExit(f"Cannot start: {error}") from None


def __getattr__(name: str) -> Any:
    """`from app import demo` builds the Space from the environment once, on first use (PEP 562)."""
    if name == "demo":
        built = demo_from_environment()
        globals()["demo"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
