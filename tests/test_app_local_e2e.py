"""End-to-end with the local backend: `python app.py` on a tiny model built on disk, called via gradio_client."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client
from gradio_client.utils import Status
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.support.apps import RunningApp, start_app, stop_app
from tests.support.tiny_model import build_tiny_model

pytestmark = pytest.mark.e2e

SYSTEM = "You are terse."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough that a reply of a few hundred tokens takes seconds on a CPU (for the cancel test)."""
    return build_tiny_model(tmp_path_factory.mktemp("model"), hidden_size=256, num_layers=4, context=4096)


@pytest.fixture(scope="module")
def local_app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    # LLM_BACKEND left unset: auto must pick the local model when no key or server is configured.
    running = start_app(
        tmp_path_factory.mktemp("local"),
        LOCAL_MODEL=str(model_dir),
        LOCAL_CONCURRENCY="1",
        RATE_LIMIT_PER_SESSION="none",
        RATE_LIMIT_PER_IP="none",
        timeout=120,
    )
    yield running
    stop_app(running)


def direct_greedy(model_dir: Path, message: str, max_new_tokens: int) -> str:
    """What model.generate gives for the same prompt and settings, outside the app."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )  # fmt: skip
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TestLocalChat:
    def test_auto_picks_the_local_model(self, local_app, model_dir):
        """With no key and no server configured, the status line names the local backend and the model."""
        config = httpx.get(local_app.url + "config", timeout=10).text
        assert f"Answered by the small local model `{model_dir}` (cpu)" in config

    def test_greedy_reply_streams_and_equals_generate(self, local_app, model_dir):
        """At temperature 0 the reply streams in several updates and ends exactly as model.generate does."""
        # Hundreds of tokens: generation must outlast several 100 ms update intervals even on a fast runner
        # (48 tokens once finished inside one interval and came as just two updates).
        client = Client(local_app.url, verbose=False)
        job = client.submit("tell me a story", SYSTEM, 0.0, 800, api_name="/chat")
        final = job.result(timeout=120)
        outputs = job.outputs()
        assert len(set(outputs)) >= 3, outputs
        assert final == direct_greedy(model_dir, "tell me a story", 800)
        assert final.strip()

    def test_cancel_stops_generation_within_a_second(self, local_app):
        """Cancelling a job mid-stream ends the generation: the server's CPU falls to idle within a second."""
        client = Client(local_app.url, verbose=False)
        job = client.submit("a very long story", SYSTEM, 0.0, 3000, api_name="/chat")
        deadline = time.monotonic() + 60
        while len(job.outputs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(job.outputs()) >= 2
        pid = local_app.process.pid
        busy_start = cpu_seconds(pid)
        time.sleep(0.5)
        busy = (cpu_seconds(pid) - busy_start) / 0.5
        # Measured against the generation's own pace: a busy runner may give the app less than a core.
        assert busy > 0.2, f"generation was not running ({busy:.0%} of a core)"
        job.cancel()
        time.sleep(1.0)
        idle_start = cpu_seconds(pid)
        time.sleep(1.0)
        idle = cpu_seconds(pid) - idle_start
        assert idle < busy / 4, f"the server still used {idle:.0%} of a core a second after the cancel ({busy:.0%})"

    def test_second_chat_waits_in_the_queue_with_its_position(self, local_app):
        """LOCAL_CONCURRENCY=1: a second caller is queued (rank shown) until the first reply ends."""
        # A reply of thousands of tokens: several seconds, so the second caller surely arrives while it runs.
        first = Client(local_app.url, verbose=False).submit("first", SYSTEM, 0.0, 3000, api_name="/chat")
        deadline = time.monotonic() + 60
        while not first.outputs() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = Client(local_app.url, verbose=False).submit("second", SYSTEM, 0.0, 8, api_name="/chat")
        seen_queued = False
        while not seen_queued and not second.done() and time.monotonic() < deadline:
            status = second.status()
            seen_queued = status.code == Status.IN_QUEUE and status.rank is not None
            time.sleep(0.02)
        first.cancel()  # the queued chat runs once the first one is stopped
        assert seen_queued, "the second chat never waited in the queue"
        assert second.result(timeout=60).strip()
