"""The page's chat, as one component: its blocks, its rendering and its events (the shape of `gr.ChatInterface`).

One queued event per message, whether typed, picked from the examples or retried: it shows the message, streams
the reply (thinking in a collapsible block, open while the model thinks), and ends with the box ready, the status
line up to date and the chat saved in the browser. Stop ends it; what arrived stays, and is saved. The
conversation itself is kept on the server, per session (`services.sessions`): the page never sends it back, so
nothing a browser sends is ever rendered as a message. The parameters (system prompt, temperature, max tokens,
model) reach every reply event as one `ChatOptions`, read from the components in one place (`_options`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import gradio as gr
from gradio.blocks import Block

from services.access import Access, Route
from services.assistant import Assistant, TurnPlan
from services.chat import ChatOptions, Reply, finished_turn
from services.config import Settings
from services.conversation import Attached, Turn
from services.errors import ServiceError, SignInRequiredError
from services.llm.base import ChatBackend
from services.sessions import Session, SessionStore
from ui.chat_api import caller_of
from ui.errors import as_user_error
from ui.gradio_internals.files import uploads
from ui.render import LiveMarkdown, live_reply, render_turns
from ui.saved_chats import SavedChatsPanel, snapshot_js
from ui.signin import login_button, status_line

__all__ = ["EXAMPLES", "PLACEHOLDER", "ChatPanel"]

logger = logging.getLogger(__name__)

PLACEHOLDER = "Type a message and press Enter"
EXAMPLES = [
    "Explain recursion to a ten-year-old, with one example.",
    "Write a Python function that checks whether a string is a palindrome.",
    "Suggest three names for a bakery as a Markdown list, the best one in bold.",
]
_PAGE_ONLY: dict[str, Any] = {"api_visibility": "private"}
_QUICK: dict[str, Any] = {"queue": False, "postprocess": False, "show_progress": "hidden", **_PAGE_ONLY}


# The message box's value as the page holds it once sent (the events send values ready-made, postprocess=False).
_EMPTY_BOX: dict[str, Any] = {"text": "", "files": []}
# What may be attached: images (the bytes decide, not the name), PDFs, and text files of the usual kinds.
FILE_TYPES = [
    "image", ".pdf", ".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml",
    ".xml", ".html", ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp", ".cs", ".go", ".rs", ".rb", ".php",
    ".swift", ".kt", ".sh", ".sql", ".css", ".log", ".ini", ".cfg", ".tex",
]  # fmt: skip


def _box_busy() -> Any:
    return gr.MultimodalTextbox(value=_EMPTY_BOX, interactive=False, submit_btn=False, stop_btn="Stop", placeholder="")


def _box_ready() -> Any:
    return gr.MultimodalTextbox(interactive=True, submit_btn=True, stop_btn=False, placeholder=PLACEHOLDER)


class _Updates:
    """A reply's updates, read by a task of their own so that Stop can end them at once, even while the model
    server is silent (a task per reply, not per update: the queue between them costs one put and one get)."""

    _END = object()

    def __init__(self, updates: AsyncIterator[Reply]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(updates))
        self.stopped = False

    async def _pump(self, updates: AsyncIterator[Reply]) -> None:
        try:
            async for reply in updates:
                self._queue.put_nowait(reply)
        except BaseException as error:
            self._queue.put_nowait(error)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            self._queue.put_nowait(self._END)

    def stop(self) -> None:
        self.stopped = True
        self._queue.put_nowait(self._END)

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> Reply:
        item = await self._queue.get()
        if item is self._END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """End the reading task; cancelling it closes the backend's stream, which stops the model server."""
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _last_user(turns: Sequence[Turn]) -> int | None:
    return max((i for i, turn in enumerate(turns) if turn.role == "user"), default=None)


class ChatPanel:
    """The chat tab. `build` lays it out and wires its events; the handlers below are its behaviour."""

    def __init__(
        self,
        assistant: Assistant,
        sessions: SessionStore,
        saved: SavedChatsPanel,
        *,
        settings: Settings,
        access: Access,
    ) -> None:
        self.assistant = assistant
        self.sessions = sessions
        self.saved = saved
        self.access = access
        self.settings = settings

    # Layout and events

    def build(self, demo: gr.Blocks, *, concurrency_limit: int | None) -> None:
        settings = self.settings
        with gr.Row(equal_height=True):
            # What an anonymous visitor gets, until the page's load says who this visitor is.
            self.status = gr.Markdown(self._status_for(None, None), elem_id="status-line")
            if self.access.sign_in:
                login_button()
        owner = self.access.owner
        models = list(owner.models)
        self.model = gr.Dropdown(
            choices=_model_choices(owner, models),
            value=models[0] if models else None,
            label="Model",
            elem_id="model",
            visible=len(models) > 1,
            interactive=True,
        )
        self.chatbot = gr.Chatbot(
            label="Chat",
            height="60vh",
            buttons=["copy", "copy_all"],
            elem_id="chatbot",
            examples=[{"text": text} for text in EXAMPLES],
            feedback_options=None,
            sanitize_html=True,
            allow_tags=False,
        )
        # The send button is Gradio's icon, named "Submit" for assistive technology (a text label would differ from
        # that name); Stop is text, named the same. Files are dropped, pasted or picked into the box; the server
        # reads them (services.attachments) and checks their length and count.
        attach = settings.max_attachments > 0
        self.box = gr.MultimodalTextbox(
            placeholder=PLACEHOLDER, label="Message", show_label=False, submit_btn=True, stop_btn=False,
            elem_id="message", file_types=FILE_TYPES if attach else None, file_count="multiple",
            sources=["upload"] if attach else [],
        )  # fmt: skip
        with gr.Accordion("Parameters", open=False):
            self.system_prompt = gr.Textbox(
                settings.system_prompt, label="System prompt", lines=2, max_length=settings.max_system_prompt_chars
            )
            self.temperature = gr.Slider(0, 2, value=settings.default_temperature, step=0.05, label="Temperature")
            self.max_tokens = gr.Slider(
                1, settings.max_tokens_cap, value=settings.default_max_tokens, step=1, label="Max tokens"
            )
        self._wire(demo, concurrency_limit)

    def _wire(self, demo: gr.Blocks, concurrency_limit: int | None) -> None:
        saved = self.saved
        # A set of inputs reaches the handler as one {component: value} dict: `_options` reads it.
        options: set[Block] = {self.system_prompt, self.temperature, self.max_tokens, self.model}
        outputs = [self.box, self.chatbot, self.status, *saved.outputs]
        reply = {
            "postprocess": False,
            "show_progress": "minimal",
            "concurrency_id": "chat",
            "concurrency_limit": concurrency_limit,
            **_PAGE_ONLY,
        }
        replies = [
            self.box.submit(self.respond, {self.box, *options}, outputs, **reply),
            self.chatbot.example_select(self.respond_example, options, outputs, **reply),
            self.chatbot.retry(self.respond_retry, options, outputs, **reply),
        ]
        # Stop asks the reply to end, rather than cancelling its event: the reply then still stores, shows and
        # saves what arrived, in its own last update.
        self.box.stop(self.stop, None, None, **_QUICK)
        undo = self.chatbot.undo(self.undo, None, [self.chatbot, self.box, *saved.outputs], **_QUICK)
        for event in (*replies, undo):
            saved.apply_after(event)
        # Page load: the browser sends its saved chats first (js), to reopen this tab's.
        on_load = demo.load(
            self.load,
            [saved.snapshot],
            [self.status, self.model, self.chatbot, *saved.outputs],
            js=snapshot_js(),
            **_QUICK,
        )
        saved.apply_after(on_load)
        saved.wire(self.chatbot)

    def _kept(self, attached: Attached) -> bool:
        """Whether the model still has an attachment (it is shown as gone otherwise)."""
        return self.assistant.attachment(attached) is not None

    def _options(self, values: dict[Any, Any]) -> ChatOptions:
        """The parameters of a reply, as the page's components hold them."""
        return ChatOptions(
            system_prompt=values.get(self.system_prompt),
            temperature=values.get(self.temperature),
            max_tokens=values.get(self.max_tokens),
            model=values.get(self.model),
        )

    # Handlers

    def _session(self, request: gr.Request) -> Session:
        return self.sessions.get(request.session_hash or "")

    def load(
        self,
        snapshot: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        oauth_token: gr.OAuthToken | None,
    ) -> tuple[Any, ...]:
        """Page load: who answers (and pays), the models to pick from, and this tab's chat reopened.

        A plain function: Gradio runs it on a worker thread, and checking a large saved chat takes a while."""
        session = self._session(request)
        token = oauth_token.token if oauth_token else None
        try:
            route = self.access.route(token)
            models, choices = list(route.models), _model_choices(route.backend, route.models)
        except SignInRequiredError:
            models, choices = [], []
        model = gr.Dropdown(choices=choices, value=models[0] if models else None, visible=len(models) > 1)
        status = self._status_for(token, _username(profile), caller_of(request, oauth_token).address)
        return status, model, *self.saved.restore(session, snapshot)

    def _status_for(self, token: str | None, username: str | None, address: str | None = None) -> str:
        """The status line: who answers this visitor, on whose account, and how much of today's free budget is
        left once it runs low."""
        try:
            route: Route | None = self.access.route(token)
        except SignInRequiredError as error:
            if username:
                return f"Signed in as **@{username}**. {error}"
            route = None
        budgets = self.assistant.budgets
        owner_pays = route is not None and route.payer == "owner" and budgets.enabled and address is not None
        return status_line(
            route,
            sign_in=self.access.sign_in,
            username=username,
            per_minute=self.settings.rate_limit_session,
            on_space=self.settings.on_space,
            budget=budgets.remaining(address) if owner_pays and address is not None else None,
            tools=self.assistant.tools.status() if self.assistant.tools is not None else (),
        )

    async def respond(
        self,
        values: dict[Any, Any],
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        oauth_token: gr.OAuthToken | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Send: the message typed in the box. A blank box sends nothing, and says nothing: Enter was pressed on
        nothing, which is not a mistake to report. (The box is given its empty value back: an event that updates
        nothing would leave the page's MultimodalTextbox with none, and its next message would be lost.)"""
        typed = values.get(self.box)
        message = typed.get("text") if isinstance(typed, dict) else None
        files = typed.get("files") if isinstance(typed, dict) else None
        if not isinstance(message, str) or (not message.strip() and not files):
            yield _EMPTY_BOX, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        session = self._session(request)
        options = dataclasses.replace(self._options(values), files=uploads(files))
        turn = self._turn(session, request, profile, oauth_token, session.turns, message, options)
        async for update in turn:
            yield update

    async def respond_example(
        self,
        values: dict[Any, Any],
        selected: gr.SelectData,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        oauth_token: gr.OAuthToken | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """An example card, sent as if typed (examples never run at start-up, so no key is spent then)."""
        session = self._session(request)
        value = selected.value if isinstance(selected.value, dict) else {}
        text = value.get("text") if isinstance(value.get("text"), str) else ""
        turn = self._turn(session, request, profile, oauth_token, session.turns, text, self._options(values))
        async for update in turn:
            yield update

    async def respond_retry(
        self,
        values: dict[Any, Any],
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        oauth_token: gr.OAuthToken | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Retry: the last message, answered again (its old answer goes)."""
        session = self._session(request)
        turns = session.turns
        last = _last_user(turns)
        if last is None:
            raise gr.Error("There is no message to retry.", print_exception=False)
        options = dataclasses.replace(self._options(values), attached=turns[last].attachments)
        turn = self._turn(session, request, profile, oauth_token, turns[:last], turns[last].text, options)
        async for update in turn:
            yield update

    async def _turn(
        self,
        session: Session,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        token: gr.OAuthToken | None,
        history: Sequence[Turn],
        message: object,
        options: ChatOptions,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """One reply, from the message shown to the chat saved: the body of every reply event."""
        history = list(history)
        try:
            plan = await self.assistant.plan(caller_of(request, token), message, history, options)
        except ServiceError as error:
            # Before anything changed on the page: the message stays in the box, as typed.
            raise as_user_error(error) from error
        if plan.dropped:
            gr.Warning(f"{plan.dropped} earlier message(s) were left out so the conversation fits the model.")
        # Rendered off the event loop: a long conversation's Markdown is work another visitor must not wait for.
        shown = await asyncio.to_thread(render_turns, [*history, plan.user], kept=self._kept)
        # While the reply streams, the other outputs get plain values equal to what they show (the box's "", the
        # status, the list's selection, no notice, no plan): Gradio sends nothing for a value that did not change,
        # while a gr.skip() would make it build the component again on every update.
        visitor = token.token if token else None
        status = self._status_for(visitor, _username(profile), caller_of(request, token).address)
        listed = self.saved.selection(session)
        yield _box_busy(), shown, status, listed, "", None
        reply = Reply()
        notice = ""
        updates = _Updates(self.assistant.stream(plan))
        session.stop = updates.stop
        live = LiveMarkdown()
        try:
            async for reply in updates:
                yield _EMPTY_BOX, [*shown, *live_reply(reply, live)], status, listed, "", None
            if updates.stopped:
                notice = "Stopped."
        except ServiceError as error:
            # Mid-reply: what arrived stays, and the app's own sentence says why it ended there.
            logger.warning("%s: %s", type(error).__name__, error)
            notice = str(error)
        except (GeneratorExit, asyncio.CancelledError):
            # The visitor left (tab closed): keep what arrived, for the page they may reopen.
            self._keep(session, history, plan, reply, "Stopped.")
            raise
        finally:
            session.stop = None
            await updates.aclose()
        turns = self._keep(session, history, plan, reply, notice)
        # The status may name the model now: a server's default model is known once it has answered.
        status = self._status_for(visitor, _username(profile), caller_of(request, token).address)
        rendered = await asyncio.to_thread(render_turns, turns, kept=self._kept)
        yield (_box_ready(), rendered, status, *self.saved.after_turn(session))

    def _keep(self, session: Session, history: list[Turn], plan: TurnPlan, reply: Reply, notice: str) -> list[Turn]:
        turn = finished_turn(reply, params=plan.params, notice=notice)
        return self.sessions.set_turns(session, [*history, plan.user, turn])

    async def stop(self, request: gr.Request) -> None:
        """Stop: the streaming reply ends where it is; its own event then shows and saves what arrived."""
        session = self.sessions.peek(request.session_hash or "")
        if session is not None and session.stop is not None:
            session.stop()

    def undo(self, request: gr.Request) -> tuple[Any, ...]:
        """Undo: the last exchange leaves the chat and its message goes back into the box. (A plain function:
        Gradio runs it on a worker thread, and it renders the whole conversation.)"""
        session = self._session(request)
        turns = session.turns
        last = _last_user(turns)
        if last is None:
            return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        self.sessions.set_turns(session, turns[:last])
        return (
            render_turns(session.turns, kept=self._kept),
            {"text": turns[last].text, "files": []},
            *self.saved.after_turn(session),
        )


def _username(profile: gr.OAuthProfile | None) -> str | None:
    return getattr(profile, "username", None) if profile is not None else None


def _model_choices(backend: ChatBackend, models: Sequence[str]) -> list[tuple[str, str]]:
    """The model picker's choices: each model by its id, marked when it takes images."""
    return [(f"{model} · sees images" if backend.sees_images(model) else model, model) for model in models]
