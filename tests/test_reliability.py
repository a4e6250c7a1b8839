"""Hundreds of faulty backend replies leak nothing: threads, sockets and queue slots return to where they were."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.apps import start_app, stop_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault

pytestmark = pytest.mark.e2e

FAULTS = (
    Fault(status=500),
    Fault(status=429),
    Fault(status=401),
    Fault(cut_after=1),  # connection dropped mid-reply
    Fault(end_after=2),  # body ends without finish_reason
    None,  # a normal reply in between
)
ROUNDS = 50  # 300 requests


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed while we looked
    return count


def chat(http: httpx.Client, message: str) -> str:
    """One /chat call over Gradio's HTTP API; returns the last SSE event's name."""
    posted = http.post("/gradio_api/call/chat", json={"data": [message, "sys", 0.5, 20]})
    posted.raise_for_status()
    events = http.get(f"/gradio_api/call/chat/{posted.json()['event_id']}").text
    return [line for line in events.splitlines() if line.startswith("event:")][-1].removeprefix("event: ")


@pytest.mark.parametrize("workers", [8])
def test_faulty_requests_leak_nothing(tmp_path: Path, workers: int):
    """300 requests, most failing in one of five ways, leave the queue empty, and threads and sockets within a
    load's worth of where they were."""
    with FakeOpenAI(Behaviour(delay=0.001)) as server:
        app = start_app(
            tmp_path,
            OPENAI_BASE_URL=server.base_url,
            LLM_MODEL="m",
            LLM_MAX_RETRIES="0",
            RATE_LIMIT_PER_SESSION="none",
            RATE_LIMIT_PER_IP="none",
        )
        pid = app.process.pid
        try:
            # No keep-alive: the test's own idle connections would count among the app's sockets.
            no_keepalive = httpx.Limits(max_keepalive_connections=0)
            with (
                httpx.Client(base_url=app.url, timeout=30, limits=no_keepalive) as http,
                ThreadPoolExecutor(workers) as pool,
            ):

                def one(i: int) -> str:
                    fault = FAULTS[i % len(FAULTS)]
                    if fault is not None:
                        server.behaviour.faults.append(fault)
                    return chat(http, f"request {i}")

                def counts() -> tuple[int, int]:
                    return threads(pid), sockets(pid)

                # Warm up with the same mix at the same concurrency, so pools have grown to what this load needs
                # before the baseline. The pools may hold a few more threads or connections after the run than
                # before (AnyIO keeps idle worker threads for 10 s); a leak of one a failed request shows hundreds.
                list(pool.map(one, range(workers * len(FAULTS))))
                baseline = counts()
                outcomes = list(pool.map(one, range(ROUNDS * len(FAULTS))))
                assert outcomes.count("error") >= ROUNDS * 4  # the faults really happened
                assert outcomes.count("complete") >= ROUNDS // 2
                after = counts()
                assert after[0] <= baseline[0] + workers, f"threads {baseline[0]} -> {after[0]}"
                assert after[1] <= baseline[1] + workers, f"sockets {baseline[1]} -> {after[1]}"
                server.behaviour.faults.clear()
                assert chat(http, "still there?") == "complete"
                status = http.get("/gradio_api/queue/status").json()
                assert status["queue_size"] == 0
        finally:
            stop_app(app)
