"""Session hashes a stranger can neither guess nor share, and new sessions bounded per caller.

A client names its session itself (Gradio's page, gradio_client and @gradio/client each make a random hash), and
everything the server keeps for a session (its conversation, its queue of results, its event stream) is found by
that name. So a name is refused when it is plainly not random (`hash_problem`), and the name the server uses is
not the caller's but `SessionKeys.bind(hash, address)`: an HMAC of the hash and the caller's address block under a
secret made for this process. The same hash sent from another address is another session, and the server's keys
mean nothing outside it. Starting sessions is bounded per address block (`SessionKeys.open`), so that a flood of
fresh hashes is refused before it can push other visitors' sessions out of a store of fixed capacity.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from services.errors import RateLimitedError
from services.network import address_block
from services.ratelimit import RequestRate

__all__ = ["MIN_HASH_BITS", "SessionKeys", "hash_problem", "hash_strength"]

MIN_HASH_CHARS = 6
MAX_HASH_CHARS = 128
# What a hash must keep by `hash_strength`: two random letters, or a letter and a digit. It sits below anything a
# random generator plausibly makes, because a page refused here is a visitor locked out until a reload. Gradio's
# page and @gradio/client send Math.random().toString(36) without its "0." (6 to 14 base-36 characters), and a
# few in ten million of those hold a word, a count and a run that leave only two random letters (9.4 bits);
# gradio_client sends a uuid4 (over 55 bits). Names people choose ("my-session-1", counts, words, runs) leave 0
# to 3.3 bits.
MIN_HASH_BITS = 8.0
_ALLOWED = re.compile(r"[A-Za-z0-9_-]+\Z")
_LETTERS = re.compile(r"[a-z]+")
_DIGITS = re.compile(r"[0-9]+")
# Words people name sessions with: four letters or more anywhere, shorter ones only standing alone ("my-", "-id").
_WORDS = frozenset(
    """
    my id to of in at on for the and abc def xyz foo bar baz qux test testing tests session sessions sess user
    users client clients demo hash chat chats hello world example sample default admin root guest agent bot bots
    script curl call calls visitor attacker evil hack hacker tab new old one two three four five six seven eight
    nine ten first second third last temp tmp local dev prod api app space gradio key token secret password pass
    qwerty asdf letmein uid uuid name random rand unique mcp run job task main alpha beta gamma delta red blue
    green john jane alice bob eve mallory anon anonymous public private shared team home work office device phone
    browser page tool
    """.split()  # noqa: SIM905 - a paragraph of words reads better than a list of quoted strings
)
_LONGEST_WORD = max(map(len, _WORDS))
_RUN = 4  # this many characters or more, each equal to, one after or one before the last, are a pattern


def _cover_runs(text: str, covered: list[bool]) -> None:
    """Mark runs like "aaaa", "1234", "dcba"."""
    i = 0
    while i < len(text) - 1:
        step = ord(text[i + 1]) - ord(text[i])
        j = i + 1
        if step in (-1, 0, 1) and text[i].isalnum():
            while j + 1 < len(text) and text[j + 1].isalnum() and ord(text[j + 1]) - ord(text[j]) == step:
                j += 1
            if j - i + 1 >= _RUN:
                covered[i : j + 1] = [True] * (j - i + 1)
                i = j
                continue
        i += 1


def _cover_words_and_counts(text: str, covered: list[bool]) -> None:
    """Mark dictionary words, and short numbers standing alone (a count: "-1", "_2024")."""

    def alone(start: int, end: int) -> bool:
        return (start == 0 or covered[start - 1]) and (end == len(text) or covered[end])

    for match in _LETTERS.finditer(text):
        run, offset = match.group(), match.start()
        for a in range(len(run)):
            for b in range(a + 2, min(len(run), a + _LONGEST_WORD) + 1):
                if run[a:b] in _WORDS and (b - a >= 4 or alone(offset + a, offset + b)):
                    covered[offset + a : offset + b] = [True] * (b - a)
    for match in _DIGITS.finditer(text):
        if len(match.group()) <= 4 and alone(match.start(), match.end()):
            covered[match.start() : match.end()] = [True] * len(match.group())


def hash_strength(value: str) -> float:
    """An estimate, in bits, of what a person could not have guessed of `value`: the characters outside
    separators, words, counts and runs, at log2(26) a letter and log2(10) a digit. Linear in the length."""
    text = value.lower()
    covered = [not char.isalnum() for char in text]
    _cover_runs(text, covered)
    # Twice: a short word becomes "alone" once the words around it are marked ("my" in "my-session").
    _cover_words_and_counts(text, covered)
    _cover_words_and_counts(text, covered)
    return sum(
        math.log2(10) if char.isdigit() else math.log2(26) for char, hit in zip(text, covered, strict=True) if not hit
    )


def hash_problem(value: object) -> str | None:
    """Why `value` cannot name a session (a sentence), or None when it looks random enough."""
    if not isinstance(value, str):
        return "The session hash must be a string."
    if len(value) < MIN_HASH_CHARS:
        return (
            f"The session hash is {len(value)} characters; use at least {MIN_HASH_CHARS} random ones (a uuid4, as "
            "gradio_client sends, or secrets.token_hex(16))."
        )
    if len(value) > MAX_HASH_CHARS:
        return f"The session hash is longer than {MAX_HASH_CHARS} characters."
    if not _ALLOWED.match(value):
        return "The session hash may hold only letters, digits, - and _."
    if hash_strength(value) < MIN_HASH_BITS:
        return (
            "The session hash looks chosen, not random (words, a count or a repeated pattern): anyone could guess "
            "it and read the session. Use a random one, such as a uuid4 or secrets.token_hex(16)."
        )
    return None


class SessionKeys:
    """Binds session hashes to their callers, and bounds how many sessions each address block starts.

    `per_address`: sessions an address block may hold at once (each alive until `ttl` seconds unused);
    `per_minute`: sessions it may start a minute; None turns a bound off. At most `capacity` sessions are
    followed; past it the least recently used is forgotten (as the app's own store would drop it).
    """

    def __init__(
        self,
        *,
        ttl: float,
        per_address: int | None,
        per_minute: int | None,
        capacity: int,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.ttl = ttl
        self.per_address = per_address
        self.capacity = capacity
        self._clock = clock
        self._starts = (
            RequestRate(
                per_minute,
                message="Too many new sessions from this address: at most {limit} a minute. Try again in {retry} s.",
                clock=clock,
            )
            if per_minute
            else None
        )
        self._live: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (address block, last used)
        self._per_block: dict[str, int] = {}
        self._lock = threading.Lock()

    def bind(self, session_hash: str, address: str) -> str:
        """The key the server keeps this caller's session under: the same for the same hash and address block,
        unrelated for any other address block, and meaningless outside this process."""
        message = address_block(address).encode() + b"\0" + session_hash.encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def open(self, key: str, address: str) -> None:
        """A request that uses session `key` (from `bind`): a session already followed is marked used; a new one
        is followed, or refused with `RateLimitedError` when its address block is over a bound."""
        now = self._clock()
        block = address_block(address)
        with self._lock:
            self._expire(now)
            if key in self._live:
                self._live[key] = (self._live[key][0], now)
                self._live.move_to_end(key)
                return
            if self.per_address is not None and self._per_block.get(block, 0) >= self.per_address:
                oldest = min(used for owner, used in self._live.values() if owner == block)
                retry_after = max(1.0, self.ttl - (now - oldest))
                raise RateLimitedError(
                    f"This address already has {self.per_address} sessions open, the most this Space keeps for "
                    f"one address: reuse one (a gradio_client.Client keeps its own), or try again in "
                    f"{math.ceil(retry_after)} s.",
                    retry_after=retry_after,
                )
            if self._starts is not None:
                self._starts.check(block)
            self._live[key] = (block, now)
            self._per_block[block] = self._per_block.get(block, 0) + 1
            while len(self._live) > self.capacity:
                self._forget(next(iter(self._live)))

    def __len__(self) -> int:
        return len(self._live)

    def _expire(self, now: float) -> None:
        # Least recently used first: stop at the first one still alive.
        while self._live:
            key, (_, used) = next(iter(self._live.items()))
            if now - used <= self.ttl:
                break
            self._forget(key)

    def _forget(self, key: str) -> None:
        block, _ = self._live.pop(key)
        left = self._per_block[block] - 1
        if left:
            self._per_block[block] = left
        else:
            del self._per_block[block]
