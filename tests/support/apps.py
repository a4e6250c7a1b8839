"""The real app launched as a process on 127.0.0.1, as a person (or a Space) runs it: `python app.py`.

Used by the tests and by bench/, so it imports nothing from pytest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.config import VARIABLES
from tests.support.fake_openai import FakeOpenAI, free_port

ROOT = Path(__file__).resolve().parents[2]
# Every variable the app reads (services/config.py's table), plus Gradio's and huggingface_hub's own that change
# what it does: cleared, so that the developer's own shell (a real OPENAI_API_KEY) never leaks into a run.
APP_VARIABLES = (
    *(variable.name for variable in VARIABLES),
    "OAUTH_CLIENT_ID",
    "OAUTH_SCOPES",
    "OPENID_PROVIDER_URL",
    "SPACE_HOST",
    "SYSTEM",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "GRADIO_WATCH_DIRS",
    "GRADIO_ROOT_PATH",
    "FORWARDED_ALLOW_IPS",
)
# A fixed history secret, so that runs of the app in one test agree; tests of a missing secret unset it.
TEST_HISTORY_SECRET = "test-history-secret-0123456789abcdef"
# Every test client comes from 127.0.0.1, one address: the per-address limits on all requests, uploads and new
# sessions are off unless a test sets them (tests/test_edge_attacks.py does, with their defaults).
PER_ADDRESS_LIMITS_OFF = {
    "API_REQUESTS_PER_MINUTE": "none",
    "UPLOADS_PER_MINUTE": "none",
    "NEW_SESSIONS_PER_MINUTE": "none",
    "SESSIONS_PER_ADDRESS": "none",
}


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def app_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        HISTORY_SECRET=TEST_HISTORY_SECRET,
        # No Hugging Face login of the machine's own: the cache directory of every run is its own.
        HF_HOME=str(Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-home-{os.getpid()}"),
        **PER_ADDRESS_LIMITS_OFF,
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None and v != "<unset>"}


def start_app(directory: Path, *, timeout: float = 60, port: int | None = None, **env: str) -> RunningApp:
    """Run `python app.py` as a person would, and wait until it answers."""
    port = port or free_port()
    log_path = directory / f"app-{port}.log"
    with log_path.open("wb") as log:
        process = spawn(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], env=app_env(**env), log=log
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
    stop_process(process)
    raise RuntimeError(f"app did not start in {timeout} s:\n{log_path.read_text()}")


def spawn(argv: list[str], *, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A process in a session of its own, so that `stop_process` also reaches what it starts (`gradio app.py`
    runs the app in a child, which outlives a parent stopped alone and keeps its port and a share of the CPU)."""
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10) -> bool:
    """SIGTERM to the process and all it started (its process group), SIGKILL to what is left after `timeout`;
    True when SIGTERM alone ended them all."""
    _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    graceful = process.poll() is not None and not group_alive(process.pid)
    _signal_group(process, signal.SIGKILL)
    process.wait()
    return graceful


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited
        os.killpg(process.pid, signum)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_app(app: RunningApp) -> None:
    stop_process(app.process)


@contextmanager
def running_app(directory: Path, *, timeout: float = 60, port: int | None = None, **env: str) -> Iterator[RunningApp]:
    """`start_app` for a with-block (or a fixture's yield): the app is stopped however the block ends."""
    app = start_app(directory, timeout=timeout, port=port, **env)
    try:
        yield app
    finally:
        stop_app(app)


def fake_backed(fake: FakeOpenAI, **env: str) -> dict[str, str]:
    """The variables that point the app at a fake OpenAI server, plus `env`."""
    return {"OPENAI_BASE_URL": fake.base_url, "LLM_MODEL": "fake-model", **env}
