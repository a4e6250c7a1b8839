"""What the app relies on of Gradio's MCP server (gradio/mcp.py): which tools it lists, how it calls them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from ui.gradio_internals._version import on_checked_version

__all__ = ["MCP_CLIENT_HEADER", "accept_lists_of_files", "called_through_mcp", "keep_out_of_mcp"]

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


def _without_nested_refs(node: Any) -> Any:
    """A JSON schema without the `$defs` Gradio nests inside a property, nor the `$ref`s that point at the root's
    (where there are none); each such `$ref` sits beside the `type` and `format` it would have resolved to."""
    if isinstance(node, dict):
        return {
            key: _without_nested_refs(value)
            for key, value in node.items()
            if key != "$defs" and not (key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"))
        }
    if isinstance(node, list):
        return [_without_nested_refs(item) for item in node]
    return node


def _expanded(value: Any, positions: list[list[str | int]]) -> list[list[str | int]]:
    """Positions of files as Gradio's conversion matches them: one for each item of a list marked "items"."""
    found: list[list[str | int]] = []
    for position in positions:
        if not position or position[-1] != "items":
            found.append(position)
            continue
        container = value
        for step in position[:-1]:
            container = container.get(step) if isinstance(container, dict) and isinstance(step, str) else None
        if isinstance(container, list):
            found += [[*position[:-1], index] for index in range(len(container))]
    return found


def accept_lists_of_files() -> None:
    """A tool taking a list of files (`/ask`'s `files`) works over MCP: its schema resolves, and each file given
    (a data: URL) becomes one the app receives.

    Gradio 6.31 describes `gr.File(file_count="multiple")` with a `$ref: "#/$defs/FileData"` whose `$defs` it
    puts inside the property, not at the schema's root: the reference points nowhere, and the MCP server's own
    validation of every call fails ("PointerToNowhere: '/$defs/FileData' does not exist"). Each item already says
    what it is (a string: a URL or a data: URL of a file), so the dangling reference and the misplaced `$defs`
    go. And it marks such a list's files at `[name, "items"]`, which its conversion of strings to files
    (`convert_strings_to_filedata`, matching exact positions) never meets: each is expanded to the list's indices.

    Upstream: not reported as of 2026-12-02. Delete when `GradioMCPServer.get_input_schema` hoists `$defs` and
    lists of files convert.
    """
    from gradio.mcp import GradioMCPServer

    schema_of = GradioMCPServer.get_input_schema
    if getattr(schema_of, "accepts_lists_of_files", False):
        return
    convert = GradioMCPServer.convert_strings_to_filedata

    @functools.wraps(schema_of)
    def get_input_schema(self: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], list[list[str | int]]]:
        schema, positions = schema_of(self, *args, **kwargs)
        return _without_nested_refs(schema), positions

    @functools.wraps(convert)
    def convert_strings_to_filedata(self: Any, value: Any, positions: list[list[str | int]]) -> Any:
        return convert(self, value, _expanded(value, positions))

    get_input_schema.accepts_lists_of_files = True  # type: ignore[attr-defined]
    GradioMCPServer.get_input_schema = get_input_schema  # type: ignore[method-assign]
    GradioMCPServer.convert_strings_to_filedata = convert_strings_to_filedata  # type: ignore[method-assign,assignment]
