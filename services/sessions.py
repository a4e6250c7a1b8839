"""What the server keeps per session (a browser tab, a gradio_client.Client): its conversation and its counter.

Kept here rather than in `gr.State`, so that an API endpoint returns exactly its documented value (a State is an
extra, hidden output over HTTP), a reply stopped mid-stream can still store what arrived, and the memory it takes
is bounded: at most `capacity` sessions, each dropped after `ttl` seconds unused, each conversation capped in
messages and characters.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.conversation import Turn, bound_turns
from services.saved_chats import SavedChats

__all__ = ["Session", "SessionStore"]


@dataclass
class Session:
    """One session's data. `turns` is replaced, never mutated in place, so readers always see a whole list."""

    turns: list[Turn] = field(default_factory=list)
    # The page's saved chats: what this tab's browser holds, and the chat it has open.
    saved: SavedChats = field(default_factory=SavedChats)
    counter: int = 0
    # While a reply streams: how to stop it (the page's Stop button), None otherwise.
    stop: Callable[[], None] | None = None
    used: float = 0.0


class SessionStore:
    """Sessions by key (Gradio's session hash), least recently used first out."""

    def __init__(
        self,
        *,
        capacity: int,
        ttl: float,
        max_messages: int,
        max_chars: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.max_messages = max_messages
        self.max_chars = max_chars
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: str) -> Session:
        """The session for `key`, a new one when it is unknown or has expired (an empty key's is never kept)."""
        if not key:
            return Session()
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None or now - session.used > self.ttl:
                session = Session()
                self._sessions[key] = session
            session.used = now
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
            self._expire(now)
        return session

    def peek(self, key: str) -> Session | None:
        """The session for `key` if it is kept and alive; creates nothing (for events that only read)."""
        with self._lock:
            session = self._sessions.get(key)
        if session is None or self._clock() - session.used > self.ttl:
            return None
        return session

    def _expire(self, now: float) -> None:
        # Oldest first: stop at the first one still in use.
        while self._sessions:
            key, oldest = next(iter(self._sessions.items()))
            if now - oldest.used <= self.ttl:
                break
            del self._sessions[key]

    def set_turns(self, session: Session, turns: Sequence[Turn]) -> list[Turn]:
        """Replace the conversation with `turns`, bounded; returns what was kept (the open chat's `let_go` counts
        what was not, for its next save to say so)."""
        session.turns = bound_turns(turns, max_messages=self.max_messages, max_chars=self.max_chars)
        session.saved.open.let_go += len(turns) - len(session.turns)
        return session.turns

    def drop(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)
