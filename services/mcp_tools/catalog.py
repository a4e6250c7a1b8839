"""The tools of MCP servers as the chat model sees them: checked, bounded, and named uniquely across servers.

A tool server is untrusted: its list is checked before anything of it reaches a model. A tool is left out (with a
line saying why) when its name is too long or repeated, or its input schema is not a JSON object schema or is too
large; descriptions are cut to a bounded length and masked of the Space's secrets. The model sees each tool as
`<server>__<tool>`, made valid for OpenAI function names (`^[a-zA-Z0-9_-]{1,64}$`) and unique; `ToolSpec` keeps
the way back to the server and the tool's own name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp.types import Tool

from services.mcp_tools.results import MASK_MARGIN, masked_head
from services.redact import Scrubber
from services.text import clean

__all__ = [
    "MAX_ARGUMENT_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_SCHEMA_CHARS",
    "MAX_TOOLS",
    "MAX_TOOLS_PER_SERVER",
    "ArgumentsError",
    "ListedTool",
    "ToolSpec",
    "build_catalog",
    "check_tools",
    "exposed_name",
    "parse_arguments",
]

# OpenAI accepts at most 128 tools a request; one server may not crowd out the others.
MAX_TOOLS = 128
MAX_TOOLS_PER_SERVER = 64
MAX_DESCRIPTION_CHARS = 1_024
MAX_SCHEMA_CHARS = 16_384
MAX_TOOL_NAME_CHARS = 256
MAX_REQUIRED = 100
# Arguments a model streams for one call; a longer text is refused before it is parsed.
MAX_ARGUMENT_CHARS = 100_000
_NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ArgumentsError(ValueError):
    """Raised when a tool call's arguments are not a JSON object, or lack a required key; the message is written
    for the model, so that it can correct the call."""


@dataclass(frozen=True)
class ListedTool:
    """A tool as a server listed it, once checked: its own name, a bounded description, a JSON object schema."""

    tool: str
    description: str
    parameters: Mapping[str, Any] = field(repr=False)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: `name` is what the model calls, `server` and `tool` where it goes."""

    name: str
    server: str
    tool: str
    description: str
    parameters: Mapping[str, Any] = field(repr=False)
    required: tuple[str, ...] = ()

    def openai(self) -> dict[str, Any]:
        """The tool in the shape of `tools=[...]` of an OpenAI-compatible chat request."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


def _checked_schema(schema: object) -> tuple[dict[str, Any], tuple[str, ...]] | str:
    """(a private copy of the schema, its required keys), or the reason it is refused."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return 'its input schema is not a JSON object schema ({"type": "object", ...})'
    try:
        text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return "its input schema is not JSON"
    if len(text) > MAX_SCHEMA_CHARS:
        return f"its input schema is {len(text):,} characters (at most {MAX_SCHEMA_CHARS:,})"
    copy: dict[str, Any] = json.loads(text)
    properties = copy.setdefault("properties", {})
    required = copy.get("required", [])
    if not isinstance(properties, dict):
        return "the properties of its input schema are not an object"
    if (
        not isinstance(required, list)
        or len(required) > MAX_REQUIRED
        or not all(isinstance(key, str) and len(key) <= MAX_TOOL_NAME_CHARS for key in required)
    ):
        return "the required keys of its input schema are not a list of names"
    return copy, tuple(dict.fromkeys(required))


def _description(tool: Tool, scrubber: Scrubber) -> str:
    text = tool.description or tool.title or ""
    text = clean(text[: MAX_DESCRIPTION_CHARS + MASK_MARGIN]).strip()
    text, cut = masked_head(text, limit=MAX_DESCRIPTION_CHARS, scrubber=scrubber)
    return text.rstrip() + "…" if cut else text


def check_tools(tools: Sequence[Tool], *, scrubber: Scrubber) -> tuple[list[ListedTool], list[str]]:
    """The tools of one server's list that may be offered, and a line for each one left out."""
    kept: list[ListedTool] = []
    problems: list[str] = []
    seen: set[str] = set()
    for tool in tools:
        name = tool.name
        label = repr(clean(name[:40]))
        if not name or len(name) > MAX_TOOL_NAME_CHARS:
            problems.append(f"tool {label} left out: its name is empty or over {MAX_TOOL_NAME_CHARS} characters")
            continue
        if name in seen:
            problems.append(f"tool {label} left out: listed twice")
            continue
        seen.add(name)
        if len(kept) == MAX_TOOLS_PER_SERVER:
            problems.append(f"tool {label} left out: a server may offer at most {MAX_TOOLS_PER_SERVER} tools")
            continue
        checked = _checked_schema(tool.inputSchema)
        if isinstance(checked, str):
            problems.append(f"tool {label} left out: {checked}")
            continue
        parameters, required = checked
        kept.append(ListedTool(name, _description(tool, scrubber), parameters, required))
    return kept, problems


def exposed_name(server: str, *, tool: str) -> str:
    """`<server>__<tool>` with every character OpenAI refuses as `_`; past 64 characters, cut and ended with a
    hash of the tool's name, so that two long names stay apart."""
    name = f"{server}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(tool.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: _NAME_LIMIT - 9]}_{digest}"


def _unique(name: str, taken: set[str]) -> str:
    number = 2
    candidate = name
    while candidate in taken:
        suffix = f"_{number}"
        candidate = name[: _NAME_LIMIT - len(suffix)] + suffix
        number += 1
    return candidate


def build_catalog(
    listings: Iterable[tuple[str, Sequence[ListedTool]]],
) -> tuple[dict[str, ToolSpec], list[str]]:
    """Every server's tools by the name the model calls them, in the servers' order, and a line for each tool
    left out past `MAX_TOOLS`."""
    catalog: dict[str, ToolSpec] = {}
    problems: list[str] = []
    for server, tools in listings:
        for listed in tools:
            if len(catalog) == MAX_TOOLS:
                problems.append(f"tool {listed.tool!r} of {server} left out: at most {MAX_TOOLS} tools in all")
                continue
            name = _unique(exposed_name(server, tool=listed.tool), set(catalog))
            catalog[name] = ToolSpec(name, server, listed.tool, listed.description, listed.parameters, listed.required)
    return catalog, problems


def _describe(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def parse_arguments(arguments: str | Mapping[str, Any] | None, *, spec: ToolSpec) -> dict[str, Any]:
    """A tool call's arguments as a dict: the JSON text a model streamed (an empty text means none), or a
    mapping; raises `ArgumentsError` for anything else, or when a key the tool requires is missing."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        value: object = {}
    elif isinstance(arguments, str):
        if len(arguments) > MAX_ARGUMENT_CHARS:
            raise ArgumentsError(f"The arguments are {len(arguments):,} characters; at most {MAX_ARGUMENT_CHARS:,}.")
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ArgumentsError(
                f"The arguments are not valid JSON: {error.msg} (character {error.pos}). Send one JSON object."
            ) from None
        except (ValueError, RecursionError):
            raise ArgumentsError("The arguments are not valid JSON. Send one JSON object.") from None
    else:
        value = dict(arguments)
    if not isinstance(value, dict):
        raise ArgumentsError(f"The arguments must be a JSON object of named arguments, not {_describe(value)}.")
    missing = [key for key in spec.required if key not in value]
    if missing:
        raise ArgumentsError(f"Missing required argument(s): {', '.join(missing)}.")
    return value
