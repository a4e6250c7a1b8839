"""A newcomer's first minutes on a fresh clone with no network to the Hub: a quick start, clear words, one line
per launch error."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.support.apps import ROOT, app_env, spawn, start_app, stop_app, stop_process
from tests.support.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def run_app(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=ROOT, env=app_env(**env), capture_output=True, text=True, timeout=120
    )


class TestNoHub:
    def test_nothing_configured_starts_fast_and_says_what_to_do(self, tmp_path: Path):
        """No key, no server, the default Hub model not cached and the Hub unreachable: the app answers within
        seconds (no minute of retries), and the page and the chat say what was tried, why it failed, and what
        to set; every log line is printed once."""
        unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused at once
        started = time.monotonic()
        app = start_app(tmp_path, timeout=30, HF_HUB_OFFLINE="0", HF_ENDPOINT=unreachable)
        try:
            assert time.monotonic() - started < 20
            status = httpx.get(app.url + "config", timeout=10).text
            for words in ("The chat is not available", "the local model could not load", "cannot be reached"):
                assert words in status
            with pytest.raises(AppError) as caught:
                Client(app.url, verbose=False).predict("hi", api_name="/chat")
            for words in ("HuggingFaceTB/SmolLM2-360M-Instruct", "cannot be reached", "Set OPENAI_API_KEY"):
                assert words in str(caught.value)
            assert "Retrying in" not in app.log()
        finally:
            stop_app(app)
        lines = [line.split(" ", 2)[-1] for line in app.log().splitlines() if line.strip()]
        repeated = [line for line, times in Counter(lines).items() if times > 1]
        assert repeated == []

    def test_offline_mode_is_named(self, tmp_path: Path):
        """With HF_HUB_OFFLINE=1 the message says that is why the model was not fetched."""
        app = start_app(tmp_path, timeout=30, HF_HUB_OFFLINE="1")
        try:
            assert "HF_HUB_OFFLINE is set" in httpx.get(app.url + "config", timeout=10).text
        finally:
            stop_app(app)


class TestLaunchErrors:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("abc", "Configuration error: GRADIO_SERVER_PORT: expected a port number, got 'abc'."),
            ("99999", "Configuration error: GRADIO_SERVER_PORT: expected a port from 1 to 65535, got 99999."),
        ],
    )
    def test_a_malformed_port_variable_is_one_line(self, value, expected):
        """GRADIO_SERVER_PORT that is not a port: one line naming it, a non-zero exit, no traceback."""
        result = run_app(GRADIO_SERVER_PORT=value)
        assert result.returncode != 0
        assert result.stderr.strip() == expected

    def test_a_busy_port_option_is_one_line(self, busy_port):
        """--port on a port in use: one line, a non-zero exit, no traceback, and nothing loaded first."""
        result = run_app("--port", str(busy_port))
        assert result.returncode != 0
        assert result.stderr.strip() == (
            f"Cannot start: port {busy_port} (--port) is already in use by another program. Stop it, or pick "
            "another port with --port."
        )

    def test_a_busy_port_variable_does_not_move_on(self, busy_port):
        """GRADIO_SERVER_PORT on a port in use stops start-up, instead of serving on the next port unannounced."""
        result = run_app(GRADIO_SERVER_PORT=str(busy_port))
        assert result.returncode != 0
        assert result.stderr.strip() == (
            f"Cannot start: port {busy_port} (GRADIO_SERVER_PORT) is already in use by another program. Stop it, "
            "or pick another port with --port."
        )

    def test_the_default_port_taken_is_said_not_moved(self):
        """Plain `python app.py` with 7860 in use (README's address): one line, instead of another port unsaid."""
        with socket.socket() as held:
            with contextlib.suppress(OSError):  # already taken by something else: taken all the same
                held.bind(("127.0.0.1", 7860))
                held.listen()
            result = run_app()
        assert result.returncode != 0
        assert result.stderr.strip() == (
            "Cannot start: port 7860 (the default port) is already in use by another program. Stop it, or pick "
            "another port with --port."
        )


class TestLifecycle:
    def test_sigterm_closes_the_backends_and_exits_cleanly(self, tmp_path: Path):
        """A Space stops the app with SIGTERM: it shuts down as on Ctrl+C, closing the backends, with exit 0."""
        with FakeOpenAI() as server:
            app = start_app(tmp_path, OPENAI_BASE_URL=server.base_url, LLM_MODEL="m")
            assert Client(app.url, verbose=False).predict("hi", api_name="/chat") == "You said: hi"
            app.process.send_signal(signal.SIGTERM)
            assert app.process.wait(timeout=20) == 0
        assert "Stopped: the backends' connections are closed." in app.log()
        assert "Unclosed client session" not in app.log()

    def test_a_missing_history_secret_is_said_in_the_log(self, tmp_path: Path):
        """Without HISTORY_SECRET the log says saved chats will not survive a restart."""
        app = start_app(tmp_path, timeout=30, HISTORY_SECRET="<unset>", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
        stop_app(app)
        assert "HISTORY_SECRET is not set" in app.log()
        assert "will not survive a restart" in app.log()


class TestTryThePage:
    def test_the_readme_line_chats_with_no_server_no_key_and_no_hub(self, tmp_path: Path):
        """README's line to try the page, run as printed (on free ports): the stand-in model server and the app
        start together, and a chat streams back, with the Hub out of reach."""
        readme = (ROOT / "README.md").read_text()
        line = next(line for line in readme.splitlines() if line.startswith("python -m tests.support.fake_openai"))
        model_port, app_port = free_port(), free_port()
        command = line.replace("8001", str(model_port)).replace("python app.py", f"python app.py --port {app_port}")
        log = (tmp_path / "try.log").open("wb")
        env = app_env(HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}:{app_env().get('PATH', '')}")
        process = spawn(["bash", "-c", command], env=env, log=log)
        try:
            url = f"http://127.0.0.1:{app_port}/"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "gradio_api/info", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            client = Client(url, verbose=False)
            job = client.submit("Hello there", api_name="/chat")
            assert job.result(timeout=30) == "You said: Hello there"
            assert len(job.outputs()) > 1  # it streamed
        finally:
            stop_process(process)
            log.close()
