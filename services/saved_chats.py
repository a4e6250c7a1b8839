"""Saved chats: conversations kept in the visitor's browser, sealed by the server, checked when they come back.

The browser holds each conversation under its own key (so tabs never overwrite each other's), as a record the
server signs with HISTORY_SECRET (HMAC-SHA256). What comes back from the browser is client input: a record
whose signature fails (tampered with, or signed with another secret) is refused, and one that passes is still
parsed with the strict conversation parser. The budgets keep the whole below the browser's storage limit: the
oldest conversations go first, and the caller is told which.

Export gives the same conversation as Markdown (to read) and JSON (to import); an import is parsed like any
stored conversation and given a new id.

`SavedChats` is one tab's view of them (the summaries its browser holds, and the chat it has open), and
`ChatArchive` makes every change of it (new, restore, reopen, save, delete, import): each returns a `Change`, plain
data the page shows, with the `plan` the browser carries out once (`ui/saved_chats.js`): write this record, drop
those, remember the open chat. The server never keeps the records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from services.conversation import Limits, Turn, bound_turns, parse_turns, total_chars, turns_to_json
from services.errors import ConversationError, SnapshotError, StoredConversationError
from services.text import clean
from services.trimming import drop_oldest

__all__ = [
    "EXPORT_FORMAT",
    "Change",
    "ChatArchive",
    "Conversation",
    "ExportFile",
    "Meta",
    "OpenChat",
    "SavePlan",
    "SavedChats",
    "Seal",
    "export_json",
    "export_markdown",
    "import_json",
    "new_conversation_id",
    "plan_save",
    "title_for",
]

EXPORT_FORMAT = "space-chat/conversation"
_RECORD_VERSION = 1
_TITLE_CHARS = 60
_ID_CHARS = 32
_LATEST = 1e11  # seconds since 1970: a date past year 5000 is not one a browser or this server writes
_MAX_LISTED = 1000  # summaries accepted in one snapshot: far more than the storage budget can hold

logger = logging.getLogger(__name__)


def new_conversation_id() -> str:
    return secrets.token_hex(_ID_CHARS // 2)


def title_for(turns: Sequence[Turn]) -> str:
    """A title from the first user message: its first line, shortened."""
    first = next((turn.text for turn in turns if turn.role == "user" and turn.text.strip()), "")
    line = " ".join(first.split())
    if not line:
        return "New chat"
    return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class Meta:
    """What the list of past conversations shows, and the budget counts: readable without the whole record."""

    id: str
    title: str
    created: float
    updated: float
    chars: int


@dataclass(frozen=True)
class Conversation:
    meta: Meta
    turns: tuple[Turn, ...]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _meta_json(meta: Meta) -> dict[str, Any]:
    # The id is the storage key, not part of what is signed: a tab may keep a copy under a new key.
    return {"title": meta.title, "created": meta.created, "updated": meta.updated, "chars": meta.chars}


def _timestamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _LATEST:
        raise StoredConversationError("A saved conversation has a malformed date.")
    return float(value)


def _check_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isalnum():
        raise StoredConversationError("A saved conversation has a malformed id.")
    return value


class Seal:
    """Signs the records the browser keeps and checks those that come back."""

    def __init__(self, secret: str, *, limits: Limits) -> None:
        self._key = hashlib.sha256(b"space-chat history v1\0" + secret.encode()).digest()
        self.limits = limits

    def _sign(self, purpose: bytes, value: Any) -> str:
        return hmac.new(self._key, purpose + b"\0" + _canonical(value), hashlib.sha256).hexdigest()

    def seal(self, conversation: Conversation) -> str:
        """The record to store, as a JSON string."""
        meta = _meta_json(conversation.meta)
        turns = turns_to_json(conversation.turns)
        record = {
            "v": _RECORD_VERSION,
            "meta": meta,
            "meta_sig": self._sign(b"meta", meta),
            "turns": turns,
            "sig": self._sign(b"record", {"meta": meta, "turns": turns}),
        }
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False)

    def _checked(self, purpose: bytes, value: Any, signature: object) -> None:
        if not isinstance(signature, str) or not hmac.compare_digest(self._sign(purpose, value), signature):
            raise StoredConversationError(
                "A saved conversation did not pass its check (altered, or saved under another HISTORY_SECRET)."
            )

    def open_meta(self, key: object, meta: object, signature: object) -> Meta:
        """One entry of the list of past conversations, checked; the record itself stays in the browser."""
        conversation_id = _check_id(key)
        if not isinstance(meta, Mapping) or set(meta) != {"title", "created", "updated", "chars"}:
            raise StoredConversationError("A saved conversation has a malformed summary.")
        self._checked(b"meta", dict(meta), signature)
        title, chars = meta["title"], meta["chars"]
        if not isinstance(title, str) or not isinstance(chars, int) or isinstance(chars, bool):
            raise StoredConversationError("A saved conversation has a malformed summary.")
        return Meta(
            conversation_id,
            clean(title)[:_TITLE_CHARS],
            _timestamp(meta["created"]),
            _timestamp(meta["updated"]),
            chars,
        )

    def open(self, key: object, raw: object) -> Conversation:
        """A stored record as a conversation: its signatures checked, then its turns parsed strictly."""
        conversation_id = _check_id(key)
        if not isinstance(raw, str):
            raise StoredConversationError("A saved conversation is not a record.")
        if len(raw) > 8 * self.limits.max_chars + 65_536:
            raise StoredConversationError("A saved conversation is larger than any this Space stores.")
        try:
            record = json.loads(raw)
        except ValueError:
            raise StoredConversationError("A saved conversation could not be read.") from None
        if not isinstance(record, dict) or set(record) != {"v", "meta", "meta_sig", "turns", "sig"}:
            raise StoredConversationError("A saved conversation is not a record of this Space.")
        if record["v"] != _RECORD_VERSION:
            raise StoredConversationError("A saved conversation was saved by another version of this Space.")
        self._checked(b"record", {"meta": record["meta"], "turns": record["turns"]}, record["sig"])
        meta = self.open_meta(conversation_id, record["meta"], record["meta_sig"])
        try:
            turns = parse_turns(record["turns"], limits=self.limits)
        except ConversationError as error:
            raise StoredConversationError(f"A saved conversation holds what this Space never stores: {error}") from None
        return Conversation(meta, turns)


@dataclass(frozen=True)
class SavePlan:
    """What the browser should do: write `record` under `conversation_id`, delete `drop`, and say `notice`."""

    conversation_id: str
    record: str
    meta: Meta
    drop: tuple[str, ...] = ()
    notice: str = ""


def plan_save(
    seal: Seal,
    conversation_id: str,
    turns: Sequence[Turn],
    *,
    created: float,
    listed: Iterable[Meta],
    conversation_chars: int,
    total_chars_budget: int,
    title: str = "",
    let_go: int = 0,
    now: float | None = None,
) -> SavePlan:
    """Seal this conversation for the browser, within both budgets.

    A conversation over `conversation_chars` keeps its newest turns; past `total_chars_budget`, the least
    recently updated other conversations are dropped until everything fits. Either way `notice` says so, and
    also when the caller already let `let_go` old messages go. `title` keeps the one the chat was first given.
    """
    now = time.time() if now is None else now
    notices: list[str] = []
    kept = bound_turns(turns, max_messages=seal.limits.max_messages, max_chars=conversation_chars)
    gone = let_go + len(turns) - len(kept)
    if gone:
        notices.append(
            f"Only the latest {len(kept)} of this chat's {len(kept) + gone} messages are kept "
            f"(HISTORY_CONVERSATION_CHARS is {conversation_chars:,} characters)."
        )
    meta = Meta(conversation_id, title or title_for(turns), created or now, now, total_chars(kept))
    dropped = over_budget(listed, keep=meta, budget=total_chars_budget)
    if dropped:
        titles = ", ".join(f"“{m.title}”" for m in dropped[:5]) + (" and more" if len(dropped) > 5 else "")
        notices.append(
            f"To stay within your browser's storage, {len(dropped)} oldest saved chat(s) were removed: {titles}."
        )
    record = seal.seal(Conversation(meta, tuple(kept)))
    return SavePlan(conversation_id, record, meta, tuple(m.id for m in dropped), " ".join(notices))


def over_budget(listed: Iterable[Meta], *, keep: Meta | None, budget: int) -> list[Meta]:
    """The least recently updated saved chats to drop so that all of them, `keep` included, fit in `budget`
    characters (`services.trimming`'s rules, with `keep` pinned)."""
    kept_id = keep.id if keep is not None else None
    others = sorted((m for m in listed if m.id != kept_id), key=lambda m: m.updated)
    room = budget - (keep.chars if keep is not None else 0)
    after = [sum(m.chars for m in others)]
    for meta in others:
        after.append(after[-1] - meta.chars)
    return others[: drop_oldest(others, fits=lambda gone: after[gone] <= room)]


def export_markdown(conversation: Conversation) -> str:
    """The conversation to read: a heading, then each message under its speaker (thinking as a quote)."""
    lines = [f"# {conversation.meta.title}", ""]
    for turn in conversation.turns:
        lines.append("## You" if turn.role == "user" else "## Assistant")
        lines.append("")
        if turn.thinking:
            seconds = f" ({turn.thinking_seconds:g} s)" if turn.thinking_seconds is not None else ""
            lines.append(f"> **Thinking{seconds}**")
            lines.extend(f"> {line}" if line else ">" for line in turn.thinking.splitlines())
            lines.append("")
        lines.append(turn.text)
        if turn.notice:
            lines += ["", f"*{turn.notice}*"]
        lines.append("")
    return "\n".join(lines)


def export_json(conversation: Conversation) -> str:
    """The conversation to import again: exactly what `import_json` reads back."""
    meta = conversation.meta
    return json.dumps(
        {
            "format": EXPORT_FORMAT,
            "version": 1,
            "title": meta.title,
            "created": meta.created,
            "updated": meta.updated,
            "messages": turns_to_json(conversation.turns),
        },
        ensure_ascii=False,
        indent=2,
    )


def import_json(raw: bytes, *, limits: Limits, max_bytes: int) -> Conversation:
    """A JSON export (this Space's, or one written by hand in its format) as a new conversation."""
    if len(raw) > max_bytes:
        raise ConversationError("file", f"is {len(raw):,} bytes; at most {max_bytes:,} are accepted.")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ConversationError("file", "is not a JSON export of a conversation.") from None
    if not isinstance(value, dict) or value.get("format") != EXPORT_FORMAT:
        raise ConversationError("file", f'is not a conversation export (its "format" must be {EXPORT_FORMAT!r}).')
    unknown = set(value) - {"format", "version", "title", "created", "updated", "messages"}
    if unknown or value.get("version") != 1:
        raise ConversationError("file", "is a conversation export of another version.")
    turns = parse_turns(value.get("messages"), limits=limits)
    if not turns:
        raise ConversationError("file", "holds no messages.")
    title = value.get("title")
    created = value.get("created")
    now = time.time()
    # A date the records can hold (see `_timestamp`), else the time of the import.
    dated = isinstance(created, (int, float)) and not isinstance(created, bool) and 0 < created < _LATEST
    meta = Meta(
        new_conversation_id(),
        clean(title)[:_TITLE_CHARS] if isinstance(title, str) and title.strip() else title_for(turns),
        float(created) if dated and isinstance(created, (int, float)) else now,
        now,
        total_chars(turns),
    )
    return Conversation(meta, turns)


# ONE TAB'S SAVED CHATS, AND EVERY CHANGE OF THEM


@dataclass
class OpenChat:
    """The chat a tab has open, as its saved copy knows it."""

    id: str = field(default_factory=new_conversation_id)
    created: float = field(default_factory=time.time)
    title: str = ""  # fixed by the chat's first save
    # `updated` of the copy this tab last wrote or read: a newer one in the browser was written by another tab.
    saved_at: float | None = None
    let_go: int = 0  # oldest messages dropped from the conversation since the last save, to say so

    @classmethod
    def of(cls, meta: Meta) -> OpenChat:
        return cls(meta.id, meta.created, meta.title, meta.updated)


@dataclass
class SavedChats:
    """One tab's view of the chats its browser holds (as of its last look) and the chat it has open."""

    listed: tuple[Meta, ...] = ()
    open: OpenChat = field(default_factory=OpenChat)

    def is_listed(self, conversation_id: str) -> bool:
        return any(meta.id == conversation_id for meta in self.listed)

    def unlisted(self, *ids: str) -> tuple[Meta, ...]:
        return tuple(meta for meta in self.listed if meta.id not in ids)


@dataclass(frozen=True)
class Change:
    """What an action made of a tab's saved chats, as plain data for the page.

    `turns`: the conversation now open, None when it did not change. `listing`: (title, id) of the saved chats,
    newest first, and `selected` the open one when it is listed. `plan`: what the browser does once (its `nonce`
    makes a replayed plan a no-op).
    """

    turns: tuple[Turn, ...] | None
    listing: tuple[tuple[str, str], ...]
    selected: str | None
    notice: str
    plan: dict[str, Any]


@dataclass(frozen=True)
class ExportFile:
    name: str
    type: str
    content: str


_KEEP: Any = object()  # a plan that leaves the tab's open chat as it is


def _plan(
    *, write: SavePlan | None = None, base: float | None = None, drop: Iterable[str] = (), current: Any = _KEEP
) -> dict[str, Any]:
    """What the browser does once: write a record (`base`: when this tab last stored it), drop records, and set
    (or, with None, forget) the chat this tab has open."""
    plan: dict[str, Any] = {
        "nonce": secrets.token_hex(8),
        "write": {"id": write.conversation_id, "record": write.record, "base": base} if write else None,
        "drop": list(dict.fromkeys([*drop, *(write.drop if write else ())])),
    }
    if current is not _KEEP:
        plan["current"] = current
    return plan


@dataclass(frozen=True)
class Snapshot:
    """What a browser sends of its saved chats: every summary, and at most one whole record (the chat to open)."""

    summaries: tuple[Mapping[str, Any], ...]
    opened: tuple[object, object] | None  # (id, record)


def parse_snapshot(value: object) -> Snapshot:
    """The browser's snapshot (`saved_chats.js`), checked for shape and size before any signature is computed."""
    if value is None:
        return Snapshot((), None)
    if not isinstance(value, Mapping) or set(value) - {"metas", "open"}:
        raise SnapshotError("The saved chats sent by the browser could not be read.")
    summaries = value.get("metas") or []
    opened = value.get("open")
    if not isinstance(summaries, list) or len(summaries) > _MAX_LISTED:
        raise SnapshotError("The saved chats sent by the browser could not be read.")
    if not all(isinstance(item, Mapping) for item in summaries):
        raise SnapshotError("The saved chats sent by the browser could not be read.")
    if opened is not None and not (isinstance(opened, Mapping) and set(opened) == {"id", "record"}):
        raise SnapshotError("The saved chat sent by the browser could not be read.")
    return Snapshot(tuple(summaries), (opened["id"], opened["record"]) if opened is not None else None)


def _reached_a_model(turns: Sequence[Turn]) -> bool:
    """Whether any answer arrived: a chat whose every reply failed before a word (nothing configured, the server
    down) is not worth keeping."""
    return any(turn.role == "assistant" and (turn.text.strip() or turn.thinking.strip()) for turn in turns)


def _file_name(title: str, suffix: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "chat"
    return f"{slug}.{suffix}"


class ChatArchive:
    """Every change of a tab's saved chats, by the budgets: `HISTORY_CONVERSATION_CHARS` per chat and
    `HISTORY_TOTAL_CHARS` for all of them."""

    def __init__(self, seal: Seal, *, conversation_chars: int, total_chars: int, max_import_bytes: int) -> None:
        self.seal = seal
        self.conversation_chars = conversation_chars
        self.total_chars = total_chars
        self.max_import_bytes = max_import_bytes

    def _change(
        self, saved: SavedChats, plan: dict[str, Any], *, turns: Sequence[Turn] | None = None, notice: str = ""
    ) -> Change:
        listed = sorted(saved.listed, key=lambda m: m.updated, reverse=True)
        selected = saved.open.id if saved.is_listed(saved.open.id) else None
        return Change(
            None if turns is None else tuple(turns),
            tuple((m.title, m.id) for m in listed),
            selected,
            notice,
            plan,
        )

    def listing(self, saved: SavedChats) -> Change:
        """The list as it is, with nothing for the browser to do."""
        return self._change(saved, _plan())

    def restore(self, saved: SavedChats, snapshot: object) -> Change:
        """On page load: check what the browser holds, reopen this tab's chat, list the others, and drop what
        failed its check or no longer fits."""
        try:
            parsed = parse_snapshot(snapshot)
        except SnapshotError as error:
            logger.warning("Page load: %s", error)
            parsed = Snapshot((), None)
        listed: list[Meta] = []
        refused: list[str] = []
        for item in parsed.summaries:
            try:
                listed.append(self.seal.open_meta(item.get("id"), item.get("meta"), item.get("meta_sig")))
            except StoredConversationError:
                refused.append(str(item.get("id"))[:64])
        notices = []
        if refused:
            notices.append(
                f"{len(refused)} saved chat(s) in this browser could not be verified (altered, or saved before this "
                "Space's HISTORY_SECRET changed) and were removed."
            )
        saved.listed, saved.open = tuple(listed), OpenChat()
        turns: tuple[Turn, ...] = ()
        if parsed.opened is not None:
            key, record = parsed.opened
            try:
                conversation = self.seal.open(key, record)
            except StoredConversationError as error:
                refused.append(str(key)[:64])
                # Its summary may have passed on its own (only the turns were altered): it leaves the list too.
                saved.listed = saved.unlisted(str(key))
                if not notices:
                    notices.append(f"{error} It was not shown, and was removed.")
            else:
                turns = self._open(saved, conversation)
        opened = next((m for m in saved.listed if m.id == saved.open.id), None)
        dropped = [m.id for m in over_budget(saved.listed, keep=opened, budget=self.total_chars)]
        if dropped:
            saved.listed = saved.unlisted(*dropped)
            notices.append(f"To stay within your browser's storage, {len(dropped)} oldest saved chat(s) were removed.")
        plan = _plan(drop=[*refused, *dropped], current=saved.open.id if turns else None)
        return self._change(saved, plan, turns=turns, notice=" ".join(notices))

    def _open(self, saved: SavedChats, conversation: Conversation) -> tuple[Turn, ...]:
        saved.open = OpenChat.of(conversation.meta)
        if not saved.is_listed(conversation.meta.id):
            saved.listed = (*saved.listed, conversation.meta)
        return conversation.turns

    def reopen(self, saved: SavedChats, snapshot: object) -> Change:
        """A past chat picked in the list: its record, sent by the browser, checked and opened.

        Raises:
            SnapshotError, StoredConversationError: what the browser sent cannot be opened.
        """
        opened = parse_snapshot(snapshot).opened
        if opened is None:
            raise StoredConversationError("That chat is no longer saved in this browser.")
        turns = self._open(saved, self.seal.open(*opened))
        return self._change(saved, _plan(current=saved.open.id), turns=turns)

    def new(self, saved: SavedChats) -> Change:
        saved.open = OpenChat()
        return self._change(saved, _plan(current=None), turns=())

    def delete(self, saved: SavedChats) -> Change:
        """Delete the open chat (from the browser too) and start a new one."""
        gone = saved.open.id
        saved.listed, saved.open = saved.unlisted(gone), OpenChat()
        return self._change(saved, _plan(drop=[gone], current=None), turns=())

    def save(self, saved: SavedChats, turns: Sequence[Turn]) -> Change:
        """After a turn: seal the open chat for the browser, within the budgets (the notice says what had to go).

        A chat that no model ever answered is not kept, and an emptied one leaves the browser.
        """
        chat = saved.open
        if not _reached_a_model(turns):
            saved.listed, chat.saved_at = saved.unlisted(chat.id), None
            return self._change(saved, _plan(drop=[chat.id]))
        plan = plan_save(
            self.seal,
            chat.id,
            turns,
            created=chat.created,
            listed=saved.listed,
            conversation_chars=self.conversation_chars,
            total_chars_budget=self.total_chars,
            title=chat.title,
            let_go=chat.let_go,
        )
        base = chat.saved_at
        chat.title, chat.saved_at, chat.let_go = plan.meta.title, plan.meta.updated, 0
        saved.listed = (*saved.unlisted(plan.meta.id, *plan.drop), plan.meta)
        return self._change(saved, _plan(write=plan, base=base), notice=plan.notice)

    def import_chat(self, saved: SavedChats, raw: bytes) -> Change:
        """A JSON export, uploaded: parsed like any stored chat, opened as a new one, and saved.

        Raises:
            ConversationError: the file is not an export this Space can read.
        """
        limits = self.seal.limits
        conversation = import_json(raw, limits=limits, max_bytes=self.max_import_bytes)
        turns = bound_turns(conversation.turns, max_messages=limits.max_messages, max_chars=self.conversation_chars)
        saved.open = replace(OpenChat.of(conversation.meta), saved_at=None, let_go=len(conversation.turns) - len(turns))
        return replace(self.save(saved, turns), turns=tuple(turns))

    def export(self, saved: SavedChats, turns: Sequence[Turn], kind: Literal["md", "json"]) -> ExportFile:
        """The open chat as a file to download: Markdown to read, or JSON to import again."""
        meta = Meta(saved.open.id, title_for(turns), saved.open.created, time.time(), 0)
        conversation = Conversation(meta, tuple(turns))
        name = _file_name(meta.title, kind)
        if kind == "md":
            return ExportFile(name, "text/markdown", export_markdown(conversation))
        return ExportFile(name, "application/json", export_json(conversation))
