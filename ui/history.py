"""Past conversations in the page's sidebar, kept in the visitor's browser (see services/history.py).

The browser holds the sealed records; the server never keeps them. On page load the browser sends the summaries of
all, and the whole record of the chat this tab had open (a reload reopens it); the server checks them, lists the
chats, and answers with a plan (write this record, drop those) that `history.js` carries out once. A chat is
saved once per turn, when the reply ends or is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from services.config import Settings
from services.conversation import Limits, Turn
from services.errors import ConversationError, ServiceError, StoredConversationError
from services.history import (
    Conversation,
    HistorySeal,
    Meta,
    SavePlan,
    export_json,
    export_markdown,
    import_json,
    new_conversation_id,
    plan_save,
    title_for,
)
from services.sessions import Session, SessionStore
from ui.errors import as_user_error

__all__ = ["HISTORY_JS", "HistoryPanel", "SnapshotError"]

logger = logging.getLogger(__name__)

HISTORY_JS = (Path(__file__).with_name("history.js")).read_text(encoding="utf-8")
_MAX_SAVED = 1000  # summaries accepted in one snapshot: far more than the storage budget can hold
_PAGE = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
_APPLY = "(plan) => window.spaceChatHistory.apply(plan)"
_KEEP = object()  # a plan that leaves this tab's open chat as it is


class SnapshotError(ServiceError):
    """Raised when what the browser sent of its saved chats is not the shape `history.js` sends."""


def _parse_snapshot(value: object) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None]:
    """The browser's snapshot, checked for shape and size before any signature is computed."""
    if value is None:
        return [], None
    if not isinstance(value, Mapping) or set(value) - {"metas", "open"}:
        raise SnapshotError("The saved chats sent by the browser could not be read.")
    metas = value.get("metas") or []
    opened = value.get("open")
    if not isinstance(metas, list) or len(metas) > _MAX_SAVED or not all(isinstance(m, Mapping) for m in metas):
        raise SnapshotError("The saved chats sent by the browser could not be read.")
    if opened is not None and not (isinstance(opened, Mapping) and set(opened) == {"id", "record"}):
        raise SnapshotError("The saved chat sent by the browser could not be read.")
    return metas, opened


def _file_name(title: str, suffix: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "chat"
    return f"{slug}.{suffix}"


class HistoryPanel:
    """The sidebar's components and the handlers behind them; `ui.chat.ChatPanel` wires them to the chat."""

    def __init__(self, settings: Settings, sessions: SessionStore) -> None:
        secret = settings.history_secret
        if not secret:
            logger.warning(
                "HISTORY_SECRET is not set: saved chats are signed with a key made for this start only, so visitors' "
                "saved chats will not survive a restart. Set HISTORY_SECRET (a Space secret) to keep them."
            )
            secret = secrets.token_hex(32)
        self.limits = Limits(settings.max_history_messages, settings.history_conversation_chars)
        self.seal = HistorySeal(secret, limits=self.limits)
        self._settings = settings
        self._sessions = sessions

    # Components

    def build(self) -> None:
        """The sidebar: new chat, the list of past chats, delete, export, import, and the notices."""
        with gr.Sidebar(label="Chats", open=True, elem_id="history"):
            self.new_button = gr.Button("New chat", variant="primary", size="sm", elem_id="new-chat")
            self.past = gr.Radio(choices=[], label="Past chats", elem_id="past-chats", interactive=True)
            self.delete_button = gr.Button("Delete this chat", size="sm", variant="stop", elem_id="delete-chat")
            with gr.Row():
                self.export_md = gr.Button("Export Markdown", size="sm", elem_id="export-md")
                self.export_json = gr.Button("Export JSON", size="sm", elem_id="export-json")
            self.importer = gr.UploadButton(
                "Import JSON", file_types=[".json"], file_count="single", size="sm", elem_id="import-json"
            )
            self.notice = gr.Markdown("", elem_id="history-notice")
            self.storage_notice = gr.Markdown("", elem_id="storage-notice")
        # What passes between the server and history.js: values of the page, never rendered.
        self.snapshot = gr.JSON(visible=False, elem_id="history-snapshot")
        self.plan = gr.JSON(visible=False, elem_id="history-plan")
        self.download = gr.JSON(visible=False, elem_id="history-download")

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What a turn ends by updating: the list, the notice, the plan."""
        return [self.past, self.notice, self.plan]

    def apply_after(self, event: Any) -> None:
        """Have the browser carry out the plan `event` returned (a step in the page only)."""
        event.then(None, [self.plan], [self.storage_notice], js=_APPLY, **_PAGE)

    # What the handlers return

    def selection(self, session: Session) -> str | None:
        """The list's value: this session's chat, when it is listed (saved once at least)."""
        return session.conversation_id if any(m.id == session.conversation_id for m in session.known) else None

    def _list(self, session: Session) -> Any:
        metas = sorted(session.known, key=lambda m: m.updated, reverse=True)
        return gr.Radio(choices=[(m.title, m.id) for m in metas], value=self.selection(session))

    @staticmethod
    def _plan(
        *, write: SavePlan | None = None, base: float | None = None, drop: Sequence[str] = (), current: object = _KEEP
    ) -> dict[str, Any]:
        """What history.js does once: write a record (`base`: when this tab last stored it), drop records, and set
        (or, with None, forget) the chat this tab has open."""
        plan: dict[str, Any] = {
            "nonce": secrets.token_hex(8),
            "write": {"id": write.conversation_id, "record": write.record, "base": base} if write else None,
            "drop": list(dict.fromkeys([*drop, *(write.drop if write else ())])),
        }
        if current is not _KEEP:
            plan["current"] = current
        return plan

    def after_turn(self, session: Session) -> tuple[Any, Any, Any]:
        """Save this session's chat: the list, a notice when something had to go, and the plan."""
        if not session.turns:
            return self._dropped(session)
        plan = plan_save(
            self.seal,
            session.conversation_id,
            session.turns,
            created=session.created,
            known=session.known,
            conversation_chars=self._settings.history_conversation_chars,
            total_chars_budget=self._settings.history_total_chars,
            title=session.title,
            trimmed=session.trimmed,
        )
        session.trimmed, session.title = 0, plan.meta.title
        base, session.stored_updated = session.stored_updated, plan.meta.updated
        session.known = (*tuple(m for m in session.known if m.id != plan.meta.id and m.id not in plan.drop), plan.meta)
        if plan.notice:
            gr.Warning(plan.notice)
        return self._list(session), plan.notice, self._plan(write=plan, base=base)

    def _dropped(self, session: Session) -> tuple[Any, Any, Any]:
        """An emptied chat leaves the browser too."""
        gone = session.conversation_id
        session.known = tuple(m for m in session.known if m.id != gone)
        session.stored_updated = None
        return self._list(session), "", self._plan(drop=[gone])

    def start_new(self, session: Session) -> None:
        session.turns = []
        session.conversation_id = new_conversation_id()
        session.created = time.time()
        session.stored_updated = None
        session.title, session.trimmed = "", 0

    # Handlers

    def restore(self, session: Session, snapshot: object) -> tuple[list[Turn], Any, Any, Any]:
        """On page load: check what the browser holds, reopen this tab's chat, list the others."""
        try:
            metas, opened = _parse_snapshot(snapshot)
        except SnapshotError as error:
            logger.warning("Page load: %s", error)
            metas, opened = [], None
        known: list[Meta] = []
        refused: list[str] = []
        for item in metas:
            try:
                known.append(self.seal.open_meta(item.get("id"), item.get("meta"), item.get("meta_sig")))
            except StoredConversationError:
                refused.append(str(item.get("id"))[:64])
        notices = []
        if refused:
            notices.append(
                f"{len(refused)} saved chat(s) in this browser could not be verified (altered, or saved before this "
                "Space's HISTORY_SECRET changed) and were removed."
            )
        session.known = tuple(known)
        self.start_new(session)
        if opened is not None:
            try:
                conversation = self.seal.open(opened["id"], opened["record"])
            except StoredConversationError as error:
                refused.append(str(opened["id"])[:64])
                # Its summary may have passed on its own (only the turns were altered): it goes from the list too.
                session.known = tuple(m for m in session.known if m.id != opened["id"])
                if not notices:
                    notices.append(f"{error} It was not shown, and was removed.")
            else:
                self._open(session, conversation)
        budget_drop = self._over_budget(session)
        if budget_drop:
            notices.append(
                f"To stay within your browser's storage, {len(budget_drop)} oldest saved chat(s) were removed."
            )
        notice = " ".join(notices)
        if notice:
            gr.Warning(notice)
        reopened = opened is not None and session.turns
        plan = self._plan(drop=[*refused, *budget_drop], current=session.conversation_id if reopened else None)
        return session.turns, self._list(session), notice, plan

    def _over_budget(self, session: Session) -> list[str]:
        """The oldest saved chats past HISTORY_TOTAL_CHARS (another tab, or a lower budget since they were saved)."""
        by_age = sorted(session.known, key=lambda m: m.updated)
        used = sum(m.chars for m in by_age)
        drop: list[str] = []
        while len(by_age) > 1 and used > self._settings.history_total_chars:
            oldest = by_age.pop(0)
            if oldest.id == session.conversation_id:
                by_age.append(oldest)
                continue
            used -= oldest.chars
            drop.append(oldest.id)
        session.known = tuple(m for m in session.known if m.id not in drop)
        return drop

    def _open(self, session: Session, conversation: Conversation) -> None:
        session.conversation_id = conversation.meta.id
        session.created = conversation.meta.created
        session.stored_updated = conversation.meta.updated
        session.title, session.trimmed = conversation.meta.title, 0
        self._sessions.set_turns(session, conversation.turns)
        if all(m.id != conversation.meta.id for m in session.known):
            session.known = (*session.known, conversation.meta)

    def reopen(self, session: Session, snapshot: object) -> tuple[list[Turn], Any, Any, Any]:
        """A past chat picked in the list: its record, sent by the browser, checked and opened."""
        try:
            _, opened = _parse_snapshot(snapshot)
            if opened is None:
                raise StoredConversationError("That chat is no longer saved in this browser.")
            self._open(session, self.seal.open(opened["id"], opened["record"]))
        except (SnapshotError, StoredConversationError) as error:
            raise as_user_error(error) from error
        return session.turns, self._list(session), "", self._plan(current=session.conversation_id)

    def delete(self, session: Session) -> tuple[list[Turn], Any, Any, Any]:
        """Delete the open chat (from this browser too) and start a new one."""
        gone = session.conversation_id
        session.known = tuple(m for m in session.known if m.id != gone)
        self.start_new(session)
        return [], self._list(session), "", self._plan(drop=[gone], current=None)

    def new_chat(self, session: Session) -> tuple[list[Turn], Any, Any, Any]:
        self.start_new(session)
        return [], self._list(session), "", self._plan(current=None)

    def export(self, session: Session, kind: str) -> dict[str, str]:
        if not session.turns:
            raise gr.Error("There is nothing to export yet.", print_exception=False)
        turns = tuple(session.turns)
        meta = Meta(session.conversation_id, title_for(turns), session.created or time.time(), time.time(), 0)
        conversation = Conversation(meta, turns)
        name = _file_name(meta.title, kind)
        if kind == "md":
            return {"name": name, "type": "text/markdown", "content": export_markdown(conversation)}
        return {"name": name, "type": "application/json", "content": export_json(conversation)}

    def import_file(self, session: Session, path: object) -> tuple[list[Turn], Any, Any, Any]:
        """A JSON export, uploaded: parsed like any stored chat, opened as a new one, and saved."""
        if not isinstance(path, str):
            raise gr.Error("Choose a JSON export to import.", print_exception=False)
        try:
            file = Path(path)
            raw = file.read_bytes()[: self._settings.max_upload_bytes + 1]
        except OSError:
            raise gr.Error("The uploaded file could not be read.", print_exception=False) from None
        finally:
            # An upload is served back from Gradio's cache to anyone who has its path: it goes as soon as it is read.
            with contextlib.suppress(OSError):
                os.remove(path)
        try:
            conversation = import_json(raw, limits=self.limits, max_bytes=self._settings.max_upload_bytes)
        except ConversationError as error:
            raise as_user_error(error) from error
        session.conversation_id = conversation.meta.id
        session.created = conversation.meta.created
        session.stored_updated = None
        session.title, session.trimmed = conversation.meta.title, 0
        self._sessions.set_turns(session, conversation.turns)
        listing, notice, plan = self.after_turn(session)
        return session.turns, listing, notice, plan


def snapshot_js(picked: bool = False) -> str:
    """The js step that sends the browser's saved chats as the event's input (the picked one's whole record)."""
    if picked:
        return "(id, _) => [id, window.spaceChatHistory.snapshot(id)]"
    return "(_) => [window.spaceChatHistory.snapshot(null)]"
