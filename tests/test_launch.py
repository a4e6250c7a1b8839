"""Every way of launching the app applies the same settings: the login, the upload limit, the edge middleware.

Each path is the real one, in a process of its own: `python app.py`, `from app import demo; demo.launch()`,
`demo.launch(inline=True)` as a notebook calls it, and `gradio app.py` (reload mode).
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import app_env, spawn, stop_process
from tests.support.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.e2e

AUTH = "admin:correct-horse-battery"
LAUNCH_PATHS = {
    "python app.py": lambda port: [sys.executable, "app.py", "--port", str(port)],
    "from app import demo; demo.launch()": lambda port: [
        sys.executable,
        "-c",
        f"from app import demo; demo.launch(server_port={port})",
    ],
    "demo.launch(inline=True)": lambda port: [
        sys.executable,
        "-c",
        "import time\nfrom app import demo\n"
        f"demo.launch(inline=True, server_port={port}, prevent_thread_lock=True)\nwhile True: time.sleep(1)",
    ],
    "gradio app.py": lambda port: [str(Path(sys.executable).with_name("gradio")), "app.py"],
}


def _status(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@contextmanager
def launched(path: str, tmp_path: Path, **env: str) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "launch.log"
    with log.open("wb") as out:
        process = spawn(LAUNCH_PATHS[path](port), env=app_env(GRADIO_SERVER_PORT=str(port), **env), log=out)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{path} exited with {process.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(url + "gradio_api/info", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"{path} did not start:\n{log.read_text()}")
        yield url
    finally:
        # SIGTERM to it and what it started (`gradio app.py` runs the app in a child): all of them end.
        assert stop_process(process), f"{path} was still running 10 s after SIGTERM:\n{log.read_text()}"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.mark.parametrize("path", list(LAUNCH_PATHS))
def test_every_launch_path_applies_the_settings(path: str, tmp_path: Path, server: FakeOpenAI):
    """With APP_AUTH set, each launch path serves nothing without the login, caps uploads and request bodies,
    answers 404 for deep links and sends the Content-Security-Policy."""
    env = {"OPENAI_BASE_URL": server.base_url, "LLM_MODEL": "m", "APP_AUTH": AUTH, "MAX_UPLOAD_BYTES": "2048"}
    env["MAX_ATTACHMENT_BYTES"] = "2048"  # the largest file the upload route takes is the larger of the two
    with launched(path, tmp_path, **env) as url:
        assert _status(url + "config") == 401
        assert _status(url + "gradio_api/info") == 401
        assert _status(url + "openapi.json") == 404  # FastAPI's own schema, which skips the login, is off
        assert _status(url + "gradio_api/deep_link?session_hash=x") == 404
        assert _status(url + "gradio_api/mcp/schema") == 404  # MCP routes skip the login: off with APP_AUTH
        assert _declared(url, "/gradio_api/queue/join", 2_000_000) == 413
        assert _declared(url, "/gradio_api/upload", 100_000) == 413
        with _open_quietly(url) as response:
            assert "img-src 'self'" in response.headers["Content-Security-Policy"]


def _declared(url: str, path: str, length: int) -> int:
    """The status of a POST announcing a body of `length` bytes, sent without it: a refusal must not wait for it."""
    host, port = url.removeprefix("http://").strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


@contextmanager
def _open_quietly(url: str) -> Iterator[Any]:
    """The login page (what a visitor without the login gets): its headers are what matters."""
    try:
        response = urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as error:
        response = error
    try:
        yield response
    finally:
        response.close()
