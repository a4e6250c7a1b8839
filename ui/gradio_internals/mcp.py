"""What the app relies on of Gradio's MCP server (gradio/mcp.py): which tools it lists, how it calls them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from ui.gradio_internals._version import on_checked_version

__all__ = ["MCP_CLIENT_HEADER", "called_through_mcp", "keep_out_of_mcp"]

F = TypeVar("F", bound=Callable[..., Any])

# Gradio's MCP server calls queued tools through one shared gradio_client, whose requests carry this header
# (mcp.py, `_get_or_create_client`). A caller can send it too, but only to refuse itself a session endpoint.
MCP_CLIENT_HEADER = ("x-gradio-user", "mcp")


def keep_out_of_mcp(fn: F) -> F:
    """Keep a documented API endpoint out of the MCP server's tools.

    Gradio 6.31 makes every public endpoint an MCP tool; the maintainers' answer is to hide the endpoint from the
    API docs altogether (gradio-app/gradio#11463). Endpoints that only mean something inside one Gradio session
    (the session's conversation, its counter) must stay documented for gradio_client but are wrong for agents:
    Gradio's MCP server sends every agent's calls through one shared client, so one session. The MCP server
    lists only functions whose `_mcp_type` is unset or "tool" (mcp.py, `list_tools`).

    Delete when Gradio offers a per-endpoint MCP switch.
    """
    if on_checked_version("keep_out_of_mcp"):
        fn._mcp_type = "session-only"  # type: ignore[attr-defined]
    return fn


def called_through_mcp(request: gr.Request | None) -> bool:
    """Whether this call came through Gradio's MCP server: then it has no session of its own (every agent's
    calls share the server's one client), so a session endpoint must refuse it, even called by name (Gradio's
    `call_tool` does not check what `keep_out_of_mcp` hides)."""
    name, value = MCP_CLIENT_HEADER
    return request is not None and request.headers.get(name) == value
