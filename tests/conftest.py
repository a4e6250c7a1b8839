"""Shared fixtures: a fake OpenAI-compatible server, and the real app launched as a process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fake_openai import Behaviour, FakeOpenAI, free_port

ROOT = Path(__file__).resolve().parent.parent
# Variables the app reads; cleared so the developer's own shell (a real OPENAI_API_KEY) never leaks into a test.
APP_VARIABLES = (
    "LLM_BACKEND",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "HF_TOKEN",
    "LLM_MODEL",
    "LOCAL_MODEL",
    "APP_AUTH",
    "SYSTEM_PROMPT",
    "SPACE_ID",
)


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def app_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env.update(overrides)
    return env


def start_app(tmp_path: Path, *, timeout: float = 60, **env: str) -> RunningApp:
    """Run `python app.py` as a person would, and wait until it serves its config."""
    port = free_port()
    log_path = tmp_path / f"app-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=app_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=1):
                return RunningApp(url, process, log_path)
        except urllib.error.HTTPError:
            return RunningApp(url, process, log_path)  # it answers: with APP_AUTH set, 401 until login
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"app did not start in {timeout} s:\n{log_path.read_text()}")


@contextmanager
def running_app(directory: Path, **env: str) -> Iterator[RunningApp]:
    """`start_app` for a with-block (or a fixture's yield): the app is stopped however the block ends."""
    app = start_app(directory, **env)
    try:
        yield app
    finally:
        stop_app(app)


def fake_backed(fake: FakeOpenAI, **env: str) -> dict[str, str]:
    """The variables that point the app at a fake OpenAI server, plus `env`."""
    return {"OPENAI_BASE_URL": fake.base_url, "LLM_MODEL": "fake-model", **env}


def stop_app(app: RunningApp) -> None:
    app.process.terminate()
    try:
        app.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.02)) as server:
        yield server


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The module's fake server, with a clean slate of recorded requests and default behaviour."""
    fake_openai.requests.clear()
    fake_openai.disconnects.clear()
    fake_openai.behaviour.faults.clear()
    fake_openai.behaviour.reply = None
    fake_openai.behaviour.tokens = None
    fake_openai.behaviour.delay = 0.02
    return fake_openai


@pytest.fixture(scope="module")
def app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app on 127.0.0.1, chatting with the module's fake OpenAI server (no retries, so faults show)."""
    # Every test client comes from 127.0.0.1: the rate limits are tested on an app of their own.
    env = fake_backed(fake_openai, LLM_MAX_RETRIES="0", RATE_LIMIT_PER_IP="none", RATE_LIMIT_PER_SESSION="none")
    with running_app(tmp_path_factory.mktemp("app"), **env) as running:
        yield running
