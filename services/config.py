"""Every environment variable the Space reads, in one declarative table, parsed once into a frozen `Settings`.

On a Space these are its variables (public, copied on "Duplicate this Space") and its secrets (private, not
copied). `VARIABLES` is the single list: `load_settings` parses from it, README's Configuration table is checked
against it, the tests clear the environment with it, and the bench and the deploy take their lists from it. A
malformed value raises `ConfigError` naming the variable; secret values are never part of a message or a `repr`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

from services.errors import ConfigError

__all__ = [
    "DEFAULT_GPU_LOCAL_MODEL",
    "DEFAULT_HF_ROUTER_MODEL",
    "DEFAULT_LOCAL_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "HF_ROUTER_URL",
    "MCP_SERVER_NAME",
    "VARIABLES",
    "AnonymousChat",
    "BackendChoice",
    "Settings",
    "SignIn",
    "ThemeMode",
    "Variable",
    "load_settings",
]

BackendChoice = Literal["auto", "openai", "local"]
ThemeMode = Literal["system", "light", "dark"]
SignIn = Literal["auto", "on", "off"]
# What a visitor who has not signed in gets: the owner's backend (under the rate limits), the local model, or
# "sign in to chat".
AnonymousChat = Literal["owner", "local", "signin"]

# Hugging Face's OpenAI-compatible router: used with HF_TOKEN when no OpenAI key is set, and for signed-in visitors.
HF_ROUTER_URL = "https://router.huggingface.co/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_HF_ROUTER_MODEL = "openai/gpt-oss-20b"
# The in-process model when LOCAL_MODEL is unset: on a CPU, one that answers at reading speed on two cores; on a
# GPU (ZeroGPU included), one worth a visitor's GPU quota. README, "Local model", says why these two.
DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
DEFAULT_GPU_LOCAL_MODEL = "Qwen/Qwen3-4B-Instruct-2507"


@dataclass(frozen=True)
class Settings:
    """The Space's configuration; `VARIABLES` says which variable sets each field. Secrets stay out of `repr`."""

    llm_backend: BackendChoice = "auto"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    hf_token: str | None = field(default=None, repr=False)
    llm_model: str | None = None
    llm_models: tuple[str, ...] = ()
    llm_connect_timeout: float = 10.0  # seconds
    llm_timeout: float = 60.0  # seconds between two pieces of a reply (comments and empty chunks are no piece)
    reply_timeout: float = 300.0  # seconds one reply may take in all, whatever the backend
    llm_max_retries: int = 2
    # Models of the owner's server that take images, besides those its /models listing says so of; ("*",): all.
    vision_models: tuple[str, ...] = (DEFAULT_OPENAI_MODEL,)

    local_model: str | None = None  # None: DEFAULT_GPU_LOCAL_MODEL on a GPU, else DEFAULT_LOCAL_MODEL
    local_concurrency: int = 1
    local_gpu_duration: int = 60  # seconds: the longest ZeroGPU lease one reply may ask for

    sign_in: SignIn = "auto"
    anonymous_chat: AnonymousChat = "owner"
    hf_router_url: str = HF_ROUTER_URL
    hf_router_models: tuple[str, ...] = ()
    oauth_client_secret: str | None = field(default=None, repr=False)

    system_prompt: str = "You are a helpful, concise assistant."
    default_temperature: float = 0.7
    default_max_tokens: int = 512

    max_tokens_cap: int = 4096
    max_message_chars: int = 32_000
    max_system_prompt_chars: int = 8_000
    max_history_chars: int = 100_000
    max_history_messages: int = 200
    max_tool_chars: int = 100_000

    queue_max_size: int | None = 256
    chat_concurrency: int | None = None
    max_jobs: int = 512
    stream_interval: float | None = None  # seconds; None picks per backend (`stream_interval_for`)

    rate_limit_session: int | None = 20
    rate_limit_ip: int | None = 60
    # Tokens a UTC day that callers who have not signed in may spend on the owner's account: together, and per
    # address (an IPv6 address counted by its /64).
    owner_daily_tokens: int | None = 2_000_000
    daily_tokens_per_ip: int | None = 100_000
    usage_log_interval: float = 3600.0  # seconds between two lines of who paid for tokens, in the log
    trusted_proxies: int = 0
    login_attempts: int = 10  # failed logins a minute per address before Retry-After

    max_request_bytes: int = 1_048_576
    max_upload_bytes: int = 1_048_576
    max_attachment_bytes: int = 10_485_760
    max_attachments: int = 5
    max_document_chars: int = 50_000
    max_pdf_pages: int = 100
    attachment_timeout: float = 15.0  # seconds one file may take to be read
    attachment_workers: int = 2
    attachment_memory: int = 67_108_864  # bytes of attachments' content held for later turns, all sessions together
    session_capacity: int = 1_000
    session_ttl: float = 3600.0  # seconds an idle session's server-side data is kept
    # Per address block (an IPv4 address, an IPv6 /64), a minute unless said otherwise; None: no limit.
    api_requests_per_minute: int | None = 600
    uploads_per_minute: int | None = 10
    new_sessions_per_minute: int | None = 30
    sessions_per_address: int | None = 100  # alive at once
    unread_results_per_session: int = 500  # messages
    unread_results_bytes: int = 32 * 1_048_576  # all sessions together; a session may hold a quarter
    unread_results_ttl: float = 300.0  # seconds
    upload_cache_bytes: int = 100 * 1_048_576

    history_secret: str | None = field(default=None, repr=False)
    history_conversation_chars: int = 200_000
    history_total_chars: int = 2_000_000

    # (name, url) of each MCP server whose tools the chat model may call, and (name, ((header, value), ...)) of
    # those given headers of their own.
    mcp_servers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    mcp_headers: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=(), repr=False)
    tool_timeout: float = 30.0  # seconds per tool call
    max_tool_steps: int = 8  # model rounds one reply may take while it calls tools
    # Models of the owner's server that call tools, besides those its /models listing says so of; ("*",): all.
    tool_models: tuple[str, ...] = (DEFAULT_OPENAI_MODEL,)
    max_tool_result_chars: int = 20_000
    mcp_refresh: float = 300.0  # seconds between two readings of a server's tools

    app_auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    theme_mode: ThemeMode = "system"
    mcp_server: bool = True
    space_id: str | None = None

    def stream_interval_for(self, backend: str) -> float:
        """Seconds between two streamed updates: STREAM_INTERVAL_MS when set, else 40 ms for a model server and
        100 ms for the in-process model, whose generation shares the CPU with the work of every update."""
        if self.stream_interval is not None:
            return self.stream_interval
        return 0.1 if backend == "local" else 0.04

    @property
    def largest_upload(self) -> int:
        """Bytes the upload route accepts in one file: an attachment's limit, or MAX_UPLOAD_BYTES for the rest
        (the chat's JSON import checks its own)."""
        attachments = self.max_attachment_bytes if self.max_attachments else 0
        return max(self.max_upload_bytes, attachments)

    def secrets(self) -> tuple[str, ...]:
        """The secret values in use, so that logs and error texts can be scrubbed of them."""
        passwords = tuple(password for _, password in self.app_auth)
        values = (self.openai_api_key, self.hf_token, self.history_secret, self.oauth_client_secret, *passwords)
        return tuple(value for value in (*values, *self._tool_secrets()) if value)

    def _tool_secrets(self) -> tuple[str, ...]:
        """The MCP servers' URLs (a key may sit in the path or the query) and their query values, and each header
        value with its last word alone (the token of `Bearer <token>`), which a server may echo without the rest."""
        values: list[str] = []
        for _, url in self.mcp_servers:
            values += [url, *(value for _, value in parse_qsl(urlsplit(url).query))]
        for _, headers in self.mcp_headers:
            for _, value in headers:
                values += [value, value.split()[-1] if value.split() else ""]
        return tuple(values)

    @property
    def on_space(self) -> bool:
        return self.space_id is not None


# PARSERS: each takes the stripped raw value and returns the typed one, or raises ValueError with the reason.

Parser = Callable[[str], Any]


def _text(raw: str) -> str:
    return raw


def _integer(minimum: int, maximum: int | None = None) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}.") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise ValueError(f"must be at least {minimum}{upper}, got {value}.")
        return value

    return parse


def _limit(minimum: int) -> Parser:
    """A whole number, or 'none' (also 'unlimited') for no limit."""
    whole = _integer(minimum)

    def parse(raw: str) -> int | None:
        return None if raw.lower() in {"none", "unlimited"} else whole(raw)

    return parse


def _number_between(minimum: float, maximum: float) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}.") from None
        # `not (a <= x <= b)` also rejects NaN, which every comparison answers False.
        if not minimum <= value <= maximum or math.isinf(value):
            raise ValueError(f"must be between {minimum:g} and {maximum:g}, got {raw!r}.")
        return value

    return parse


def _milliseconds(maximum: int) -> Parser:
    whole = _integer(0, maximum)
    return lambda raw: whole(raw) / 1000


def _minutes(minimum: int, maximum: int) -> Parser:
    whole = _integer(minimum, maximum)
    return lambda raw: whole(raw) * 60.0


def _megabytes(minimum: int, maximum: int) -> Parser:
    whole = _integer(minimum, maximum)
    return lambda raw: whole(raw) * 1_048_576


def _flag(raw: str) -> bool:
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}.")


def _choice(choices: tuple[str, ...]) -> Parser:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}.")
        return raw.lower()

    return parse


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        # The value is not echoed: a URL may carry credentials (https://user:pass@host).
        raise ValueError("expected an http:// or https:// URL such as http://localhost:11434/v1.")
    return raw.rstrip("/")


def _names(raw: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'): a comma-separated list, blanks and repeats dropped, order kept."""
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if not names:
        raise ValueError("expected a comma-separated list of names.")
    return names


def _credentials(raw: str) -> tuple[tuple[str, str], ...]:
    """'user:pass,user2:pass2' -> ((user, pass), (user2, pass2)); the password may itself contain ':'."""
    pairs = []
    for number, entry in enumerate(raw.split(","), start=1):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            # The entry is not echoed: it holds a password.
            raise ValueError(f"entry {number} is not of the form user:password (expected 'user:pass,user2:pass2').")
        pairs.append((user, password))
    return tuple(pairs)


# A server's name prefixes its tools' names, which models allow up to 64 characters of [A-Za-z0-9_-].
MCP_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,23}")
_NAMED_URL = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*)=(.*)", re.S)
# RFC 9110 token characters, and a value of visible ASCII, spaces and tabs (no CR or LF to forge a header with).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,8192}")
# Headers the MCP transport sets itself, or that would change what the request is.
_RESERVED_HEADERS = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "host",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "transfer-encoding",
    }
)


def _server_name_from(url: str) -> str:
    """'https://mcp.example.com:8443/mcp' -> 'mcp_example_com_8443': a name for a server given without one."""
    parts = urlsplit(url)
    host = re.sub(r"[^a-z0-9]+", "_", (parts.hostname or "").lower()).strip("_")
    name = f"{host}_{parts.port}" if parts.port else host
    return name[:24].rstrip("_-") or "server"


def _mcp_servers(raw: str) -> tuple[tuple[str, str], ...]:
    """'search=https://a.example/mcp, https://b.example/mcp' -> (('search', ...), ('b_example', ...)).

    An entry is `name=url` or a bare URL (named after its host). No URL is echoed in a message: one may carry a
    key in its path or query.
    """
    servers: list[tuple[str, str]] = []
    for number, entry in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not entry:
            continue
        named = _NAMED_URL.fullmatch(entry)
        name, url = (named.group(1), named.group(2).strip()) if named else (None, entry)
        if name is not None and not MCP_SERVER_NAME.fullmatch(name):
            raise ValueError(
                f"entry {number}: the name {name[:40]!r} must be 1 to 24 letters, digits, '_' or '-', starting "
                "with a letter or digit."
            )
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"entry {number} is not an http:// or https:// URL (expected name=https://host/mcp).")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"entry {number} has user:password@ in its URL: put credentials in MCP_HEADERS.")
        name = name or _server_name_from(url)
        if any(name == seen for seen, _ in servers):
            raise ValueError(f"two servers are named {name!r}: give each its own name (name=url).")
        servers.append((name, url))
    if not servers:
        raise ValueError("expected comma-separated URLs, each optionally named: name=https://host/mcp.")
    return tuple(servers)


def _mcp_headers(raw: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """'{"search": {"Authorization": "Bearer ..."}}' -> (('search', (('Authorization', 'Bearer ...'),)),).

    Messages name servers and headers, never a value.
    """
    if len(raw) > 65_536:
        raise ValueError(f"is {len(raw):,} characters; at most 65,536.")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:
        where = f" at character {error.pos}" if isinstance(error, json.JSONDecodeError) else ""
        raise ValueError(f'is not valid JSON{where}; expected {{"server name": {{"Header-Name": "value"}}}}.') from None
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object: {"server name": {"Header-Name": "value"}}.')
    servers: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for server, headers in value.items():
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError(f"the headers of {server[:40]!r} must be a JSON object of strings.")
        for name, header_value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name[:40]!r} (for {server[:40]!r}) is not a header name that may be set.")
            if not _HEADER_VALUE.fullmatch(header_value):
                raise ValueError(
                    f"the value of {name!r} for {server[:40]!r} must be printable ASCII on one line, at most "
                    "8,192 characters."
                )
        servers.append((server, tuple(headers.items())))
    return tuple(servers)


def _port(raw: str) -> int:
    port: int = _integer(1, 65535)(raw)
    return port


# THE TABLE

Section = Literal["backend", "sign-in", "chat", "tools", "limits", "history", "access", "platform"]


@dataclass(frozen=True)
class Variable:
    """One environment variable: where it lands in `Settings` and what README says of it.

    `field` is None for variables another package reads (Gradio's own), listed so that they are documented,
    validated at start-up and cleared by the tests. `default` is how README shows the default when it is not a
    plain value of the field (computed, or Gradio's).
    """

    name: str
    field: str | None
    parse: Parser
    meaning: str
    section: Section
    secret: bool = False
    default: str | None = None


VARIABLES: tuple[Variable, ...] = (
    # Backend
    Variable(
        "LLM_BACKEND",
        "llm_backend",
        _choice(get_args(BackendChoice)),
        (
            "`openai` (an OpenAI-compatible server), `local` (the in-process model), or `auto`: `openai` when"
            " `OPENAI_API_KEY`, `OPENAI_BASE_URL` or `HF_TOKEN` is set, else `local`."
        ),
        "backend",
    ),
    Variable(
        "OPENAI_API_KEY",
        "openai_api_key",
        _text,
        "Key for OpenAI, or for the server at `OPENAI_BASE_URL`.",
        "backend",
        secret=True,
    ),
    Variable(
        "OPENAI_BASE_URL",
        "openai_base_url",
        _url,
        (
            "Any OpenAI-compatible server, e.g. `http://localhost:11434/v1` (Ollama), "
            "`http://localhost:8000/v1` (vLLM). Alone, it needs no key."
        ),
        "backend",
        default="OpenAI",
    ),
    Variable(
        "HF_TOKEN",
        "hf_token",
        _text,
        (
            "With no OpenAI key, the owner's chats go through Hugging Face's router (`HF_ROUTER_URL`). Sent "
            "only to Hugging Face hosts and `HF_ROUTER_URL`."
        ),
        "backend",
        secret=True,
    ),
    Variable(
        "LLM_MODEL",
        "llm_model",
        _text,
        "One model for the owner's endpoint (the same as a one-name `LLM_MODELS`).",
        "backend",
        default="see `LLM_MODELS`",
    ),
    Variable(
        "LLM_MODELS",
        "llm_models",
        _names,
        (
            "Models of the owner's endpoint offered in the model picker, comma-separated, the first the "
            "default; router ids may carry a provider suffix (`:fastest`, `:cheapest`, `:<provider>`). "
            "Default: `gpt-4o-mini` on OpenAI, `openai/gpt-oss-20b` on the router, the first model a custom "
            "`OPENAI_BASE_URL` lists."
        ),
        "backend",
        default="see meaning",
    ),
    Variable(
        "LLM_TIMEOUT",
        "llm_timeout",
        _number_between(0.1, 3600),
        (
            "Seconds to wait for the server between two pieces of a reply; keep-alive comments and empty chunks "
            "do not count as pieces."
        ),
        "backend",
    ),
    Variable(
        "REPLY_TIMEOUT",
        "reply_timeout",
        _number_between(1, 86_400),
        (
            "Seconds one reply may take in all, from the request to its last piece, for every backend; past it "
            "the reply ends with what arrived and says why. 300 fits a reply of 4,096 tokens from a server "
            "writing 15 tokens a second."
        ),
        "backend",
    ),
    Variable(
        "LLM_CONNECT_TIMEOUT",
        "llm_connect_timeout",
        _number_between(0.1, 600),
        "Seconds to wait for a connection to the server.",
        "backend",
    ),
    Variable(
        "LLM_MAX_RETRIES",
        "llm_max_retries",
        _integer(0, 10),
        "Retries with backoff on refused connections, 408/409/429 and 5xx, always before the first token.",
        "backend",
    ),
    Variable(
        "VISION_MODELS",
        "vision_models",
        _names,
        (
            "Models of the owner's server that take images, comma-separated (`*`: all), besides those its "
            "`/models` listing marks so (`architecture.input_modalities`, as Hugging Face's router does); an "
            "image for any other model is refused before any request."
        ),
        "backend",
        default="`gpt-4o-mini`",
    ),
    Variable(
        "LOCAL_MODEL",
        "local_model",
        _text,
        "Hub id or local path of the in-process model.",
        "backend",
        default=f"`{DEFAULT_GPU_LOCAL_MODEL}` on a GPU (ZeroGPU included), `{DEFAULT_LOCAL_MODEL}` on a CPU",
    ),
    Variable(
        "LOCAL_CONCURRENCY",
        "local_concurrency",
        _integer(1, 64),
        "Local generations that run at once; others wait in the queue and see their position.",
        "backend",
    ),
    Variable(
        "LOCAL_GPU_DURATION",
        "local_gpu_duration",
        _integer(1, 3600),
        (
            "The longest ZeroGPU lease one local reply may ask for, in seconds; each asks for what its prompt and"
            " `max_tokens` need at the speed measured so far (at least 10 s)."
        ),
        "backend",
    ),
    # Sign-in
    Variable(
        "SIGN_IN",
        "sign_in",
        _choice(get_args(SignIn)),
        (
            "Sign in with Hugging Face: `auto` offers it on a Space whose front-matter has `hf_oauth: true`, "
            "and elsewhere only with a safe `OAUTH_CLIENT_SECRET`; `off` never; `on` insists (start-up stops "
            "when it cannot be offered)."
        ),
        "sign-in",
    ),
    Variable(
        "ANONYMOUS_CHAT",
        "anonymous_chat",
        _choice(get_args(AnonymousChat)),
        (
            "What visitors who have not signed in get: `owner` (the owner's backend, under the rate limits), "
            "`local` (the in-process model), or `signin` (they are asked to sign in)."
        ),
        "sign-in",
    ),
    Variable(
        "HF_ROUTER_URL",
        "hf_router_url",
        _url,
        (
            "The OpenAI-compatible router that signed-in visitors chat through on their own token; the owner's "
            "`HF_TOKEN` goes there too. Point it only at Hugging Face's router or a gateway you run."
        ),
        "sign-in",
    ),
    Variable(
        "HF_ROUTER_MODELS",
        "hf_router_models",
        _names,
        (
            "Models offered to signed-in visitors, comma-separated, the first the default. Default: "
            "`LLM_MODELS` when the owner's endpoint is the router, else `openai/gpt-oss-20b`."
        ),
        "sign-in",
        default="see meaning",
    ),
    Variable(
        "OAUTH_CLIENT_SECRET",
        "oauth_client_secret",
        _text,
        (
            "Gradio's own: signs the sign-in session cookie. A Space sets it; elsewhere sign-in is offered "
            "only when it is set to 32 or more characters."
        ),
        "sign-in",
        secret=True,
        default="set by Spaces",
    ),
    # Chat
    Variable(
        "SYSTEM_PROMPT",
        "system_prompt",
        _text,
        "Default system prompt.",
        "chat",
    ),
    Variable(
        "DEFAULT_TEMPERATURE",
        "default_temperature",
        _number_between(0, 2),
        "Default temperature, from 0 to 2 (0 is greedy).",
        "chat",
    ),
    Variable(
        "DEFAULT_MAX_TOKENS",
        "default_max_tokens",
        _integer(1),
        "Default max tokens of a reply.",
        "chat",
    ),
    Variable(
        "MAX_TOKENS_CAP",
        "max_tokens_cap",
        _integer(1),
        "Highest `max_tokens` a caller may ask for.",
        "chat",
    ),
    Variable(
        "MAX_MESSAGE_CHARS",
        "max_message_chars",
        _integer(1),
        "Longest chat message accepted.",
        "chat",
    ),
    Variable(
        "MAX_SYSTEM_PROMPT_CHARS",
        "max_system_prompt_chars",
        _integer(0),
        "Longest system prompt accepted.",
        "chat",
    ),
    Variable(
        "MAX_HISTORY_CHARS",
        "max_history_chars",
        _integer(1),
        "Conversation sent to the model; older turns are left out first, with a warning.",
        "chat",
    ),
    Variable(
        "MAX_HISTORY_MESSAGES",
        "max_history_messages",
        _integer(2, 10_000),
        (
            "Most messages a conversation may hold (a client's history is refused past it); older turns are "
            "left out of what the model sees past `MAX_HISTORY_CHARS`."
        ),
        "chat",
    ),
    Variable(
        "MAX_TOOL_CHARS",
        "max_tool_chars",
        _integer(1),
        "Longest text the text tools accept.",
        "chat",
    ),
    # Tools of MCP servers
    Variable(
        "MCP_SERVERS",
        "mcp_servers",
        _mcp_servers,
        (
            "MCP servers (streamable HTTP) whose tools the chat model may call, comma-separated, each "
            "`name=https://host/mcp` or a bare URL (named after its host); a name prefixes its tools' names. A "
            "server that is down is left out (and retried) and never stops the Space. A secret because a URL "
            "may hold a key; credentials go in `MCP_HEADERS`, never in `user:password@`."
        ),
        "tools",
        secret=True,
    ),
    Variable(
        "MCP_HEADERS",
        "mcp_headers",
        _mcp_headers,
        (
            'Headers for each server of `MCP_SERVERS`, by name, as JSON: `{"search": {"Authorization": '
            '"Bearer ..."}}`. Each server receives its own headers and nothing else of the Space\'s or a '
            "visitor's."
        ),
        "tools",
        secret=True,
    ),
    Variable(
        "MAX_TOOL_STEPS",
        "max_tool_steps",
        _integer(1, 100),
        (
            "Model rounds one reply may take while it calls tools (each round: the model asks, the tools answer); "
            "past it the reply ends with a notice."
        ),
        "tools",
    ),
    Variable(
        "TOOL_MODELS",
        "tool_models",
        _names,
        (
            "Models of the owner's server that call tools, comma-separated (`*`: all), besides those its "
            "`/models` listing marks so (a provider's `supports_tools`, as Hugging Face's router does); other "
            "models are offered no tools."
        ),
        "tools",
        default="`gpt-4o-mini`",
    ),
    Variable(
        "TOOL_TIMEOUT",
        "tool_timeout",
        _number_between(0.1, 600),
        "Seconds one tool call may take; past it the model is told it timed out.",
        "tools",
    ),
    Variable(
        "MAX_TOOL_RESULT_CHARS",
        "max_tool_result_chars",
        _integer(1_000, 200_000),
        "Longest tool result passed to the model and shown; the rest is cut, with a notice.",
        "tools",
    ),
    Variable(
        "MCP_REFRESH_MINUTES",
        "mcp_refresh",
        _minutes(1, 24 * 60),
        (
            "Minutes between two readings of each server's tool list (a server that announces a change is "
            "read at once; one that is down is retried sooner)."
        ),
        "tools",
        default="`5`",
    ),
    Variable(
        "QUEUE_MAX_SIZE",
        "queue_max_size",
        _limit(1),
        'Calls that may wait in the queue (`none`: no limit); past it callers get a "queue full" error.',
        "limits",
    ),
    Variable(
        "CHAT_CONCURRENCY",
        "chat_concurrency",
        _limit(1),
        "Chats that stream at once for a model server (`none`: no limit).",
        "limits",
        default="none",
    ),
    Variable(
        "MAX_CONCURRENT_JOBS",
        "max_jobs",
        _integer(1, 10_000),
        "Jobs the app runs at once, all events together (Gradio's `max_threads`, 40 by default).",
        "limits",
    ),
    Variable(
        "STREAM_INTERVAL_MS",
        "stream_interval",
        _milliseconds(5000),
        (
            "Streamed updates are merged to at most one per this many ms (`0`: one per token). The in-process"
            " model shares the CPU with the work of every update, so it gets fewer."
        ),
        "limits",
        default="`40`, or `100` with the local model",
    ),
    # Abuse limits
    Variable(
        "RATE_LIMIT_PER_SESSION",
        "rate_limit_session",
        _limit(1),
        "Chat messages a minute per browser session or API client (`none`: no limit).",
        "limits",
    ),
    Variable(
        "RATE_LIMIT_PER_IP",
        "rate_limit_ip",
        _limit(1),
        "Chat messages a minute per IP address (`none`: no limit).",
        "limits",
    ),
    Variable(
        "OWNER_DAILY_TOKENS",
        "owner_daily_tokens",
        _limit(1),
        (
            "Tokens (prompt and reply) a UTC day that everyone who has not signed in may spend on the owner's "
            "account together, through the page, the API and MCP; past it they are asked to sign in (`none`: no "
            "limit). See [The owner's bill](#the-owners-bill)."
        ),
        "limits",
    ),
    Variable(
        "DAILY_TOKENS_PER_IP",
        "daily_tokens_per_ip",
        _limit(1),
        "The same per address, an IPv6 address counted by its /64 (`none`: no limit).",
        "limits",
    ),
    Variable(
        "USAGE_LOG_SECONDS",
        "usage_log_interval",
        _number_between(1, 86_400),
        (
            "Seconds between two lines in the log that say who paid for the tokens since the line before (the "
            "owner, signed-in visitors, nobody for the local model), how many chats the daily budgets refused, and "
            "the public's spend today; a line is written with the first reply or refusal past that time."
        ),
        "limits",
    ),
    Variable(
        "TRUSTED_PROXIES",
        "trusted_proxies",
        _integer(0, 10),
        (
            "Reverse proxies in front of the app; the client IP is read from `X-Forwarded-For` through "
            "exactly that many."
        ),
        "limits",
        default="`1` on a Space, else `0`",
    ),
    Variable(
        "LOGIN_ATTEMPTS_PER_MINUTE",
        "login_attempts",
        _integer(1, 10_000),
        ("Failed `APP_AUTH` logins a minute per IP address; past it the login answers 429 with `Retry-After`."),
        "limits",
    ),
    Variable(
        "MAX_REQUEST_BYTES",
        "max_request_bytes",
        _integer(16_384, 1 << 30),
        "Largest request body accepted (uploads aside); bigger ones get 413 before any work.",
        "limits",
    ),
    Variable(
        "MAX_UPLOAD_BYTES",
        "max_upload_bytes",
        _integer(1024, 1 << 30),
        "Largest file `/gradio_api/upload` accepts (Gradio's `max_file_size`).",
        "limits",
    ),
    Variable(
        "MAX_ATTACHMENT_BYTES",
        "max_attachment_bytes",
        _integer(1024, 1 << 30),
        "Largest file attached to a chat message (an image or a document); bigger ones are refused unread.",
        "limits",
    ),
    Variable(
        "MAX_ATTACHMENTS",
        "max_attachments",
        _integer(0, 100),
        "Files attached to one chat message (`0`: attachments off).",
        "limits",
    ),
    Variable(
        "MAX_DOCUMENT_CHARS",
        "max_document_chars",
        _integer(1_000, 10_000_000),
        "Characters of one attached document the model reads; the rest is left out, with a notice.",
        "limits",
    ),
    Variable(
        "MAX_PDF_PAGES",
        "max_pdf_pages",
        _integer(1, 10_000),
        "Pages of an attached PDF that are read; the rest are left out, with a notice.",
        "limits",
    ),
    Variable(
        "ATTACHMENT_TIMEOUT",
        "attachment_timeout",
        _number_between(1, 600),
        ("Seconds one attached file may take to be read; past it the reading process is stopped and the file refused."),
        "limits",
    ),
    Variable(
        "ATTACHMENT_MEMORY_BYTES",
        "attachment_memory",
        _integer(0, 1 << 34),
        (
            "What the model reads of earlier attachments (images, documents' text), held in memory for the turns "
            "after, all sessions together; past it the least recently used are let go, and the model is told."
        ),
        "limits",
    ),
    Variable(
        "ATTACHMENT_WORKERS",
        "attachment_workers",
        _integer(1, 32),
        "Processes that read attached files, each one file at a time; other files wait for a free one.",
        "limits",
    ),
    Variable(
        "SESSION_CAPACITY",
        "session_capacity",
        _integer(10, 1_000_000),
        (
            "Sessions whose data is kept in memory (Gradio's `state_session_capacity`, and the app's own); "
            "the oldest go first."
        ),
        "limits",
    ),
    Variable(
        "SESSION_TTL_MINUTES",
        "session_ttl",
        _minutes(1, 7 * 24 * 60),
        "Minutes an idle session's server-side data (the `/chat` conversation, the counter) is kept.",
        "limits",
        default="`60`",
    ),
    Variable(
        "API_REQUESTS_PER_MINUTE",
        "api_requests_per_minute",
        _limit(10),
        (
            "Requests a minute per IP address (an IPv6 /64 counts as one), bursts of as many included, to "
            "everything but static files: the page's events, the API, MCP (`none`: no limit)."
        ),
        "limits",
    ),
    Variable(
        "UPLOADS_PER_MINUTE",
        "uploads_per_minute",
        _limit(1),
        "Uploads to `/gradio_api/upload` a minute per IP address (an IPv6 /64 counts as one; `none`: no limit).",
        "limits",
    ),
    Variable(
        "NEW_SESSIONS_PER_MINUTE",
        "new_sessions_per_minute",
        _limit(1),
        (
            "Sessions (page loads, API clients' session hashes) one IP address may start a minute; past it, 429 "
            "(`none`: no limit)."
        ),
        "limits",
    ),
    Variable(
        "SESSIONS_PER_ADDRESS",
        "sessions_per_address",
        _limit(1),
        (
            "Sessions one IP address may hold at once (each until `SESSION_TTL_MINUTES` unused), so that no "
            "address can push others' sessions out of `SESSION_CAPACITY` (`none`: no limit)."
        ),
        "limits",
    ),
    Variable(
        "UNREAD_RESULTS_PER_SESSION",
        "unread_results_per_session",
        _integer(10, 1_000_000),
        "Results and updates a session may leave unread; past it, its unread results are let go.",
        "limits",
    ),
    Variable(
        "UNREAD_RESULTS_MB",
        "unread_results_bytes",
        _megabytes(1, 1 << 20),
        "MB of results all callers together may leave unread (a session at most a quarter), oldest let go first.",
        "limits",
        default="`32`",
    ),
    Variable(
        "UNREAD_RESULTS_SECONDS",
        "unread_results_ttl",
        _number_between(1, 86_400),
        "Seconds a result is kept unread before it is let go.",
        "limits",
    ),
    Variable(
        "UPLOAD_CACHE_MB",
        "upload_cache_bytes",
        _megabytes(1, 1 << 20),
        "MB Gradio's upload cache may hold; past it, the oldest files are deleted.",
        "limits",
        default="`100`",
    ),
    # History
    Variable(
        "HISTORY_SECRET",
        "history_secret",
        _text,
        (
            "Signs the conversations kept in visitors' browsers, so they survive restarts and cannot be "
            "tampered with. Unset, a random one is made per start: saved chats then do not survive a restart."
        ),
        "history",
        secret=True,
    ),
    Variable(
        "HISTORY_CONVERSATION_CHARS",
        "history_conversation_chars",
        _integer(1_000, 2_000_000),
        (
            "Most characters of one conversation kept in the browser; older messages are left out of the "
            "stored copy, with a notice."
        ),
        "history",
    ),
    Variable(
        "HISTORY_TOTAL_CHARS",
        "history_total_chars",
        _integer(10_000, 4_000_000),
        (
            "Budget of all stored conversations together (browsers allow about 5 million); the oldest are "
            "dropped first, with a notice."
        ),
        "history",
    ),
    # Access
    Variable(
        "APP_AUTH",
        "app_auth",
        _credentials,
        "`user:password,user2:password2` puts the whole app behind a login; unset, the Space is public.",
        "access",
        secret=True,
    ),
    Variable(
        "APP_THEME_MODE",
        "theme_mode",
        _choice(get_args(ThemeMode)),
        "`light` or `dark` forces that colour scheme (via `?__theme=`); `system` follows the browser.",
        "access",
    ),
    Variable(
        "GRADIO_MCP_SERVER",
        "mcp_server",
        _flag,
        (
            "Gradio's own, on by default here: serves the tools to MCP clients at `/gradio_api/mcp/`. `false`"
            " turns it off."
        ),
        "access",
    ),
    # Platform
    Variable(
        "SPACE_ID",
        "space_id",
        _text,
        "Set by Spaces: tells the app it runs on a Space (for `TRUSTED_PROXIES` and sign-in).",
        "platform",
        default="set by Spaces",
    ),
    Variable(
        "GRADIO_SERVER_NAME",
        None,
        _text,
        "Gradio's own: interface to bind (a Space sets `0.0.0.0`).",
        "platform",
        default="`127.0.0.1`",
    ),
    Variable(
        "GRADIO_SERVER_PORT",
        None,
        _port,
        "Gradio's own: port to listen on.",
        "platform",
        default="`7860`",
    ),
)

_BY_FIELD = {variable.field: variable for variable in VARIABLES if variable.field}


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """An unset and an empty (or blank) variable mean the same: a Space shows both as 'not set'."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _parse(variable: Variable, raw: str) -> Any:
    try:
        return variable.parse(raw)
    except ValueError as error:
        raise ConfigError(variable.name, str(error)) from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable of `VARIABLES`; raises `ConfigError` naming the first malformed one."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        # SYSTEM_PROMPT may be set to blank on purpose (no system prompt), so it is read as it is.
        raw = env.get(variable.name) if variable.name == "SYSTEM_PROMPT" else _raw(env, variable.name)
        if raw is None:
            continue
        value = _parse(variable, raw)
        if variable.field is not None:
            values[variable.field] = value
    if "trusted_proxies" not in values:
        # A Space puts one reverse proxy in front of the app.
        values["trusted_proxies"] = 1 if values.get("space_id") else 0
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """Rules across variables: a default the server would itself reject is a configuration error, not a user's."""
    if settings.default_max_tokens > settings.max_tokens_cap:
        raise ConfigError(
            "DEFAULT_MAX_TOKENS",
            f"must not exceed MAX_TOKENS_CAP ({settings.max_tokens_cap}), got {settings.default_max_tokens}.",
        )
    if len(settings.system_prompt) > settings.max_system_prompt_chars:
        raise ConfigError(
            "SYSTEM_PROMPT",
            f"is {len(settings.system_prompt)} characters; MAX_SYSTEM_PROMPT_CHARS allows "
            f"{settings.max_system_prompt_chars}.",
        )
    if settings.llm_model and settings.llm_models and settings.llm_model != settings.llm_models[0]:
        raise ConfigError(
            "LLM_MODEL", "is set together with LLM_MODELS: set only LLM_MODELS (its first is the default)."
        )
    names = {name for name, _ in settings.mcp_servers}
    for name, _ in settings.mcp_headers:
        if name not in names:
            raise ConfigError("MCP_HEADERS", f"names {name[:40]!r}, which is not a server of MCP_SERVERS.")
    if settings.history_total_chars < settings.history_conversation_chars:
        raise ConfigError(
            "HISTORY_TOTAL_CHARS",
            f"must be at least HISTORY_CONVERSATION_CHARS ({settings.history_conversation_chars:,}), got "
            f"{settings.history_total_chars:,}.",
        )
    # A stored conversation comes back in one request: in UTF-8 and JSON, a character takes at most 4 bytes.
    needed = 4 * settings.history_conversation_chars + 65_536
    if settings.max_request_bytes < needed:
        raise ConfigError(
            "MAX_REQUEST_BYTES",
            f"must be at least {needed:,} so that a stored conversation of HISTORY_CONVERSATION_CHARS "
            f"({settings.history_conversation_chars:,}) can be reopened, got {settings.max_request_bytes:,}.",
        )


def _check_table() -> None:
    """Every Settings field is set by exactly one variable (or a rule): a field added without its row fails here."""
    names = [field.name for field in fields(Settings)]
    missing = sorted(set(names) - set(_BY_FIELD))
    if missing:
        raise RuntimeError(f"Settings fields without a variable in VARIABLES: {missing}")


_check_table()
