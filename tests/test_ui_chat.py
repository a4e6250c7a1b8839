"""The page's chat logic in-process: ChatPanel's handlers, with a scripted backend and Gradio's own Request.

What the page shows for each step (the Chatbot's value the handlers send ready-made), what is kept per session,
and what the browser is asked to save; the real wiring is tested through the launched app elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr
import pytest

from app import _archive, build_demo
from services.access import Access
from services.assistant import Assistant
from services.config import Settings, load_settings
from services.errors import BackendUnavailableError
from services.llm.base import Delta
from services.ratelimit import ChatRateLimits
from services.sessions import SessionStore
from tests.support.scripted_backend import ScriptedBackend
from ui.chat import ChatPanel
from ui.saved_chats import SavedChatsPanel

pytestmark = pytest.mark.unit

PARAMS = ("Be brief.", 0.5, 64, "scripted")


def settings(**env: str) -> Settings:
    return load_settings({"HISTORY_SECRET": "x" * 40, "RATE_LIMIT_PER_IP": "none", **env})


def panel(backend: ScriptedBackend, **env: str) -> ChatPanel:
    """The chat's handlers on `backend`, their components built in a Blocks of their own."""
    config = settings(**env)
    sessions = SessionStore(capacity=10, ttl=60, max_messages=200, max_chars=config.history_conversation_chars)
    access = Access(owner=backend)
    saved = SavedChatsPanel(_archive(config), sessions, max_import_bytes=config.max_upload_bytes)
    chat = ChatPanel(
        Assistant(config, access, ChatRateLimits.from_settings(config)), sessions, saved, settings=config, access=access
    )
    with gr.Blocks() as demo:
        saved.build()
        chat.build(demo, concurrency_limit=None)
    return chat


def values(chat: ChatPanel, message: str | None = None, *params: object) -> dict[Any, Any]:
    """The page's inputs of a reply event, as Gradio hands a set of inputs to the handler."""
    system_prompt, temperature, max_tokens, model = params or PARAMS
    found = {chat.system_prompt: system_prompt, chat.temperature: temperature, chat.max_tokens: max_tokens}
    found[chat.model] = model
    if message is not None:
        found[chat.box] = {"text": message, "files": []}
    return found


def respond(chat: ChatPanel, message: str, *params: object, session: str = "s1") -> AsyncIterator[Any]:
    return chat.respond(values(chat, message, *params), request(session), None, None)


def request(session: str = "s1") -> gr.Request:
    return gr.Request(session_hash=session, client={"host": "127.0.0.1", "port": 1}, headers={})


def run(updates: AsyncIterator[Any]) -> list[Any]:
    async def collect() -> list[Any]:
        return [update async for update in updates]

    return asyncio.run(collect())


def texts(chat: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(role, text, thought title) of each message the Chatbot is sent."""
    return [(m["role"], m["content"][0]["text"], (m["metadata"] or {}).get("title")) for m in chat]


def box(update: Any) -> dict[str, Any]:
    return {"interactive": update.interactive, "stop_btn": update.stop_btn, "value": update.value}


class TestRespond:
    def test_the_message_shows_then_the_reply_streams_then_the_box_is_ready(self):
        """First update: the box busy (Stop) and the message shown; then the reply growing; last: the box ready,
        the whole exchange, and a plan that writes this chat to the browser."""
        chat = panel(ScriptedBackend())
        updates = run(respond(chat, "hi"))
        first, *middle, last = updates
        assert box(first[0]) == {"interactive": False, "stop_btn": "Stop", "value": {"text": "", "files": []}}
        assert texts(first[1]) == [("user", "hi", None)]
        assert [texts(u[1])[-1][1] for u in middle] == ["Hello", "Hello there", "Hello there"]
        assert box(last[0])["stop_btn"] is False
        assert texts(last[1]) == [("user", "hi", None), ("assistant", "Hello there", None)]
        plan = last[5]
        assert plan["write"]["id"] == chat.sessions.get("s1").saved.open.id
        assert plan["drop"] == []

    def test_a_blank_box_sends_nothing(self):
        """Enter on a blank box: no update, no request, no error."""
        backend = ScriptedBackend()
        [update] = run(respond(panel(backend), "   "))
        assert update[0] == {"text": "", "files": []}
        assert all(isinstance(value, type(gr.skip())) for value in update[1:])
        assert backend.requests == []

    def test_thinking_is_a_block_open_while_thinking_then_closed(self):
        """Thinking comes first in a "Thinking" block marked pending; once the answer starts it is done, with its
        duration; the kept turn holds both, and the next request carries only the answer."""
        backend = ScriptedBackend(
            script=(Delta(thinking="hmm"), Delta(thinking=" so"), Delta("Yes."), Delta(finish_reason="stop")),
            delay=0.01,
        )
        chat = panel(backend)
        updates = run(respond(chat, "well?"))
        thinking = [u[1][1] for u in updates[1:-1] if len(u[1]) > 1]
        assert thinking[0]["metadata"]["status"] == "pending"
        assert thinking[0]["content"][0]["text"] == "hmm"
        final = updates[-1][1]
        assert final[1]["metadata"]["title"] == "Thinking"
        assert final[1]["metadata"]["status"] == "done"
        assert isinstance(final[1]["metadata"]["duration"], float)
        assert texts(final)[2] == ("assistant", "Yes.", None)
        run(respond(chat, "and?"))
        assert [m["content"] for m in backend.requests[-1].messages][1:] == ["well?", "Yes.", "and?"]

    def test_a_failure_mid_reply_keeps_what_arrived_and_says_why(self):
        """The backend fails after a piece: the piece stays, the app's own sentence follows, the box is ready."""
        backend = ScriptedBackend(script=(Delta("Part"),), fail=BackendUnavailableError("The server went away."))
        updates = run(respond(panel(backend), "go"))
        assert texts(updates[-1][1])[-1] == ("assistant", "Part\n\n> ⚠️ The server went away.", None)
        assert box(updates[-1][0])["interactive"] is True

    def test_bad_input_leaves_the_page_as_it_was(self):
        """A refused turn raises before any update: the message stays in the box, as typed."""
        with pytest.raises(gr.Error) as caught:
            run(respond(panel(ScriptedBackend()), "hi", "s", 5.0, 64, "scripted"))
        assert caught.value.message == "temperature: must be between 0 and 2, got 5."

    def test_replies_cut_at_the_limit_say_so(self):
        """finish_reason "length": the text stays, with where it was cut."""
        backend = ScriptedBackend(script=(Delta("One two"), Delta(finish_reason="length")))
        updates = run(respond(panel(backend), "count", "s", 0.5, 2, "scripted"))
        assert (
            texts(updates[-1][1])[-1][1]
            == "One two\n\n> ⚠️ The reply was cut at the token limit (2 tokens): raise Max tokens for more."
        )


class TestStopRetryUndo:
    def test_stop_ends_the_reply_where_it_is_and_keeps_it(self):
        """Stop mid-reply: the stream is closed, what arrived is shown and kept with "Stopped.", and saved."""
        backend = ScriptedBackend(script=tuple(Delta(f"w{i} ") for i in range(100)), delay=0.02)
        chat = panel(backend)

        async def press_stop_midway() -> list[Any]:
            updates: list[Any] = []
            async for update in respond(chat, "long"):
                updates.append(update)
                if len(updates) == 4:
                    await chat.stop(request())
            return updates

        updates = asyncio.run(press_stop_midway())
        assert backend.closed == 1
        shown = texts(updates[-1][1])[-1][1]
        assert shown.startswith("w0 w1 w2")
        assert shown.endswith("> ⚠️ Stopped.")
        assert chat.sessions.get("s1").turns[-1].notice == "Stopped."
        assert updates[-1][5]["write"] is not None

    def test_retry_answers_the_last_message_again(self):
        """Retry drops the last answer and asks again with the same message."""
        backend = ScriptedBackend()
        chat = panel(backend)
        run(respond(chat, "again?"))
        updates = run(chat.respond_retry(values(chat), request(), None, None))
        assert texts(updates[-1][1]) == [("user", "again?", None), ("assistant", "Hello there", None)]
        assert [m["content"] for m in backend.requests[-1].messages][1:] == ["again?"]

    def test_undo_takes_the_exchange_back_into_the_box(self):
        """Undo: the chat loses its last exchange and the message returns to the box."""
        chat = panel(ScriptedBackend())
        run(respond(chat, "oops"))
        shown, typed, *_ = chat.undo(request())
        assert shown == []
        assert typed == {"text": "oops", "files": []}
        assert chat.sessions.get("s1").turns == []

    def test_sessions_are_apart(self):
        """Two sessions keep two conversations."""
        backend = ScriptedBackend()
        chat = panel(backend)
        run(respond(chat, "mine", session="a"))
        run(respond(chat, "yours", session="b"))
        assert [t.text for t in chat.sessions.get("a").turns] == ["mine", "Hello there"]
        assert [t.text for t in chat.sessions.get("b").turns] == ["yours", "Hello there"]


class TestBuildDemo:
    def test_it_builds_from_settings_and_a_backend(self):
        """build_demo takes any backend that keeps the Protocol, as the owner's: its public endpoints are the
        documented ones."""
        demo = build_demo(settings(), Access(owner=ScriptedBackend()))
        assert set(demo.get_api_info()["named_endpoints"]) == {
            "/chat", "/ask", "/greet", "/reverse", "/upper", "/lower", "/title", "/slugify", "/count",
            "/increment", "/reset_counter",
        }  # fmt: skip

    def test_every_model_call_is_one_concurrency_group(self):
        """The page's replies, /chat and /ask share the id "chat" and the backend's limit."""
        demo = build_demo(settings(), Access(owner=ScriptedBackend(concurrency_limit=2)))
        grouped = sorted((fn.name, fn.concurrency_limit) for fn in demo.fns.values() if fn.concurrency_id == "chat")
        assert grouped == [("ask", 2), ("chat", 2), ("respond", 2), ("respond_example", 2), ("respond_retry", 2)]
