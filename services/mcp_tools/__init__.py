"""Tools of MCP servers for the chat model: the servers of MCP_SERVERS, their tools, and calls to them.

`ToolRegistry` is the one entry point: `tools()` for the model's request, `await call(name, arguments)` for each
call the model makes, `status()` for the page. See `registry.py` for how sessions are kept and calls run.
"""

from __future__ import annotations

from services.mcp_tools.catalog import ArgumentsError, ToolSpec, exposed_name, parse_arguments
from services.mcp_tools.connection import ServerStatus, ToolServer
from services.mcp_tools.registry import ToolRegistry, servers_from_settings
from services.mcp_tools.results import ToolOutcome, ToolResult

__all__ = [
    "ArgumentsError",
    "ServerStatus",
    "ToolOutcome",
    "ToolRegistry",
    "ToolResult",
    "ToolServer",
    "ToolSpec",
    "exposed_name",
    "parse_arguments",
    "servers_from_settings",
]
