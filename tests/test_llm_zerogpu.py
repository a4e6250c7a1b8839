"""services/llm/zerogpu.py: leases sized to the reply and learned from its speed, and ZeroGPU's refusals, as spaces
0.51.3 writes them, told as sentences."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from spaces.config import Config
from spaces.zero import client
from spaces.zero.gradio import error as spaces_error

from services.errors import ZeroGPUError
from services.llm.local_backend import _as_backend_error
from services.llm.zerogpu import (
    LEASE_FLOOR_SECONDS,
    PRIOR_TOKENS_PER_SECOND,
    Lease,
    LeasePlanner,
    Timing,
    overrun,
    refusal,
)
from tests.support.fake_zerogpu import FakeZeroGPU, visitor_request

PROMPT = 60  # tokens of a short conversation


def reply(tokens: int, seconds: float, *, prompt: int = PROMPT, prompt_seconds: float = 0.05) -> Timing:
    return Timing(prompt, prompt_seconds, tokens, seconds)


@pytest.mark.unit
class TestLeasePlanner:
    def test_a_short_reply_asks_for_a_short_lease(self):
        """16 tokens ask for the floor, 10 s, where a fixed lease asked for 60."""
        assert LeasePlanner(ceiling=60).plan(prompt_tokens=PROMPT, new_tokens=16).seconds == LEASE_FLOOR_SECONDS == 10

    def test_a_long_reply_asks_for_the_ceiling(self):
        """4096 tokens need minutes at the prior speed: the lease is LOCAL_GPU_DURATION, and says it was capped."""
        lease = LeasePlanner(ceiling=60).plan(prompt_tokens=PROMPT, new_tokens=4096)
        assert lease.seconds == 60
        assert lease.capped
        assert lease.needed > 200

    def test_the_default_reply_before_any_is_measured(self):
        """512 tokens at the prior 20 tokens/s, with the start and the margin: 5 + 1.25 * (60/2000 + 512/20)."""
        lease = LeasePlanner(ceiling=60).plan(prompt_tokens=PROMPT, new_tokens=512)
        assert lease == Lease(38, 5 + 1.25 * (PROMPT / 2000 + 512 / 20))
        assert not lease.capped

    def test_more_tokens_never_ask_for_less(self):
        """The lease grows with max_tokens, and with the prompt, up to the ceiling."""
        planner = LeasePlanner(ceiling=120)
        leases = [planner.plan(prompt_tokens=PROMPT, new_tokens=n).seconds for n in range(0, 4097, 64)]
        assert leases == sorted(leases)
        assert leases[0] == 10
        assert leases[-1] == 120
        assert (
            planner.plan(prompt_tokens=100_000, new_tokens=16).seconds
            > planner.plan(prompt_tokens=0, new_tokens=16).seconds
        )

    def test_learns_the_speed_of_earlier_replies(self):
        """After a reply written at 40 tokens/s, the default reply asks for 22 s instead of 38."""
        planner = LeasePlanner(ceiling=60)
        planner.learn(reply(401, 10.0))  # the first token belongs to the prompt: 400 tokens in 10 s
        assert planner.tokens_per_second == 40.0
        assert planner.plan(prompt_tokens=PROMPT, new_tokens=512).seconds == 22

    def test_a_fast_model_asks_for_the_floor(self):
        """At 500 tokens/s, even 4096 tokens fit in 16 s."""
        planner = LeasePlanner(ceiling=60)
        planner.learn(reply(1001, 2.0))
        assert planner.plan(prompt_tokens=PROMPT, new_tokens=16).seconds == 10
        assert planner.plan(prompt_tokens=PROMPT, new_tokens=4096).seconds == 16

    def test_the_slowest_recent_reply_counts_and_old_ones_are_forgotten(self):
        """A slow reply sets the speed until eight faster ones have followed it."""
        planner = LeasePlanner(ceiling=60)
        planner.learn(reply(101, 10.0))  # 10 tokens/s
        for _ in range(7):
            planner.learn(reply(401, 10.0))
        assert planner.tokens_per_second == 10.0
        planner.learn(reply(401, 10.0))
        assert planner.tokens_per_second == 40.0

    def test_replies_too_short_teach_nothing(self):
        """A few tokens are mostly fixed costs; a reply that wrote nothing has no speed."""
        planner = LeasePlanner(ceiling=60)
        planner.learn(reply(15, 0.01))
        planner.learn(reply(100, 0.0))
        assert planner.tokens_per_second == PRIOR_TOKENS_PER_SECOND

    def test_learns_the_reading_speed_from_long_prompts_only(self):
        """A 4096-token prompt read in 0.5 s sets the reading speed; a 100-token one is mostly overhead."""
        planner = LeasePlanner(ceiling=60)
        planner.learn(reply(1, 0.0, prompt=100, prompt_seconds=1.0))
        assert planner.prompt_tokens_per_second == 2000.0
        planner.learn(reply(1, 0.0, prompt=4096, prompt_seconds=0.5))
        assert planner.prompt_tokens_per_second == 8192.0

    def test_an_overrun_halves_the_speed(self):
        """A lease that proved too short makes the next ones ask for about twice the writing time."""
        planner = LeasePlanner(ceiling=300)
        planner.learn(reply(401, 10.0))
        before = planner.plan(prompt_tokens=0, new_tokens=1000).needed
        planner.overran()
        assert planner.tokens_per_second == 20.0
        assert planner.plan(prompt_tokens=0, new_tokens=1000).needed - 5 == pytest.approx(2 * (before - 5))

    def test_a_ceiling_below_the_floor_wins(self):
        """LOCAL_GPU_DURATION=5 asks for 5 s, however short the reply."""
        planner = LeasePlanner(ceiling=5)
        assert planner.plan(prompt_tokens=0, new_tokens=1).seconds == 5
        assert planner.plan(prompt_tokens=0, new_tokens=4096).seconds == 5

    def test_timing_pickles(self):
        """On ZeroGPU the timing is measured in the worker and sent back pickled."""
        import pickle

        timing = reply(100, 2.5)
        assert pickle.loads(pickle.dumps(timing)) == timing


@pytest.mark.unit
class TestRefusalText:
    def test_not_zerogpu_is_none(self):
        """A gradio.Error that is not ZeroGPU's keeps the caller's wording."""
        assert refusal(None, "something") is None
        assert refusal("Quota", "You have exceeded your ZeroGPU quota") is None

    def test_aborted_task(self):
        """The worker died or the lease ran out (spaces cannot tell which)."""
        error = refusal("ZeroGPU worker error", "GPU task aborted")
        assert error is not None
        assert (error.reason, error.retry_after, error.sign_in_helps) == ("aborted", None, False)
        assert str(error) == (
            "ZeroGPU stopped the reply before it was finished (a task that outruns its GPU time, or whose worker "
            "fails, is ended): try again, perhaps with a lower max tokens."
        )

    def test_worker_exception_names_its_class_only(self):
        """An exception raised in the worker reaches the main process as its class name."""
        error = refusal("ZeroGPU worker error", "OutOfMemoryError")
        assert error is not None
        assert error.reason == "failed"
        assert str(error) == "The GPU worker failed (OutOfMemoryError) before the reply was finished: try again."

    def test_expired_token(self):
        """ZeroGPU's own client errors say what ZeroGPU said, and what to do."""
        error = refusal("ZeroGPU client error", "Expired ZeroGPU proxy token")
        assert error is not None
        assert str(error) == "ZeroGPU refused the reply (Expired ZeroGPU proxy token): reload the page and try again."

    @pytest.mark.parametrize(
        ("wait", "seconds", "words"),
        [
            ("0:00:56", 56.0, "in 56 s"),
            ("0:00:56.500000", 56.0, "in 56 s"),
            ("0:12:00", 720.0, "in 12 min"),
            ("1:12:05", 4325.0, "in 1 h 13 min"),  # rounded up: never sooner than ZeroGPU said
            ("2:00:00", 7200.0, "in 2 h"),
            ("1 day, 1:01:01", 90061.0, "in 1 day 1 h"),
            ("3 days, 0:00:00", 259200.0, "in 3 days"),
        ],
    )
    def test_when_the_quota_comes_back(self, wait: str, seconds: float, words: str):
        """`Try again in {timedelta}` is read into seconds and said in hours and minutes."""
        error = refusal(
            "ZeroGPU quota exceeded",
            f"You have exceeded your ZeroGPU quota (30s requested vs. 0s left). Try again in {wait}. ",
        )
        assert error is not None
        assert error.retry_after == seconds
        assert f"comes back {words}," in str(error)

    def test_overrun_when_capped_names_the_setting(self):
        """A reply that needed more than LOCAL_GPU_DURATION allows is told to be shorter."""
        error = overrun(Lease(60, 140.0))
        assert error.reason == "aborted"
        assert str(error) == (
            "The reply needed more than the 60 s of GPU time one reply may ask for here (LOCAL_GPU_DURATION), so "
            "ZeroGPU stopped it: ask for a shorter reply (a lower max tokens)."
        )

    def test_overrun_of_an_estimate(self):
        """A lease the speed underestimated: the next one asks for more."""
        assert str(overrun(Lease(20, 19.5))) == (
            "The reply took longer than the 20 s of GPU time it asked for, so ZeroGPU stopped it: try again, and the "
            "next reply asks for more."
        )

    def test_real_worker_errors_through_the_backend(self):
        """The gradio.Error objects spaces raises for a lost worker (zero/gradio.py `error`) become sentences in
        the backend's one place for failures."""
        aborted = _as_backend_error(spaces_error("ZeroGPU worker error", "GPU task aborted"))
        assert isinstance(aborted, ZeroGPUError)
        assert aborted.reason == "aborted"
        failed = _as_backend_error(spaces_error("ZeroGPU worker error", "RuntimeError"))
        assert isinstance(failed, ZeroGPUError)
        assert failed.reason == "failed"


@pytest.mark.unit
class TestSpacesContract:
    """What the backend relies on in the pinned spaces (0.51.3): a newer one that changes it fails here."""

    @staticmethod
    def source(module: str) -> str:
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        return Path(spec.origin).read_text()

    def test_the_duration_callable_gets_the_wrapped_functions_own_arguments(self):
        """`duration(*args, **kwargs)` with the very arguments of the call: a bound method's `self` is bound on
        both sides, so `_lease_seconds(messages, params)` matches `_generate(messages, params)`."""
        wrappers = self.source("spaces.zero.wrappers")
        generator_wrapper = wrappers.split("def generator_function_wrapper(", 1)[1]
        assert "def gradio_handler(*args: Param.args, **kwargs: Param.kwargs)" in generator_wrapper
        assert "duration_ = static_duration(duration, *args, **kwargs)" in generator_wrapper
        assert "    return duration(*args, **kwargs)\n" in wrappers.split("def static_duration(", 1)[1]

    def test_the_texts_refusal_reads_are_still_written(self):
        """The words `refusal` parses appear in spaces' client as it writes them."""
        text = self.source("spaces.zero.client")
        for words in (
            'f"({requested}s requested vs. {res.left}s left). "',
            'f"Try again in {res.wait}. "',
            '"ZeroGPU quota exceeded"',
            '"ZeroGPU illegal duration"',
            '"ZeroGPU pending credits exceeded"',
            '"ZeroGPU queue timeout"',
            'NO_GPU_MESSAGE_INQUEUE = "No GPU was available after 60s"',
            'NO_GPU_MESSAGE_REGULAR = "No GPU was available"',
            '"Space app has reached its GPU limit. "',
            '"You have exceeded your ZeroGPU runs limit. "',
        ):
            assert words in text, words
        assert 'raise error("ZeroGPU worker error", "GPU task aborted")' in self.source("spaces.zero.wrappers")


@pytest.fixture
def zerogpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZeroGPU]:
    """spaces' ZeroGPU client pointed at a fake device API; the GPU's model unknown (no driver here), as on a
    machine without one: spaces then sizes leases as for an H200 (duration factor 1)."""
    api = FakeZeroGPU()
    monkeypatch.setattr(Config, "zero_device_api_url", api.url)
    # spaces makes an httpx client per call and never closes it: closed here, not by a later test's collector.
    made: list[Any] = []
    original = client.api_client

    def api_client() -> Any:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(client, "api_client", api_client)
    yield api
    for each in made:
        each.client.close()
    api.close()


def refused(request: object, seconds: int = 45) -> ZeroGPUError:
    """What spaces' own client raises when asked for a lease of `seconds`, through the backend's error path."""
    # spaces warns that it cannot read the GPU's model (no driver here) and finds no Gradio queue running.
    with warnings.catch_warnings(action="ignore"), pytest.raises(gr.Error) as caught:
        client.schedule(task_id=0, request=request, duration=timedelta(seconds=seconds))  # type: ignore[arg-type]
    error = _as_backend_error(caught.value)
    assert isinstance(error, ZeroGPUError), error
    return error


@pytest.mark.e2e
class TestRealRefusals:
    """spaces' own client, asking a fake ZeroGPU device API on 127.0.0.1, raises its real errors; each becomes one
    sentence: what happened, when the quota comes back, and whether signing in gives more."""

    def test_quota_nearly_spent(self, zerogpu: FakeZeroGPU):
        """Some quota is left, less than the lease: the reply may fit with a lower max tokens."""
        zerogpu.quota(left=12, wait=4325)
        error = refused(visitor_request())
        assert (error.reason, error.retry_after, error.sign_in_helps) == ("quota", 4325.0, True)
        assert str(error) == (
            "This reply asks for 45 s of GPU time and 12 s of your ZeroGPU quota are left: a lower max tokens asks "
            "for less, the quota comes back in 1 h 13 min, and signing in to Hugging Face gives more (5 minutes a "
            "day instead of 2, 40 with PRO)."
        )
        assert zerogpu.asked == [45]

    def test_quota_spent_on_a_free_account(self, zerogpu: FakeZeroGPU):
        """A signed-in free account is told of PRO, not of signing in."""
        zerogpu.quota(left=0, wait=90061, auth="regular")
        error = refused(visitor_request())
        assert str(error) == (
            "Your ZeroGPU quota (the GPU time Hugging Face gives each visitor) is used up: it comes back in 1 day "
            "1 h, and Hugging Face PRO gives 40 minutes a day."
        )

    def test_quota_spent_on_pro_from_the_api(self, zerogpu: FakeZeroGPU):
        """PRO has nothing more to sign in for; spaces' advice to API callers (a billing link) is left out."""
        zerogpu.quota(left=3, wait=56.5, auth="pro")
        error = refused(visitor_request(page=False))
        assert error.sign_in_helps is False
        assert str(error) == (
            "This reply asks for 45 s of GPU time and 3 s of your ZeroGPU quota are left: a lower max tokens asks "
            "for less, the quota comes back in 56 s."
        )
        assert "http" not in str(error)

    def test_runs_limit(self, zerogpu: FakeZeroGPU):
        """Too many tasks, whatever the seconds: ZeroGPU says no time, so 'within a day'."""
        zerogpu.quota(left=0, wait=0)
        error = refused(visitor_request())
        assert error.retry_after is None
        assert "more are allowed within a day" in str(error)

    def test_no_visitor_token(self, zerogpu: FakeZeroGPU):
        """Without a visitor token (an API call without one) the Space's own allowance is what ran out."""
        zerogpu.quota(left=5, wait=100)
        error = refused(None)
        assert str(error) == (
            "This Space has used the ZeroGPU time it may give visitors who are not signed in: it comes back within "
            "a day, and signing in to Hugging Face gives you a quota of your own."
        )

    def test_lease_longer_than_allowed(self, zerogpu: FakeZeroGPU):
        """ZeroGPU never grants this much at once: a shorter reply, or signing in."""
        zerogpu.quota(left=300, wait=-1)
        error = refused(visitor_request(), seconds=300)
        assert error.reason == "too_long"
        assert str(error) == (
            "This reply needs more GPU time (300 s) than ZeroGPU gives you at once: ask for a shorter reply (a lower "
            "max tokens), or sign in to Hugging Face, which allows longer tasks."
        )

    def test_other_tasks_hold_the_quota(self, zerogpu: FakeZeroGPU):
        """Credits held by the visitor's running tasks."""
        zerogpu.quota(left=0, wait=10, result="pending-overquota-exceeded")
        error = refused(visitor_request())
        assert (error.reason, str(error)) == (
            "busy",
            "Your other ZeroGPU tasks still hold your quota: try again when they have finished.",
        )

    def test_no_gpu_free(self, zerogpu: FakeZeroGPU):
        """503 from the device API."""
        zerogpu.no_gpu()
        assert str(refused(visitor_request())) == "No GPU is free on ZeroGPU right now: try again in a minute."

    @pytest.mark.parametrize("signed_in", [True, False])
    def test_the_queue_gives_up(self, zerogpu: FakeZeroGPU, signed_in: bool):
        """Queued for a minute without a GPU (titled 'queue timeout', or 'quota exceeded' without a token)."""
        zerogpu.queue_gives_up()
        error = refused(visitor_request(signed_in=signed_in))
        assert error.reason == "busy"
        assert str(error) == (
            "No GPU came free on ZeroGPU within a minute: try again shortly; visitors signed in to Hugging Face get "
            "an earlier place in the queue."
        )

    def test_every_sentence_is_one_line_without_links(self, zerogpu: FakeZeroGPU):
        """Whatever spaces appends for API callers (links to tokens, PRO, billing), the visitor reads one sentence."""
        for setup in (
            lambda: zerogpu.quota(left=0, wait=60),
            lambda: zerogpu.quota(left=10, wait=60, auth="regular"),
            lambda: zerogpu.quota(left=300, wait=-1, auth="regular"),
            zerogpu.queue_gives_up,
        ):
            setup()
            text = str(refused(visitor_request(page=False)))
            assert "http" not in text
            assert "\n" not in text
            assert text[0].isupper(), text
            assert text.endswith("."), text
            assert ". " not in text, text
