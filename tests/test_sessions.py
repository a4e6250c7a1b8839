"""Tests for services/sessions.py: the bounded, expiring store of what the server keeps per session."""

from __future__ import annotations

import pytest

from services.conversation import Turn
from services.sessions import SessionStore

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock, *, capacity: int = 3, ttl: float = 60.0, max_messages: int = 4, max_chars: int = 100):
    """A store on the fake clock."""
    return SessionStore(capacity=capacity, ttl=ttl, max_messages=max_messages, max_chars=max_chars, clock=clock)


class TestGet:
    def test_new_key_gets_a_fresh_session(self):
        """An unknown key gets an empty session, marked used now, under a conversation id of its own."""
        clock = Clock()
        sessions = store(clock)
        session = sessions.get("a")
        assert (session.turns, session.counter, session.stop, session.used) == ([], 0, None, 500.0)
        assert session.saved.listed == ()
        assert len(session.saved.open.id) == 32
        assert len(sessions) == 1

    def test_a_session_made_again_never_saves_under_an_empty_id(self):
        """A session evicted and made again (a flood of new ones pushed it out) gets a new id, never "" (its
        next save would have gone under an empty id, and been called altered after a reload)."""
        clock = Clock()
        sessions = store(clock, capacity=1)
        first = sessions.get("a")
        sessions.get("b")
        again = sessions.get("a")
        assert again is not first
        assert again.saved.open.id
        assert again.saved.open.id != first.saved.open.id

    def test_an_empty_key_is_never_kept(self):
        """A request without a session gets a session of its own that nothing else can reach."""
        sessions = store(Clock())
        sessions.get("").counter = 5
        assert sessions.get("").counter == 0
        assert len(sessions) == 0


class TestPeek:
    def test_peek_creates_nothing(self):
        """Events that only read (export, Stop) find no session where none is kept, and make none."""
        sessions = store(Clock())
        assert sessions.peek("a") is None
        assert len(sessions) == 0

    def test_peek_finds_a_kept_session_until_it_expires(self):
        """A kept session is found as it is, without being marked used; an expired one is not."""
        clock = Clock()
        sessions = store(clock, ttl=60)
        kept = sessions.get("a")
        clock.now += 30
        assert sessions.peek("a") is kept
        assert kept.used == 500.0
        clock.now += 31
        assert sessions.peek("a") is None

    def test_a_flood_of_peeks_evicts_nobody(self):
        """Reads of a thousand unknown sessions leave a full store as it was."""
        sessions = store(Clock(), capacity=2)
        kept = [sessions.get("a"), sessions.get("b")]
        for i in range(1000):
            sessions.peek(f"stranger-{i}")
        assert [sessions.peek("a"), sessions.peek("b")] == kept

    def test_same_key_same_session(self):
        """A known key gets its own session back, with what was kept in it."""
        clock = Clock()
        sessions = store(clock)
        first = sessions.get("a")
        first.counter = 7
        clock.now += 10
        again = sessions.get("a")
        assert again is first
        assert again.counter == 7
        assert again.used == 510.0

    def test_drop_forgets(self):
        """A dropped session starts over; dropping an unknown key is harmless."""
        sessions = store(Clock())
        first = sessions.get("a")
        sessions.drop("a")
        sessions.drop("never-seen")
        assert len(sessions) == 0
        assert sessions.get("a") is not first


class TestCapacity:
    def test_the_least_recently_used_goes_first(self):
        """Past capacity the session used longest ago is dropped, not the one made first."""
        clock = Clock()
        sessions = store(clock, capacity=2)
        a = sessions.get("a")
        clock.now += 1
        b = sessions.get("b")
        clock.now += 1
        assert sessions.get("a") is a  # a is now the most recent
        clock.now += 1
        sessions.get("c")
        assert len(sessions) == 2
        assert sessions.get("a") is a
        assert sessions.get("b") is not b

    def test_never_more_than_capacity(self):
        """However many callers come, at most `capacity` sessions are held."""
        sessions = store(Clock(), capacity=3)
        for i in range(50):
            sessions.get(f"s{i}")
        assert len(sessions) == 3


class TestExpiry:
    def test_an_idle_session_expires(self):
        """A session unused for longer than the TTL comes back new."""
        clock = Clock()
        sessions = store(clock, ttl=60.0)
        first = sessions.get("a")
        first.counter = 3
        clock.now += 60.5
        again = sessions.get("a")
        assert again is not first
        assert again.counter == 0

    def test_exactly_the_ttl_is_still_alive(self):
        """A session used exactly TTL seconds ago is kept."""
        clock = Clock()
        sessions = store(clock, ttl=60.0)
        first = sessions.get("a")
        clock.now += 60.0
        assert sessions.get("a") is first

    def test_use_keeps_a_session_alive(self):
        """Each use restarts the TTL."""
        clock = Clock()
        sessions = store(clock, ttl=60.0)
        first = sessions.get("a")
        for _ in range(5):
            clock.now += 50
            assert sessions.get("a") is first

    def test_expired_sessions_of_others_are_removed(self):
        """Any call clears the sessions that have expired, so memory is given back without their keys coming."""
        clock = Clock()
        sessions = store(clock, capacity=10, ttl=60.0)
        sessions.get("a")
        sessions.get("b")
        clock.now += 30
        sessions.get("c")
        clock.now += 31
        sessions.get("d")
        assert len(sessions) == 2  # a and b expired; c and d remain
        c = sessions.get("c")
        assert c.used == clock.now


class TestSetTurns:
    def test_within_bounds_kept_whole(self):
        """A conversation inside both bounds is stored as given, and returned."""
        sessions = store(Clock(), max_messages=4, max_chars=100)
        session = sessions.get("a")
        turns = [Turn("user", "q"), Turn("assistant", "a")]
        assert sessions.set_turns(session, turns) == turns
        assert session.turns == turns

    def test_too_many_messages_keeps_the_newest_exchanges(self):
        """Past max_messages the oldest turns go, never leaving an answer first."""
        sessions = store(Clock(), max_messages=3, max_chars=100)
        session = sessions.get("a")
        turns = [Turn("user", "1"), Turn("assistant", "2"), Turn("user", "3"), Turn("assistant", "4")]
        assert sessions.set_turns(session, turns) == turns[2:]
        assert session.turns == turns[2:]

    def test_too_many_characters_keeps_the_newest(self):
        """Past max_chars the oldest turns go."""
        sessions = store(Clock(), max_messages=10, max_chars=25)
        session = sessions.get("a")
        turns = [Turn("user", "a" * 10), Turn("assistant", "b" * 10), Turn("user", "c" * 10), Turn("assistant", "d")]
        assert sessions.set_turns(session, turns) == turns[2:]

    def test_the_list_is_replaced_not_mutated(self):
        """Readers holding the old list see it unchanged: set_turns replaces it."""
        sessions = store(Clock())
        session = sessions.get("a")
        old = sessions.set_turns(session, [Turn("user", "q")])
        sessions.set_turns(session, [Turn("user", "q"), Turn("assistant", "a")])
        assert old == [Turn("user", "q")]
        assert session.turns is not old
