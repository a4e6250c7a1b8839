"""How the app is served, from the settings, the same way whichever path launches it.

`python app.py`, `from app import demo; demo.launch()`, `demo.launch(inline=True)` in a notebook and `gradio app.py`
(reload mode) all end in `SpaceBlocks.launch`, which applies the settings before anything the caller passes: the
login, the edge middleware (body and upload limits, client address, login throttle, deep links off), the session
bounds, the theme, and the switches of what the Space does not use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from services.config import Settings
from ui.gradio_internals.endpoints import api_shapes, event_shapes
from ui.middleware import EdgeGuard, EdgePolicy

__all__ = ["SpaceBlocks", "launch_options"]

logger = logging.getLogger(__name__)

# Launch options a caller may not loosen: they are what keeps a public Space safe.
_ENFORCED = ("auth", "max_file_size", "state_session_capacity", "run_history", "enable_monitoring", "show_error")


def _theme() -> gr.themes.Base:
    # System fonts: the default theme's Google Fonts would make every visitor's browser call Google on each load.
    return gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"],
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


def launch_options(settings: Settings, blocks: gr.Blocks, *, head: str = "") -> dict[str, Any]:
    """Everything `launch()` takes from the settings (Gradio 6 moved theme, js and css from Blocks to launch)."""
    policy = EdgePolicy(
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        trusted_proxies=settings.trusted_proxies,
        login_attempts=settings.login_attempts,
    )
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
        "max_file_size": settings.max_upload_bytes,
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
            "middleware": [
                Middleware(EdgeGuard, policy=policy, shapes=api_shapes(blocks), events=event_shapes(blocks))
            ],
        },
    }


class SpaceBlocks(gr.Blocks):
    """A `gr.Blocks` whose `launch()` starts from the Space's settings, so every way of launching it is the same.

    A caller's own arguments apply on top, except those that keep the Space safe (`_ENFORCED`), which a warning
    says are kept. `on_shutdown` runs when the server stops (the backends' connections are closed there).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        head: str = "",
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._head = head
        self._on_shutdown = tuple(on_shutdown)

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
        # uvicorn rewrites the client address from X-Forwarded-For when the peer is 127.0.0.1 (its
        # FORWARDED_ALLOW_IPS default), which a local caller can forge; the edge middleware derives the address
        # itself, through exactly TRUSTED_PROXIES, so uvicorn trusts no one.
        os.environ["FORWARDED_ALLOW_IPS"] = ""
        return super().launch(*args, **{**options, **kwargs, "app_kwargs": app_kwargs})

    def _lifespan(self, inner: Any) -> Callable[[Any], Any]:
        on_shutdown = self._on_shutdown

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                for close in on_shutdown:
                    try:
                        await close()
                    except Exception:
                        logger.exception("Closing a backend failed")
                logger.info("Stopped: the backends' connections are closed.")

        return lifespan
