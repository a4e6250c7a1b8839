"""How the app is served, from the settings, the same way whichever path launches it.

`python app.py`, `from app import demo; demo.launch()`, `demo.launch(inline=True)` in a notebook and `gradio app.py`
(reload mode) all end in `SpaceBlocks.launch`, which applies the settings before anything the caller passes: the
login, the edge (`edge_middleware`: security headers, the cross-origin policy, the client address, rate limits,
body and upload limits, the login throttle, the upload cache, and the guard of Gradio's request formats), the
session bounds and unread results, the theme, and the switches of what the Space does not use.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from services.config import Settings
from services.ratelimit import RequestRate
from services.session_keys import SessionKeys
from ui import gradio_internals
from ui.edge import (
    BodyLimit,
    CallerForwarding,
    ClientAddress,
    CrossOriginPolicy,
    LoginThrottle,
    RateLimit,
    SecurityHeaders,
)
from ui.gradio_internals import cors, unread
from ui.gradio_internals.endpoints import api_shapes, event_shapes
from ui.gradio_internals.requests import GradioRequestGuard
from ui.gradio_internals.routes import (
    MCP_PATHS,
    SIGN_IN_CALLBACKS,
    SIGN_IN_PATHS,
    UPLOAD_PATH,
    is_static,
    is_upload,
)
from ui.gradio_internals.uploads import UploadCacheBound

__all__ = ["SpaceBlocks", "edge_middleware", "launch_options"]

logger = logging.getLogger(__name__)

# Room for a multipart envelope around an upload of MAX_UPLOAD_BYTES.
_MULTIPART_OVERHEAD = 64 * 1024
# Launch options a caller may not loosen: they are what keeps a public Space safe.
_ENFORCED = ("auth", "max_file_size", "state_session_capacity", "run_history", "enable_monitoring", "show_error")


def _theme() -> gr.themes.Base:
    # System fonts: the default theme's Google Fonts would make every visitor's browser call Google on each load.
    theme = gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"],
    )
    # Soft's own text colours fall short of WCAG AA's contrast of 4.5:1 (white on its primary buttons and accent, its
    # labels on their tint, subdued text): one shade darker each, checked by tests/test_accessibility.py.
    return theme.set(
        color_accent="*primary_600",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        checkbox_label_background_fill_selected="*primary_600",
        block_label_text_color="*primary_700",
        block_title_text_color="*primary_700",
        body_text_color_subdued="*neutral_600",
        body_text_color_subdued_dark="*neutral_400",
    )


def _force_theme_js(mode: str) -> str | None:
    """Force a colour scheme by reloading once with ?__theme=<mode>, which Gradio honours."""
    if mode == "system":
        return None
    return f"""
    () => {{
        const url = new URL(window.location);
        if (url.searchParams.get("__theme") !== "{mode}") {{
            url.searchParams.set("__theme", "{mode}");
            window.location.replace(url.href);
        }}
    }}
    """


def edge_middleware(settings: Settings, blocks: gr.Blocks) -> list[Middleware]:
    """The edge, outermost first: every response's headers, then who is calling and from where, then what they
    may send, then what Gradio's formats allow (`ui.edge`, `ui.gradio_internals`)."""
    api_rate = settings.api_requests_per_minute
    upload_rate = settings.uploads_per_minute
    stack = [
        Middleware(SecurityHeaders),
        Middleware(
            CrossOriginPolicy,
            credentialed=SIGN_IN_PATHS,
            callbacks=SIGN_IN_CALLBACKS,
            trust_forwarded_host=settings.trusted_proxies > 0,
        ),
        Middleware(
            ClientAddress, trusted_proxies=settings.trusted_proxies, forwarding=CallerForwarding(paths=MCP_PATHS)
        ),
    ]
    if api_rate:
        message = "Slow down: at most {limit} requests a minute from one address. Try again in {retry} s."
        rate = RequestRate(api_rate, message=message)
        stack.append(Middleware(RateLimit, rate=rate, applies=lambda method, path: not is_static(method, path)))
    if upload_rate:
        message = "Too many uploads from this address: at most {limit} a minute. Try again in {retry} s."
        stack.append(Middleware(RateLimit, rate=RequestRate(upload_rate, message=message), applies=is_upload))
    sessions = SessionKeys(
        ttl=settings.session_ttl,
        per_address=settings.sessions_per_address,
        per_minute=settings.new_sessions_per_minute,
        capacity=settings.session_capacity,
    )
    return [
        *stack,
        Middleware(
            BodyLimit,
            max_bytes=settings.max_request_bytes,
            paths={UPLOAD_PATH: settings.largest_upload + _MULTIPART_OVERHEAD},
        ),
        Middleware(LoginThrottle, attempts=settings.login_attempts),
        Middleware(UploadCacheBound, max_bytes=settings.upload_cache_bytes),
        Middleware(GradioRequestGuard, shapes=api_shapes(blocks), events=event_shapes(blocks), sessions=sessions),
    ]


def launch_options(settings: Settings, blocks: gr.Blocks, *, head: str = "") -> dict[str, Any]:
    """Everything `launch()` takes from the settings (Gradio 6 moved theme, js and css from Blocks to launch)."""
    return {
        # Gradio runs at most max_threads jobs at once, async ones included (its queue has that many slots):
        # the default 40 would make the 41st streaming chat wait for a free slot.
        "max_threads": settings.max_jobs,
        "theme": _theme(),
        "js": _force_theme_js(settings.theme_mode),
        "head": head or None,
        "auth": list(settings.app_auth) or None,
        "auth_message": "This Space is private: sign in with the account its owner gave you."
        if settings.app_auth
        else None,
        "max_file_size": settings.largest_upload,
        "state_session_capacity": settings.session_capacity,
        # Not used here, and each a way in: run history (which calls the Hub with the owner's token for a
        # caller), the traffic page, full tracebacks in error messages.
        "run_history": False,
        "enable_monitoring": False,
        "show_error": False,
        "footer_links": ["api", "gradio", "settings"],
        # Gradio's MCP routes skip its login (an MCP client cannot hold the login's cookie): with APP_AUTH, off.
        "mcp_server": settings.mcp_server and not settings.app_auth,
        "app_kwargs": {
            # FastAPI's own schema route answers without Gradio's login; Gradio's /gradio_api/openapi.json stays.
            "openapi_url": None,
            "middleware": edge_middleware(settings, blocks),
        },
    }


class SpaceBlocks(gr.Blocks):
    """A `gr.Blocks` whose `launch()` starts from the Space's settings, so every way of launching it is the same.

    A caller's own arguments apply on top, except those that keep the Space safe (`_ENFORCED`), which a warning
    says are kept. `on_startup` runs when the server starts (the backends learn their models, the attachment
    readers start), `on_shutdown` when it stops (the backends' connections are closed there); `on_session_end` is
    told the key of a session that ended (a `/call` without a session hash, once answered).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        head: str = "",
        on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
        on_session_end: Sequence[Callable[[str], None]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._head = head
        self._on_startup = tuple(on_startup)
        self._on_shutdown = tuple(on_shutdown)
        self._on_session_end = tuple(on_session_end)

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        options = launch_options(self.settings, self, head=self._head)
        if self.settings.mcp_server and self.settings.app_auth:
            logger.info("The MCP server is off: APP_AUTH's login is a browser cookie, which MCP clients cannot send.")
        for name in _ENFORCED:
            if name in kwargs and kwargs[name] != options[name]:
                logger.warning("launch(%s=...) ignored: the Space's settings decide it.", name)
                kwargs.pop(name)
        theirs = kwargs.pop("app_kwargs", None) or {}
        ours = options.pop("app_kwargs")
        app_kwargs = {**theirs, **ours, "middleware": [*ours["middleware"], *theirs.get("middleware", [])]}
        app_kwargs["lifespan"] = self._lifespan(app_kwargs.get("lifespan"))
        self._bound_gradio()
        # uvicorn rewrites the client address from X-Forwarded-For when the peer is 127.0.0.1 (its
        # FORWARDED_ALLOW_IPS default), which a local caller can forge; the edge middleware derives the address
        # itself, through exactly TRUSTED_PROXIES, so uvicorn trusts no one.
        os.environ["FORWARDED_ALLOW_IPS"] = ""
        return super().launch(*args, **{**options, **kwargs, "app_kwargs": app_kwargs})

    def _bound_gradio(self) -> None:
        """What the edge cannot do from outside Gradio: its CORS middleware stands aside for the app's policy, and
        its queue keeps unread results within bounds."""
        settings = self.settings
        if not gradio_internals.on_checked_version("the cross-origin policy and the bounds on unread results"):
            return
        cors.stand_aside_for()
        if self._queue is not None and not isinstance(self._queue.pending_messages_per_session, unread.UnreadResults):
            unread.install(
                self,
                per_session_messages=settings.unread_results_per_session,
                per_session_bytes=settings.unread_results_bytes // 4,
                total_bytes=settings.unread_results_bytes,
                ttl=settings.unread_results_ttl,
                capacity=max(2000, settings.session_capacity),
                on_session_end=self._on_session_end,
            )

    def _lifespan(self, inner: Any) -> Callable[[Any], Any]:
        on_startup, on_shutdown = self._on_startup, self._on_shutdown

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            # Started, not awaited: the server takes requests at once; a chat that needs what the model server's
            # listing says waits for it, a bounded time (`OpenAIBackend.start`).
            starting = [asyncio.ensure_future(start()) for start in on_startup]
            # What exists now (gradio, torch, the page's blocks) lives as long as the server: frozen, it is left
            # out of the collector's full passes, each of which otherwise walked it all with the event loop held.
            gc.collect()
            gc.freeze()
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                for task in starting:
                    task.cancel()
                for close in on_shutdown:
                    try:
                        await close()
                    except Exception:
                        logger.exception("Closing a backend failed")
                logger.info("Stopped: the backends' connections are closed.")

        return lifespan
