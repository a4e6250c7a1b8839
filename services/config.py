"""Every environment variable the Space reads, parsed once into a typed, frozen `Settings`.

On a Space these are its variables (public, copied on "Duplicate this Space") and its secrets (private, not
copied). A malformed value raises `ConfigError` naming the variable, so a typo stops start-up instead of
surfacing later as a confusing chat error. Secret values are never part of a message or a `repr`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from services.errors import ConfigError

__all__ = ["HF_ROUTER_URL", "BackendChoice", "Settings", "ThemeMode", "load_settings"]

BackendChoice = Literal["auto", "openai", "local"]
ThemeMode = Literal["system", "light", "dark"]

# Hugging Face's OpenAI-compatible router: used with HF_TOKEN when no OpenAI key is set.
HF_ROUTER_URL = "https://router.huggingface.co/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_HF_ROUTER_MODEL = "openai/gpt-oss-20b"
DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _get(env: Mapping[str, str], name: str) -> str | None:
    """An unset and an empty (or blank) variable mean the same: a Space shows both as 'not set'."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _as_int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}.") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ConfigError(name, f"must be at least {minimum}{upper}, got {value}.")
    return value


def _as_optional_int(env: Mapping[str, str], name: str, default: int | None, *, minimum: int) -> int | None:
    """Like `_as_int`, but 'none' (or 'unlimited') means no limit."""
    raw = _get(env, name)
    if raw is not None and raw.lower() in {"none", "unlimited"}:
        return None
    if raw is None:
        return default
    return _as_int(env, name, 0, minimum=minimum)


def _as_float(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}.") from None
    # `not (a <= x <= b)` also rejects NaN, which every comparison answers False.
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {raw!r}.")
    return value


def _as_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}.")


def _as_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}.")
    return raw.lower()


def _as_url(env: Mapping[str, str], name: str) -> str | None:
    raw = _get(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        # The value is not echoed: a URL may carry credentials (https://user:pass@host).
        raise ConfigError(name, "expected an http:// or https:// URL such as http://localhost:11434/v1.")
    return raw.rstrip("/")


def _as_credentials(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """'user:pass,user2:pass2' -> ((user, pass), (user2, pass2)); the password may itself contain ':'."""
    raw = _get(env, name)
    if raw is None:
        return ()
    pairs = []
    for number, entry in enumerate(raw.split(","), start=1):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            # The entry is not echoed: it holds a password.
            raise ConfigError(
                name, f"entry {number} is not of the form user:password (expected 'user:pass,user2:pass2')."
            )
        pairs.append((user, password))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    """The Space's configuration. Secret fields are left out of `repr` so a log line cannot leak them."""

    # Which backend answers the chat: "openai" (any OpenAI-compatible server), "local" (transformers), or
    # "auto" (openai when configured, else local). Variable: LLM_BACKEND, default "auto".
    llm_backend: BackendChoice = "auto"
    # Credentials and endpoint, read under the `openai` package's own names, plus HF_TOKEN for the HF router.
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    hf_token: str | None = field(default=None, repr=False)
    # Model name sent to the OpenAI-compatible server; None picks a default for the endpoint (see README).
    llm_model: str | None = None
    # Seconds to wait for the server to connect, and between two bytes of a reply.
    llm_connect_timeout: float = 10.0
    llm_timeout: float = 60.0
    # Retries with backoff on connection errors, 408/409/429 and 5xx, before the first token only.
    llm_max_retries: int = 2

    # Local model (Hub id or path), how many generations run at once, and the ZeroGPU lease in seconds.
    local_model: str = DEFAULT_LOCAL_MODEL
    local_concurrency: int = 1
    local_gpu_duration: int = 60

    # Defaults shown in the chat's Parameters accordion.
    system_prompt: str = "You are a helpful, concise assistant."
    default_temperature: float = 0.7
    default_max_tokens: int = 512

    # Server-side limits: the API bypasses the UI's sliders, so every call is checked against these.
    max_tokens_cap: int = 4096
    max_message_chars: int = 32_000
    max_system_prompt_chars: int = 8_000
    max_history_chars: int = 100_000
    max_tool_chars: int = 100_000

    # Queue: how many calls may wait (None: unbounded) and how many chats stream at once (None: no limit).
    queue_max_size: int | None = 256
    chat_concurrency: int | None = None
    # Jobs the app runs at once across all events (Gradio's max_threads), so many chats can stream together.
    max_jobs: int = 512
    # Streamed updates are coalesced to at most one per this many seconds (0 sends every token); None picks
    # per backend (see `stream_interval_for`). Variable: STREAM_INTERVAL_MS.
    stream_interval: float | None = None

    # Chat messages a minute per browser session / API client, and per IP address (None: no limit), and how
    # many reverse proxies stand in front of the app (the client IP is read from X-Forwarded-For through them;
    # a Space has one, so the default is 1 when SPACE_ID is set, else 0).
    rate_limit_session: int | None = 20
    rate_limit_ip: int | None = 60
    trusted_proxies: int = 0

    # Login for the whole app: ((user, password), ...); empty means a public Space. Variable: APP_AUTH.
    app_auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Colour scheme: "system" follows the browser, "light" or "dark" forces one. Variable: APP_THEME_MODE.
    theme_mode: ThemeMode = "system"

    def stream_interval_for(self, backend: str) -> float:
        """Seconds between two streamed updates: STREAM_INTERVAL_MS when set, else 40 ms for a model server and
        100 ms for the in-process model, whose generation shares the CPU with the work of every update (at
        40 ms the app kept 0.88 of model.generate's speed on 2 cores, at 100 ms 0.94: bench/local_model.py)."""
        if self.stream_interval is not None:
            return self.stream_interval
        return 0.1 if backend == "local" else 0.04

    def secrets(self) -> tuple[str, ...]:
        """The secret values in use, so that logs and error texts can be scrubbed of them."""
        passwords = tuple(password for _, password in self.app_auth)
        return tuple(s for s in (self.openai_api_key, self.hf_token, *passwords) if s)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; raises `ConfigError` naming the first malformed one."""
    env = os.environ if env is None else env
    default = Settings()
    settings = Settings(
        llm_backend=_as_choice(env, "LLM_BACKEND", "auto", ("auto", "openai", "local")),  # type: ignore[arg-type]
        openai_api_key=_get(env, "OPENAI_API_KEY"),
        openai_base_url=_as_url(env, "OPENAI_BASE_URL"),
        hf_token=_get(env, "HF_TOKEN"),
        llm_model=_get(env, "LLM_MODEL"),
        llm_connect_timeout=_as_float(
            env, "LLM_CONNECT_TIMEOUT", default.llm_connect_timeout, minimum=0.1, maximum=600
        ),
        llm_timeout=_as_float(env, "LLM_TIMEOUT", default.llm_timeout, minimum=0.1, maximum=3600),
        llm_max_retries=_as_int(env, "LLM_MAX_RETRIES", default.llm_max_retries, minimum=0, maximum=10),
        local_model=_get(env, "LOCAL_MODEL") or default.local_model,
        local_concurrency=_as_int(env, "LOCAL_CONCURRENCY", default.local_concurrency, minimum=1, maximum=64),
        local_gpu_duration=_as_int(env, "LOCAL_GPU_DURATION", default.local_gpu_duration, minimum=1, maximum=3600),
        system_prompt=env.get("SYSTEM_PROMPT", default.system_prompt),
        default_temperature=_as_float(env, "DEFAULT_TEMPERATURE", default.default_temperature, minimum=0, maximum=2),
        default_max_tokens=_as_int(env, "DEFAULT_MAX_TOKENS", default.default_max_tokens, minimum=1),
        max_tokens_cap=_as_int(env, "MAX_TOKENS_CAP", default.max_tokens_cap, minimum=1),
        max_message_chars=_as_int(env, "MAX_MESSAGE_CHARS", default.max_message_chars, minimum=1),
        max_system_prompt_chars=_as_int(env, "MAX_SYSTEM_PROMPT_CHARS", default.max_system_prompt_chars, minimum=0),
        max_history_chars=_as_int(env, "MAX_HISTORY_CHARS", default.max_history_chars, minimum=1),
        max_tool_chars=_as_int(env, "MAX_TOOL_CHARS", default.max_tool_chars, minimum=1),
        queue_max_size=_as_optional_int(env, "QUEUE_MAX_SIZE", default.queue_max_size, minimum=1),
        chat_concurrency=_as_optional_int(env, "CHAT_CONCURRENCY", default.chat_concurrency, minimum=1),
        max_jobs=_as_int(env, "MAX_CONCURRENT_JOBS", default.max_jobs, minimum=1, maximum=10_000),
        stream_interval=(
            None
            if _get(env, "STREAM_INTERVAL_MS") is None
            else _as_int(env, "STREAM_INTERVAL_MS", 0, minimum=0, maximum=5000) / 1000
        ),
        rate_limit_session=_as_optional_int(env, "RATE_LIMIT_PER_SESSION", default.rate_limit_session, minimum=1),
        rate_limit_ip=_as_optional_int(env, "RATE_LIMIT_PER_IP", default.rate_limit_ip, minimum=1),
        trusted_proxies=_as_int(env, "TRUSTED_PROXIES", 1 if _get(env, "SPACE_ID") else 0, minimum=0, maximum=10),
        app_auth=_as_credentials(env, "APP_AUTH"),
        theme_mode=_as_choice(env, "APP_THEME_MODE", "system", ("system", "light", "dark")),  # type: ignore[arg-type]
    )
    # Cross-field rules: a default the server would itself reject is a configuration error, not a user's.
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
    return settings
