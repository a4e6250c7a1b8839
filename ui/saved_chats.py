"""The sidebar of saved chats: its components, its events, and the plans `saved_chats.js` carries out in the browser.

Every change of the saved chats is made in `services.saved_chats.ChatArchive`, which returns plain data; here it
is laid out and shown. On page load the browser sends the summaries of its saved chats and the whole record of the
chat this tab had open (a reload reopens it); each answer carries a plan (write this record, drop those) that the
browser carries out once. A chat is saved once per turn, when the reply ends or is stopped.

The handlers that read what a browser or a file sent (load, reopen, import) are plain functions: Gradio runs them
on its worker threads, so that checking and rendering a large saved chat never holds up the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gradio as gr

from services.conversation import Attached
from services.errors import ConversationError, SnapshotError, StoredConversationError
from services.saved_chats import Change, ChatArchive
from services.sessions import Session, SessionStore
from ui.errors import as_user_error
from ui.render import ChatMessage, render_turns

__all__ = ["SAVED_CHATS_JS", "SavedChatsPanel", "snapshot_js"]

logger = logging.getLogger(__name__)

SAVED_CHATS_JS = (Path(__file__).with_name("saved_chats.js")).read_text(encoding="utf-8")
_QUICK: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
_APPLY = "(plan) => window.savedChats.apply(plan)"


def snapshot_js(picked: bool = False) -> str:
    """The js step that sends the browser's saved chats as the event's input (the picked one's whole record)."""
    if picked:
        return "(id, _) => [id, window.savedChats.snapshot(id)]"
    return "(_) => [window.savedChats.snapshot(null)]"


class SavedChatsPanel:
    """The sidebar. `build` lays it out; `wire` connects its events to the chat's Chatbot."""

    def __init__(
        self,
        archive: ChatArchive,
        sessions: SessionStore,
        *,
        max_import_bytes: int,
        kept: Callable[[Attached], bool] | None = None,
    ) -> None:
        """`kept` says whether the model still has an attachment's content (the page says so when it does not)."""
        self.archive = archive
        self._sessions = sessions
        self._max_import_bytes = max_import_bytes
        self._kept = kept

    # Layout and events

    def build(self) -> None:
        """The sidebar: new chat, the list of past chats, delete, export, import, and the notices."""
        with gr.Sidebar(label="Chats", open=True, elem_id="saved-chats"):
            self.new_button = gr.Button("New chat", variant="primary", size="sm", elem_id="new-chat")
            self.past = gr.Radio(choices=[], label="Past chats", elem_id="past-chats", interactive=True)
            self.delete_button = gr.Button("Delete this chat", size="sm", variant="stop", elem_id="delete-chat")
            with gr.Row():
                self.export_md = gr.Button("Export Markdown", size="sm", elem_id="export-md")
                self.export_json = gr.Button("Export JSON", size="sm", elem_id="export-json")
            self.importer = gr.UploadButton(
                "Import JSON", file_types=[".json"], file_count="single", size="sm", elem_id="import-json"
            )
            self.notice = gr.Markdown("", elem_id="saved-notice")
            self.storage_notice = gr.Markdown("", elem_id="storage-notice")
        # What passes between the server and saved_chats.js: values of the page, never rendered.
        self.snapshot = gr.JSON(visible=False, elem_id="saved-snapshot")
        self.plan = gr.JSON(visible=False, elem_id="saved-plan")
        self.download = gr.JSON(visible=False, elem_id="saved-download")

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What a turn ends by updating: the list, the notice, the plan."""
        return [self.past, self.notice, self.plan]

    def apply_after(self, event: Any) -> None:
        """Have the browser carry out the plan `event` returned (a step in the page only)."""
        event.then(None, [self.plan], [self.storage_notice], js=_APPLY, **_QUICK)

    def wire(self, chatbot: gr.Chatbot) -> None:
        """The sidebar's own events; each shows the chat it leaves open in `chatbot`."""
        shown = [chatbot, *self.outputs]
        for event in (
            self.new_button.click(self.new_chat, None, shown, **_QUICK),
            chatbot.clear(self.new_chat, None, shown, **_QUICK),
            self.past.select(self.reopen, [self.past, self.snapshot], shown, js=snapshot_js(picked=True), **_QUICK),
            self.delete_button.click(self.delete, None, shown, **_QUICK),
            self.importer.upload(self.import_file, [self.importer], shown, **_QUICK),
        ):
            self.apply_after(event)
        exports: tuple[tuple[gr.Button, Literal["md", "json"]], ...] = (
            (self.export_md, "md"),
            (self.export_json, "json"),
        )
        for button, kind in exports:
            button.click(self._exporter(kind), None, [self.download], **_QUICK).then(
                None, [self.download], None, js="(file) => window.savedChats.download(file)", **_QUICK
            )

    # What the handlers return

    def show(self, session: Session, change: Change) -> tuple[list[ChatMessage], Any, str, dict[str, Any]]:
        """The chat left open (now the session's conversation), the list, the notice and the plan of `change`."""
        if change.turns is not None:
            self._sessions.set_turns(session, change.turns)
        if change.notice:
            gr.Warning(change.notice)
        return render_turns(session.turns, kept=self._kept), *self.listed(change)

    def listed(self, change: Change) -> tuple[Any, str, dict[str, Any]]:
        """The list, the notice and the plan of `change`, for events that do not change the open chat."""
        return gr.Radio(choices=list(change.listing), value=change.selected), change.notice, change.plan

    def selection(self, session: Session) -> str | None:
        """The list's value: this session's chat, when it is listed (saved once at least)."""
        saved = session.saved
        return saved.open.id if saved.is_listed(saved.open.id) else None

    def after_turn(self, session: Session) -> tuple[Any, str, dict[str, Any]]:
        """Save this session's chat: the list, a notice when something had to go, and the plan."""
        change = self.archive.save(session.saved, session.turns)
        if change.notice:
            gr.Warning(change.notice)
        return self.listed(change)

    def restore(self, session: Session, snapshot: object) -> tuple[list[ChatMessage], Any, str, dict[str, Any]]:
        """On page load: check what the browser holds, reopen this tab's chat, list the others."""
        return self.show(session, self.archive.restore(session.saved, snapshot))

    # Handlers

    def _session(self, request: gr.Request) -> Session:
        return self._sessions.get(request.session_hash or "")

    def new_chat(self, request: gr.Request) -> tuple[Any, ...]:
        session = self._session(request)
        return self.show(session, self.archive.new(session.saved))

    def delete(self, request: gr.Request) -> tuple[Any, ...]:
        """Delete the open chat (from this browser too) and start a new one."""
        session = self._session(request)
        return self.show(session, self.archive.delete(session.saved))

    def reopen(self, picked: Any, snapshot: Any, request: gr.Request) -> tuple[Any, ...]:
        """A past chat picked in the list: its record, sent by the browser, checked and opened."""
        session = self._session(request)
        try:
            change = self.archive.reopen(session.saved, snapshot)
        except (SnapshotError, StoredConversationError) as error:
            raise as_user_error(error) from error
        return self.show(session, change)

    def import_file(self, path: object, request: gr.Request) -> tuple[Any, ...]:
        """A JSON export, uploaded: opened as a new chat, and saved."""
        if not isinstance(path, str):
            raise gr.Error("Choose a JSON export to import.", print_exception=False)
        try:
            raw = Path(path).read_bytes()[: self._max_import_bytes + 1]
        except OSError:
            raise gr.Error("The uploaded file could not be read.", print_exception=False) from None
        finally:
            # An upload is served back from Gradio's cache to anyone who has its path: it goes as soon as it is read.
            with contextlib.suppress(OSError):
                os.remove(path)
        session = self._session(request)
        try:
            change = self.archive.import_chat(session.saved, raw)
        except ConversationError as error:
            raise as_user_error(error) from error
        return self.show(session, change)

    def _exporter(self, kind: Literal["md", "json"]) -> Callable[[gr.Request], dict[str, str]]:
        def export(request: gr.Request) -> dict[str, str]:
            # Reading only: a session that is not kept is not made for it.
            session = self._sessions.peek(request.session_hash or "")
            if session is None or not session.turns:
                raise gr.Error("There is nothing to export yet.", print_exception=False)
            file = self.archive.export(session.saved, session.turns, kind)
            return {"name": file.name, "type": file.type, "content": file.content}

        export.__name__ = f"export_{kind}"
        return export
