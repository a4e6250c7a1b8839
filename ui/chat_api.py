"""The chat's API: `/chat`, one conversation per session, and `/ask`, stateless, for MCP agents and scripts.

Both are events on hidden components (as `gr.ChatInterface` declares its own endpoint): the function's parameter
names, the components' types and defaults, and the docstring are what `/gradio_api/info`, `openapi.json`,
`view_api()` and the MCP server describe. Both stream the answer only (a reasoning model's thinking is shown on
the page, not returned). Their inputs pass unprocessed: `services.chat` checks every one and names the field.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

from services.assistant import Assistant, Caller, TurnPlan
from services.chat import ChatOptions, Reply, finished_turn
from services.config import Settings
from services.conversation import Limits, Turn, parse_turns
from services.errors import ServiceError, ValidationError
from services.sessions import SessionStore
from ui.errors import user_errors
from ui.gradio_internals import called_through_mcp, keep_out_of_mcp
from ui.gradio_internals.files import uploads

__all__ = ["ChatApi", "caller_of"]


def caller_of(request: gr.Request | None, token: gr.OAuthToken | None, *, stateless: bool = False) -> Caller:
    """Who is calling, from Gradio's request: the address is the one `ui.edge.ClientAddress` derived for it."""
    client = getattr(request, "client", None) if request is not None else None
    session = None if stateless or request is None else request.session_hash
    return Caller(
        session=session, address=getattr(client, "host", None) or "unknown", token=token.token if token else None
    )


def _history_value(value: object, limits: Limits) -> object:
    """`/ask`'s history: a list, or its JSON text (what an MCP client sends: the input is text).

    Text is bounded before it is parsed: its length against the characters allowed (with room for the JSON
    around them), and its count of messages by the roles it names, so that a huge history costs a scan, not
    thousands of objects.
    """
    if isinstance(value, str):
        if not value.strip():
            return None
        if len(value) > 2 * limits.max_chars + 200 * limits.max_messages:
            raise ValidationError(
                "history",
                f"is {len(value):,} characters of JSON; far more than {limits.max_chars:,} characters of messages.",
            )
        if (count := value.count('"role"')) > limits.max_messages:
            raise ValidationError("history", f"has {count:,} messages; at most {limits.max_messages:,} are accepted.")
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # nesting past the parser's depth is not a conversation either
            raise ValidationError(
                "history", 'is not JSON: give a list such as [{"role": "user", "content": "Hi"}].'
            ) from None
    return value


def _answer_of(reply: Reply, turn: Turn) -> str:
    """What the API returns for a finished reply; a reply with no answer at all is an error, not an empty string."""
    if not reply.text.strip() and turn.notice:
        raise (
            ValidationError("max_tokens", turn.notice) if reply.finish_reason == "length" else ServiceError(turn.notice)
        )
    return reply.text


class ChatApi:
    def __init__(self, assistant: Assistant, sessions: SessionStore, *, settings: Settings) -> None:
        self._assistant = assistant
        self._sessions = sessions
        self._settings = settings
        self._history_limits = Limits(settings.max_history_messages, settings.max_history_chars)

    async def _stream_answer(self, plan: TurnPlan) -> AsyncIterator[str]:
        """The answer so far, each value once: a reply's last update and its end often carry the same text."""
        reply, sent = Reply(), ""
        async for reply in self._assistant.stream(plan):
            if reply.text != sent and (reply.text or reply.done):
                if reply.done:
                    _answer_of(reply, finished_turn(reply, params=plan.params))
                sent = reply.text
                yield sent
        if not sent:
            _answer_of(reply, finished_turn(reply, params=plan.params))

    def chat_fn(self) -> Callable[..., AsyncIterator[str]]:
        assistant, sessions, settings = self._assistant, self._sessions, self._settings

        @keep_out_of_mcp
        @user_errors
        async def chat(
            message: str,
            system_prompt: str = settings.system_prompt,
            temperature: float = settings.default_temperature,
            max_tokens: int = settings.default_max_tokens,
            model: str = "",
            files: list[Any] | None = None,
            request: gr.Request | None = None,
            oauth_token: gr.OAuthToken | None = None,
        ) -> AsyncIterator[str]:
            """Stream a reply to `message`, in this session's conversation (one gradio_client.Client is one session).

            Args:
                message: What to say to the model ("" when files say it all).
                system_prompt: Instructions for the model ("" for none).
                temperature: Randomness, from 0 (always the likeliest words) to 2.
                max_tokens: Longest reply, in tokens, from 1 to MAX_TOKENS_CAP.
                model: One of the models the Space offers; "" for its default.
                files: Images and documents (PDF, text, code) to send along: gradio_client.handle_file(path) each.

            Returns:
                The reply so far, growing; the last value is the whole answer.
            """
            if called_through_mcp(request):
                raise ValidationError("chat", "keeps a browser session's conversation; over MCP, use the `ask` tool.")
            caller = caller_of(request, oauth_token)
            session = sessions.get(caller.session or "")
            history = list(session.turns)
            options = ChatOptions(system_prompt, temperature, max_tokens, model, files=uploads(files))
            plan = await assistant.plan(caller, message, history, options)
            text = ""
            async for text in self._stream_answer(plan):
                yield text
            # The conversation grows once, at the end; a concurrent call of the same session keeps its turn too.
            sessions.set_turns(session, [*session.turns, plan.user, Turn("assistant", text)])

        return chat

    def ask_fn(self) -> Callable[..., AsyncIterator[str]]:
        assistant, settings, limits = self._assistant, self._settings, self._history_limits

        @user_errors
        async def ask(
            message: str,
            history: str | list[dict[str, str]] | None = "",
            system_prompt: str = settings.system_prompt,
            temperature: float = settings.default_temperature,
            max_tokens: int = settings.default_max_tokens,
            model: str = "",
            files: list[Any] | None = None,
            request: gr.Request | None = None,
            oauth_token: gr.OAuthToken | None = None,
        ) -> AsyncIterator[str]:
            """Ask the Space's language model and get its answer; keeps no state, so give earlier turns in `history`.

            Args:
                message: What to ask ("" when files say it all).
                history: Earlier turns as JSON: [{"role": "user" or "assistant", "content": "..."}] ("" if none).
                system_prompt: Instructions for the model ("" for none).
                temperature: Randomness, from 0 (always the likeliest words) to 2.
                max_tokens: Longest answer, in tokens, from 1 to MAX_TOKENS_CAP.
                model: One of the models the Space offers; "" for its default.
                files: Images and documents to ask about: gradio_client.handle_file(path); over MCP, data: URLs.

            Returns:
                The model's answer.
            """
            plan = await assistant.plan(
                caller_of(request, oauth_token, stateless=True),
                message,
                lambda: parse_turns(_history_value(history, limits), limits=limits),
                ChatOptions(system_prompt, temperature, max_tokens, model, files=uploads(files)),
            )
            async for text in self._stream_answer(plan):
                yield text

        return ask

    def build(self, *, concurrency_limit: int | None) -> None:
        """Declare both endpoints, in the chat's concurrency group (one limit for every call of the model)."""
        settings = self._settings
        hidden: dict[str, Any] = {"visible": False}

        def parameters() -> list[gr.components.Component]:
            return [
                gr.Textbox(settings.system_prompt, label="system_prompt", **hidden),
                gr.Number(settings.default_temperature, label="temperature", minimum=0, maximum=2, **hidden),
                gr.Number(
                    settings.default_max_tokens, label="max_tokens", precision=0, minimum=1,
                    maximum=settings.max_tokens_cap, **hidden,
                ),
                gr.Textbox("", label="model", **hidden),
                # Last and optional: positional calls without it keep working.
                gr.File(None, label="files", file_count="multiple", **hidden),
            ]  # fmt: skip

        common: dict[str, Any] = {
            "concurrency_id": "chat",
            "concurrency_limit": concurrency_limit,
            "show_progress": "hidden",
            "preprocess": False,
            "postprocess": False,
        }
        with gr.Column(visible=False):
            message = gr.Textbox(label="message", **hidden)
            answer = gr.Textbox(label="answer", **hidden)
            gr.Button(**hidden).click(self.chat_fn(), [message, *parameters()], answer, api_name="chat", **common)
            # Text, not gr.JSON: Gradio describes a JSON input's type as `{}`, which MCP clients reject as a schema.
            history = gr.Textbox("", label="history", **hidden)
            gr.Button(**hidden).click(
                self.ask_fn(), [message, history, *parameters()], answer, api_name="ask", **common
            )
