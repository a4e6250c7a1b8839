"""Whether this start of the app can offer "Sign in with Hugging Face", and if not, why.

On a Space, sign-in works once the README front-matter asks for it (`hf_oauth: true`): Spaces then give the app
its OAuth client (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET). Anywhere else Gradio stands in with a mocked login on the
developer's own Hugging Face account, which needs a token and the Hub at start-up, and signs its session cookie
with OAUTH_CLIENT_SECRET: unset, that secret is a fixed string anyone can forge a cookie with, so sign-in is
offered off Spaces only with a long secret of one's own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.config import Settings
from services.errors import ConfigError

__all__ = ["MIN_SECRET_CHARS", "SignInDecision", "decide_sign_in"]

logger = logging.getLogger(__name__)

MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class SignInDecision:
    offered: bool
    reason: str  # why it is not offered; "" when it is


def _hub_account(get_token: Callable[[], str | None], whoami: Callable[..., Any]) -> str:
    """'' when Gradio's mocked local login can start (a token the Hub accepts), else why not."""
    token = get_token()
    if not token:
        return "the local sign-in uses your own Hugging Face account: log in with `hf auth login` or set HF_TOKEN."
    try:
        whoami(token=token)
    except Exception as error:  # huggingface_hub raises many types: offline mode, HTTP, connection
        return f"the local sign-in could not check your Hugging Face token with the Hub ({type(error).__name__})."
    return ""


def decide_sign_in(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    get_token: Callable[[], str | None] | None = None,
    whoami: Callable[..., Any] | None = None,
) -> SignInDecision:
    """Decide once at start-up; with SIGN_IN=on (or ANONYMOUS_CHAT=signin), raise `ConfigError` when it cannot be."""
    env = os.environ if env is None else env
    # Gradio takes the real OAuth routes only where it sees a Space (SYSTEM=spaces, which Spaces set with
    # SPACE_ID); anywhere else it mocks the login, whatever SPACE_ID says.
    on_space = settings.on_space and env.get("SYSTEM") == "spaces"
    if settings.sign_in == "off":
        decision = SignInDecision(False, "SIGN_IN is off.")
    elif on_space:
        has_client = bool(env.get("OAUTH_CLIENT_ID")) and bool(settings.oauth_client_secret)
        reason = "" if has_client else "add `hf_oauth: true` to the Space's README front-matter, then restart it."
        decision = SignInDecision(has_client, reason)
    elif len(settings.oauth_client_secret or "") < MIN_SECRET_CHARS:
        decision = SignInDecision(
            False,
            f"off Spaces, set OAUTH_CLIENT_SECRET to {MIN_SECRET_CHARS} or more random characters: Gradio signs the "
            "sign-in cookie with it, and without it anyone could forge one.",
        )
    else:
        if get_token is None or whoami is None:
            import huggingface_hub

            get_token = get_token or huggingface_hub.get_token
            whoami = whoami or huggingface_hub.whoami
        problem = _hub_account(get_token, whoami)
        decision = SignInDecision(not problem, problem)
    if not decision.offered:
        if settings.sign_in == "on":
            raise ConfigError("SIGN_IN", f"is on, but sign-in cannot be offered here: {decision.reason}")
        if settings.anonymous_chat == "signin":
            raise ConfigError("ANONYMOUS_CHAT", f"is 'signin', but sign-in cannot be offered here: {decision.reason}")
        if settings.sign_in == "auto":
            logger.info("Sign in with Hugging Face is not offered: %s", decision.reason)
    return decision
