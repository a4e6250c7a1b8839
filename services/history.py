"""Conversations kept in the visitor's browser: sealed by the server, checked when they come back, within budget.

The browser holds each conversation under its own key (so tabs never overwrite each other's), as a record the
server signs with HISTORY_SECRET (HMAC-SHA256). What comes back from the browser is client input: a record
whose signature fails (tampered with, or signed with another secret) is refused, and one that passes is still
parsed with the strict conversation parser. The budgets keep the whole below the browser's storage limit: the
oldest conversations go first, and the caller is told which.

Export gives the same conversation as Markdown (to read) and JSON (to import); an import is parsed like any
stored conversation and given a new id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.conversation import Limits, Turn, bound_turns, parse_turns, total_chars, turns_to_json
from services.errors import ConversationError, StoredConversationError
from services.text import clean

__all__ = [
    "EXPORT_FORMAT",
    "Conversation",
    "HistorySeal",
    "Meta",
    "SavePlan",
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


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _LATEST:
        raise StoredConversationError("A saved conversation has a malformed date.")
    return float(value)


def _check_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isalnum():
        raise StoredConversationError("A saved conversation has a malformed id.")
    return value


class HistorySeal:
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
            conversation_id, clean(title)[:_TITLE_CHARS], _number(meta["created"]), _number(meta["updated"]), chars
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
    seal: HistorySeal,
    conversation_id: str,
    turns: Sequence[Turn],
    *,
    created: float,
    known: Iterable[Meta],
    conversation_chars: int,
    total_chars_budget: int,
    title: str = "",
    trimmed: int = 0,
    now: float | None = None,
) -> SavePlan:
    """Seal this conversation for the browser, within both budgets.

    A conversation over `conversation_chars` keeps its newest turns; past `total_chars_budget`, the least
    recently updated other conversations are dropped until everything fits. Either way `notice` says so, and
    also when the caller already let `trimmed` old messages go. `title` keeps the one the chat was first given.
    """
    now = time.time() if now is None else now
    notices: list[str] = []
    kept = bound_turns(turns, max_messages=seal.limits.max_messages, max_chars=conversation_chars)
    gone = trimmed + len(turns) - len(kept)
    if gone:
        notices.append(
            f"Only the latest {len(kept)} of this chat's {len(kept) + gone} messages are kept "
            f"(HISTORY_CONVERSATION_CHARS is {conversation_chars:,} characters)."
        )
    meta = Meta(conversation_id, title or title_for(turns), created or now, now, total_chars(kept))
    others = sorted((m for m in known if m.id != conversation_id), key=lambda m: m.updated)
    used = meta.chars + sum(m.chars for m in others)
    dropped: list[Meta] = []
    while others and used > total_chars_budget:
        oldest = others.pop(0)
        used -= oldest.chars
        dropped.append(oldest)
    if dropped:
        titles = ", ".join(f"“{m.title}”" for m in dropped[:5]) + (" and more" if len(dropped) > 5 else "")
        notices.append(
            f"To stay within your browser's storage, {len(dropped)} oldest saved chat(s) were removed: {titles}."
        )
    record = seal.seal(Conversation(meta, tuple(kept)))
    return SavePlan(conversation_id, record, meta, tuple(m.id for m in dropped), " ".join(notices))


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
    # A date the records can hold (see `_number`), else the time of the import.
    dated = isinstance(created, (int, float)) and not isinstance(created, bool) and 0 < created < _LATEST
    meta = Meta(
        new_conversation_id(),
        clean(title)[:_TITLE_CHARS] if isinstance(title, str) and title.strip() else title_for(turns),
        float(created) if dated and isinstance(created, (int, float)) else now,
        now,
        total_chars(turns),
    )
    return Conversation(meta, turns)
