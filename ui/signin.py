"""Sign in with Hugging Face, and the status line that says who answers a visitor's chats and who pays."""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from services.access import Route
from services.budget import Remaining
from services.llm.base import BackendStatus
from services.mcp_tools import ServerStatus

__all__ = ["login_button", "status_line"]


def login_button() -> gr.LoginButton:
    return gr.LoginButton(size="sm", elem_id="login", scale=0, min_width=200)


def _who_answers(status: BackendStatus, models: tuple[str, ...]) -> str:
    model = "the model you pick below" if len(models) > 1 else f"`{models[0] if models else status.model}`"
    if status.backend == "local":
        return f"the small local model `{status.model}` ({status.where})"
    return f"{model} at {status.where}"


def status_line(
    route: Route | None,
    *,
    sign_in: bool,
    username: str | None,
    per_minute: int | None,
    on_space: bool,
    budget: Remaining | None = None,
    tools: Sequence[ServerStatus] = (),
) -> str:
    """One Markdown line: who answers, on whose account, what is left of today's free budget once it runs low,
    and what signing in would change.

    Off a Space, whoever started the app is the owner: the owner's account is "your" account there.
    """
    signed_in = f"Signed in as **@{username}**. " if username else ""
    if route is None:
        return "**Sign in with Hugging Face to chat:** your chats then run on your own account."
    status = route.backend.status()
    if status.backend == "none":
        return f"**The chat is not available:** {status.problem or 'no model is configured.'}"
    answers = _who_answers(status, route.models)
    if route.payer == "visitor":
        return (
            f"{signed_in}Answered by {answers}, through Hugging Face's router **on your account** (your Inference "
            "Providers credits pay)."
        )
    limit = f", at most {per_minute} messages a minute" if per_minute else ""
    if route.payer == "nobody":
        pays = f"free, on this Space's own hardware{limit}" if on_space else f"free, on this machine{limit}"
    else:
        pays = f"on the Space owner's account{limit}" if on_space else f"on your account{limit}"
    invite = " Sign in with Hugging Face to chat on your own account." if sign_in and not username else ""
    left = ""
    if budget is not None and budget.low and budget.tokens is not None:
        hours = max(1, round(budget.resets_in / 3600))
        left = (
            f" **About {budget.tokens:,} tokens of today's free budget are left** (it resets at midnight UTC, in "
            f"about {hours} h)."
        )
    return f"{signed_in}Answered by {answers}, {pays}.{left}{_tools(tools)}{invite}"


def _tools(servers: Sequence[ServerStatus]) -> str:
    """The MCP servers' tools the model may call, and each server that is down, with why."""
    if not servers or all(s.reason == "not started" for s in servers):
        return ""
    ready = [f"{s.name} ({s.tools})" for s in servers if s.ok]
    down = [f"{s.name} ({s.reason or 'unavailable'})" for s in servers if not s.ok]
    said = " Tools: " + (", ".join(ready) if ready else "none yet")
    return said + (f"; unavailable: {', '.join(down)}." if down else ".")
