"""Tests for services/session_keys.py: hashes that are plainly chosen are refused, Gradio's own clients' never are;
keys are bound to their caller; new sessions are bounded per address block."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
import uuid

import pytest

from services.errors import RateLimitedError
from services.session_keys import SessionKeys, hash_problem, hash_strength

# What a person would write: each is refused.
CHOSEN = (
    "my-session-1",  # README's own former example
    "my-session-12345",
    "session12",
    "mysession1",
    "test1234",
    "attacker",
    "alice-session",
    "demo-session-2",
    "client_7",
    "user-42-chat",
    "session_2024_01",
    "aaaaaaaaaaaa",  # one character repeated
    "1234567890",  # a count
    "abcdefgh12345678",
    "0123456789abcdef",
    "my-chat-session-for-testing",
    "mysecretsession",
)
TOO_SHORT = ("sg", "a1b2c", "")
NOT_ALLOWED = ("k3j9x0q2mz!", "k3j9 x0q2mz", "k3j9x0q2mzé", "../../etc")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
class TestHashProblem:
    @pytest.mark.parametrize("value", CHOSEN)
    def test_chosen_hashes_are_refused(self, value):
        assert "looks chosen, not random" in (hash_problem(value) or "")

    @pytest.mark.parametrize("value", TOO_SHORT)
    def test_short_hashes_are_refused(self, value):
        assert "use at least 6 random ones" in (hash_problem(value) or "")

    @pytest.mark.parametrize("value", NOT_ALLOWED)
    def test_other_characters_are_refused(self, value):
        assert hash_problem(value) == "The session hash may hold only letters, digits, - and _."

    def test_a_huge_hash_is_refused_by_length_first(self):
        assert "longer than 128" in (hash_problem("a" * 1_000_000) or "")

    def test_not_a_string(self):
        assert hash_problem(12345678) == "The session hash must be a string."

    def test_python_generators_pass(self):
        """gradio_client's uuid4, and what a script would use instead (token_hex, token_urlsafe)."""
        for _ in range(2_000):
            for value in (str(uuid.uuid4()), uuid.uuid4().hex, secrets.token_hex(16), secrets.token_urlsafe(16)):
                assert hash_problem(value) is None, value

    @pytest.mark.parametrize("value", ["nablue6413", "7homekkkkda", "9418gggggpl", "1byasdf4233", "pd2demo79"])
    def test_the_unluckiest_page_hashes_pass(self, value):
        """The lowest scores among ten million page hashes: a word, a count and a run leave two random
        letters. Refusing them would lock a visitor out of the page until a reload."""
        assert hash_problem(value) is None

    def test_linear_time(self):
        """The estimate of a 128-character hash costs well under a millisecond, whatever its shape."""
        for value in ("a" * 128, "ab" * 64, "session" * 18, "0123456789" * 12):
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                hash_strength(value)
                best = min(best, time.perf_counter() - started)
            assert best < 0.005, value


@pytest.mark.e2e
class TestGradiosJavascriptClients:
    @pytest.mark.parametrize("seed", [1, 2])
    def test_page_hashes_pass(self, seed):
        """Gradio's page and @gradio/client make their hash with Math.random().toString(36).substring(2): a
        hundred thousand of them from Node's own Math.random all pass. V8's seed makes the run the same every time
        (an unseeded draw would test a different sample on each run); the rare worst cases are the unit test's."""
        node = shutil.which("node")
        assert node, "Node is needed: the page's generator is JavaScript's Math.random"
        script = "for (let i = 0; i < 100000; i++) console.log(Math.random().toString(36).substring(2));"
        run = subprocess.run([node, f"--random_seed={seed}", "-e", script], capture_output=True, text=True, check=True)
        hashes = run.stdout.split()
        assert len(hashes) == 100_000
        assert len(set(hashes)) > 99_990, "the seed did not reach Math.random"
        assert [value for value in hashes if hash_problem(value) is not None] == []


@pytest.mark.unit
class TestBinding:
    def test_the_same_hash_from_the_same_caller_is_the_same_session(self):
        keys = SessionKeys(ttl=60, per_address=None, per_minute=None, capacity=10)
        assert keys.bind("k3j9x0q2mz", "203.0.113.5") == keys.bind("k3j9x0q2mz", "203.0.113.5")

    def test_a_stranger_with_the_hash_lands_elsewhere(self):
        keys = SessionKeys(ttl=60, per_address=None, per_minute=None, capacity=10)
        assert keys.bind("k3j9x0q2mz", "203.0.113.5") != keys.bind("k3j9x0q2mz", "198.51.100.7")

    def test_an_ipv6_host_keeps_its_sessions_across_its_addresses(self):
        """Privacy addresses change within a /64: the session stays the visitor's."""
        keys = SessionKeys(ttl=60, per_address=None, per_minute=None, capacity=10)
        assert keys.bind("k3j9x0q2mz", "2001:db8:0:1::a") == keys.bind("k3j9x0q2mz", "2001:db8:0:1:ffff::b")
        assert keys.bind("k3j9x0q2mz", "2001:db8:0:1::a") != keys.bind("k3j9x0q2mz", "2001:db8:0:2::a")

    def test_keys_mean_nothing_to_another_process(self):
        one = SessionKeys(ttl=60, per_address=None, per_minute=None, capacity=10)
        other = SessionKeys(ttl=60, per_address=None, per_minute=None, capacity=10)
        assert one.bind("k3j9x0q2mz", "203.0.113.5") != other.bind("k3j9x0q2mz", "203.0.113.5")


@pytest.mark.unit
class TestNewSessions:
    def test_a_flood_of_fresh_hashes_is_refused_per_minute(self):
        clock = Clock()
        keys = SessionKeys(ttl=3600, per_address=None, per_minute=5, capacity=1000, clock=clock)
        started = 0
        for i in range(100):
            try:
                keys.open(f"key-{i}", "203.0.113.5")
                started += 1
            except RateLimitedError as error:
                assert "at most 5 a minute" in str(error)
        assert started == 5
        keys.open("key-other", "198.51.100.7")  # another address is not held back
        clock.now += 60
        keys.open("key-later", "203.0.113.5")

    def test_a_known_session_is_never_refused(self):
        keys = SessionKeys(ttl=3600, per_address=1, per_minute=1, capacity=1000, clock=Clock())
        keys.open("mine", "203.0.113.5")
        for _ in range(10):
            keys.open("mine", "203.0.113.5")

    def test_an_address_holds_at_most_per_address_sessions_until_they_expire(self):
        """The cap counts sessions alive (used within ttl), so that one address can never fill a store of fixed
        capacity; when its oldest expires, it may start another."""
        clock = Clock()
        keys = SessionKeys(ttl=100, per_address=3, per_minute=None, capacity=1000, clock=clock)
        for i in range(3):
            keys.open(f"key-{i}", "203.0.113.5")
            clock.now += 10
        with pytest.raises(RateLimitedError, match="already has 3 sessions open") as refused:
            keys.open("key-3", "203.0.113.5")
        assert refused.value.retry_after == pytest.approx(70)
        keys.open("key-0", "203.0.113.5")  # used again (at 30 s): it stays alive
        clock.now += 91  # key-1 and key-2, unused for over 100 s, have expired
        keys.open("key-3", "203.0.113.5")
        keys.open("key-4", "203.0.113.5")
        assert len(keys) == 3

    def test_followed_sessions_are_bounded(self):
        keys = SessionKeys(ttl=3600, per_address=None, per_minute=None, capacity=10, clock=Clock())
        for i in range(50):
            keys.open(f"key-{i}", f"10.0.0.{i}")
        assert len(keys) == 10
