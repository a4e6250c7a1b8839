"""Streaming chats through the app against the same streams straight to its backend: wall, TTFT, CPU, memory.

Starts a local OpenAI-compatible server (`tests/support/fake_openai.py`: K tokens, a fixed delay between two) and the
app on it (`python app.py`), then, for each N in --n, runs N concurrent chats in each of these modes, alternated
round by round in one run (and the order rotated) so that drift on a noisy machine hits them alike:

- direct:         N streams straight to the backend with the async `openai` client: the floor;
- browser /chat:  N sessions through the app's `/chat` endpoint, speaking the queue protocol as Gradio's JS
                  client does: `POST /gradio_api/queue/join`, then the `/gradio_api/queue/data` SSE stream,
                  applying the update diffs (`process_generating` carries the full outputs once, then diffs);
- browser UI:     N sessions doing what pressing Enter in the page's chat box (elem_id "message") does: its
                  whole event chain, read from /config (`/run/predict` for the unqueued steps, the queue for
                  the streamed reply, then the follow-ups the page fires when it ends);
- HTTP /call:     N chats through Gradio's HTTP API as README's curl example does: `POST /gradio_api/call/chat`,
                  then its SSE stream, full outputs in every event;
- gradio_client:  N `gradio_client.Client`s (one session each) calling `submit(..., api_name="/chat")`; only for
                  N <= --gradio-client-max-n (64): every Client runs its own threads, which polls at 50 ms, so
                  at 256 it would measure the client. Clients are built before the clock starts.

Run from the repository root (5-8 minutes with the defaults; keep it under `timeout 900`):

    python bench/chat_stream.py
    python bench/chat_stream.py --n 1 64 --rounds 5 --tokens 100 --delay 0.01
    python bench/chat_stream.py --app-url http://127.0.0.1:7860/ --backend-url http://127.0.0.1:8001/v1 \\
        --app-pid 1234    # an app already running on a fake server started with the same --tokens

It prints one table per N: mode | wall s | x direct | TTFT p50 / p95 ms | TTFT added by the app (p50 minus the
direct p50) | complete (exact final text, all rounds) | updates per stream | app CPU ms per streamed update. Then
the cold start (process start to the first answer of `/greet` over HTTP, with the OpenAI backend), the app's RSS
(idle, after the load, peak) and idle CPU, another visitor's `/greet` latency (called over HTTP every 20 ms from a
thread, for 2 s with the app otherwise idle, then through one more run of 64 page chats, which is not in the
tables), the targets marked ok or MISS, and, as the last line, a one-line SUMMARY. Wall is the median over
rounds, and the ratio the median of the per-round ratios; TTFT percentiles pool every stream of every round. CPU is
user+system time of the app's process tree, read from /proc around each run; the fake server's CPU is not counted
(it is shown apart). Progress goes to stderr. Exit status 0, or 1 with --check when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from gradio_client import Client
    from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Variables the app reads, cleared so a real key in the developer's shell never sends the benchmark to a paid API.
from tests.support.apps import APP_VARIABLES, PER_ADDRESS_LIMITS_OFF  # noqa: E402

MESSAGE = "Tell me, at length, how streaming works."
DIRECT, CHAT, UI, HTTP_CALL, GRADIO_CLIENT = "direct", "browser /chat", "browser UI", "HTTP /call", "gradio_client"
MODES = (DIRECT, CHAT, UI, HTTP_CALL, GRADIO_CLIENT)
# The targets, for both the page's chain (what a visitor uses) and /chat: wall time against the model server's own
# at 64 and 256 streams, time to first token added at 1 and 64, CPU per streamed update, cold start.
TARGET_WALL_RATIO_64 = 1.15
TARGET_WALL_RATIO_256 = 1.5
TARGET_ADDED_TTFT_1_MS = 15.0
TARGET_ADDED_TTFT_64_MS = 150.0
TARGET_CPU_PER_UPDATE_MS = 0.3
TARGET_COLD_START_S = 3.0
# Another visitor's /greet while the page's chats stream (the loop is never blocked), and the app at rest.
TARGET_GREET_P99_MS = 50.0
GREET_PROBE_N = 64
TARGET_IDLE_CPU_MS = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 8, 64, 256], help="concurrent streams (1 8 64 256)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply from the fake server (default 50)")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between two tokens (default 0.02)")
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds (default 3)")
    parser.add_argument("--no-gradio-client", action="store_true", help="skip the gradio_client mode")
    parser.add_argument("--no-ui", action="store_true", help="skip the browser UI (the page's event chain) mode")
    parser.add_argument("--no-http-call", action="store_true", help="skip the HTTP /call mode (what curl does)")
    parser.add_argument(
        "--gradio-client-max-n", type=int, default=64, help="largest N run through gradio_client (default 64)"
    )
    parser.add_argument("--cold-starts", type=int, default=3, help="app starts timed, the last one benched (3)")
    parser.add_argument("--app-url", help="bench this running app instead of starting one (no cold start)")
    parser.add_argument("--app-pid", type=int, help="with --app-url: its process id, for CPU and RSS")
    parser.add_argument("--backend-url", help="use this OpenAI-compatible server instead of starting the fake one")
    parser.add_argument("--model", default="fake-model", help="model name for the direct streams and the app")
    parser.add_argument("--timeout", type=float, help="seconds allowed per run (default 30 + 4 x reply time + N/10)")
    parser.add_argument("--budget", type=float, default=780, help="seconds for the whole benchmark (default 780)")
    parser.add_argument("--logs", type=Path, help="keep the app's and the fake server's logs in this directory")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.app_pid and not args.app_url:
        parser.error("--app-pid goes with --app-url")
    if min(args.n) < 1 or args.rounds < 1 or args.tokens < 1 or args.delay < 0 or args.cold_starts < 1:
        parser.error("--n, --rounds, --tokens and --cold-starts must be positive, --delay not negative")
    return args


# --- Processes: started here, always stopped, measured through /proc ---------------------------------------


class _Processes:
    """The subprocesses this script started; `stop_all` runs from `finally`, `atexit` and SIGTERM alike."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process in self._running:
            self._running.remove(process)

    def stop_all(self) -> None:
        for process in list(self._running):
            self.stop(process)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the `finally` that stops the subprocesses; a bare SIGTERM would skip it.
    raise SystemExit(128 + signum)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        for children in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(child) for child in children.read_text().split())
        i += 1
    return pids


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of `pid` and its descendants, or None where /proc cannot tell."""
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return None
    total = 0.0
    for member in _process_tree(pid):
        try:
            # Fields after the command name, which may itself hold spaces or ')': utime and stime are 14 and 15.
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def memory_mb(pid: int | None, key: str = "VmRSS") -> float | None:
    """Resident memory (VmRSS) or its peak (VmHWM) of `pid` and its descendants, in MB."""
    if pid is None or not Path(f"/proc/{pid}/status").exists():
        return None
    total_kb = 0
    for member in _process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_fake_server(procs: _Processes, logs: Path, *, tokens: int, delay: float) -> tuple[int, str]:
    """`python -m tests.support.fake_openai` on a free port; returns its pid and base URL once it answers."""
    port = _free_port()
    log = logs / "fake_openai.log"
    options = ["--port", str(port), "--tokens", str(tokens), "--delay", str(delay)]
    process = procs.start(
        [sys.executable, "-m", "tests.support.fake_openai", *options],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        log=log,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the fake server exited with {process.returncode}:\n{_log_tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if http.get(url + "/models").status_code == 200:
                    return process.pid, url
            time.sleep(0.05)
    raise RuntimeError(f"the fake server did not answer in 30 s:\n{_log_tail(log)}")


def _app_env(backend_url: str, model: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env.update(
        OPENAI_BASE_URL=backend_url,
        LLM_MODEL=model,
        RATE_LIMIT_PER_SESSION="none",
        RATE_LIMIT_PER_IP="none",
        QUEUE_MAX_SIZE="none",
        OWNER_DAILY_TOKENS="none",
        DAILY_TOKENS_PER_IP="none",
        # Every bench client comes from 127.0.0.1, one address.
        **PER_ADDRESS_LIMITS_OFF,
        HISTORY_SECRET="bench-history-secret-0123456789abcdef",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _greet_answers(http: httpx.Client, url: str) -> bool:
    """True once `/greet` answers over HTTP the way any client calls it: POST, then read the event stream."""
    try:
        posted = http.post(url + "gradio_api/call/greet", json={"data": ["bench"]})
        if posted.status_code != 200:
            return False
        event_id = posted.json()["event_id"]
        with http.stream("GET", f"{url}gradio_api/call/greet/{event_id}") as events:
            return any(line.startswith("event: complete") for line in events.iter_lines())
    except (httpx.TransportError, ValueError, KeyError):
        return False


def start_app(
    procs: _Processes, logs: Path, *, backend_url: str, model: str
) -> tuple[subprocess.Popen[bytes], str, float]:
    """`python app.py` on a free port; returns the process, its URL and the seconds until `/greet` answered."""
    port = _free_port()
    log = logs / f"app-{port}.log"
    started = time.perf_counter()
    process = procs.start(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        env=_app_env(backend_url, model),
        log=log,
    )
    url = f"http://127.0.0.1:{port}/"
    with httpx.Client(timeout=httpx.Timeout(5, connect=1)) as http:
        while time.perf_counter() - started < 60:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with {process.returncode}:\n{_log_tail(log)}")
            if _greet_answers(http, url):
                return process, url, time.perf_counter() - started
            time.sleep(0.02)
    procs.stop(process)
    raise RuntimeError(f"the app did not answer /greet in 60 s:\n{_log_tail(log)}")


# --- What the app looks like to a browser: /config ------------------------------------------------------


@dataclass(frozen=True)
class AppSchema:
    """The parts of the app's /config a browser acts on: events, their chaining, and the components' values."""

    api: str
    protocol: str
    deps: dict[int, dict[str, Any]]
    types: dict[int, str]
    defaults: dict[int, Any]
    # dependency id -> the ids the page fires when it ends (`.then`, `.success`), as the JS client does
    children: dict[int, list[int]]
    chat: int
    ui_root: int | None
    message: int
    ui_message: int | None  # the page's chat box

    @classmethod
    def load(cls, url: str) -> AppSchema:
        config = httpx.get(url + "config", timeout=10).raise_for_status().json()
        deps = {int(dep["id"]): dep for dep in config["dependencies"]}
        chat = next((i for i, dep in deps.items() if dep.get("api_name") == "chat"), None)
        if chat is None:
            raise RuntimeError("the app has no event with api_name 'chat'")
        message = int(deps[chat]["inputs"][0])
        components = config["components"]
        # The page's chat box (elem_id "message", as the browser tests find it): its submit starts the UI chain.
        box = next((int(c["id"]) for c in components if c.get("props", {}).get("elem_id") == "message"), None)
        ui_root = next(
            (i for i, dep in deps.items() if [box, "submit"] in dep["targets"] and not dep["types"]["cancel"]),
            None,
        )
        children: dict[int, list[int]] = {}
        for i, dep in deps.items():
            if dep.get("trigger_after") is not None and not dep["types"]["cancel"]:
                children.setdefault(int(dep["trigger_after"]), []).append(i)
        return cls(
            api=url + config.get("api_prefix", "/gradio_api").strip("/"),
            protocol=str(config.get("protocol")),
            deps=deps,
            types={int(c["id"]): c["type"] for c in components},
            defaults={int(c["id"]): c.get("props", {}).get("value") for c in components},
            children=children,
            chat=chat,
            ui_root=ui_root,
            message=message,
            ui_message=box,
        )

    def chat_inputs(self) -> list[Any]:
        """What `/chat` gets from a page left at its defaults, after the message: system prompt, temperature..."""
        inputs = self.deps[self.chat]["inputs"][1:]
        return [self.defaults.get(i) for i in inputs if self.types.get(i) != "state"]


def apply_diff(value: Any, diff: list[list[Any]]) -> Any:
    """Apply one `process_generating` diff in place, as Gradio's JS client does (`apply_diff` in its client)."""
    for action, path, change in diff:
        if not path:
            if action == "replace":
                value = change
            elif action == "append":
                value = value + change
            else:
                raise ValueError(f"unsupported action at the root: {action!r}")
            continue
        target = value
        for key in path[:-1]:
            target = target[key]
        last = path[-1]
        if action == "replace":
            target[last] = change
        elif action == "append":
            target[last] += change
        elif action == "add":
            if isinstance(target, list):
                target.insert(int(last), change)
            else:
                target[last] = change
        elif action == "delete":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ValueError(f"unknown diff action {action!r}")
    return value


def reply_text(value: Any) -> str:
    """The reply in an output: a string as is, or the last assistant message of a chatbot's message list."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        # gradio_client returns several outputs as a tuple: the reply is the first that has text.
        return next((text for text in map(reply_text, value) if text), "")
    if isinstance(value, list):
        for message in reversed(value):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, list):  # Gradio 6: a list of blocks, [{"type": "text", "text": ...}]
                    return "".join(
                        b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
                    )
                return content if isinstance(content, str) else ""
    return ""


# --- One chat, through each client ---------------------------------------------------------------------


@dataclass
class Stream:
    """One chat's outcome: seconds to its first non-empty text, updates received, and whether the text was exact."""

    ttft: float | None = None
    updates: int = 0
    complete: bool = False
    error: str | None = None


@dataclass
class Run:
    mode: str
    n: int
    round: int
    wall: float
    streams: list[Stream]
    app_cpu: float | None  # CPU seconds the app spent during the run
    backend_cpu: float | None
    client_cpu: float  # CPU seconds of this process (the clients), all threads
    window: float  # seconds between the two CPU readings

    @property
    def updates(self) -> int:
        return sum(s.updates for s in self.streams)


async def direct_stream(client: AsyncOpenAI, *, model: str, inputs: list[Any], expected: str) -> Stream:
    """One chat straight to the backend: TTFT is the first non-empty content delta."""
    system, temperature, max_tokens = inputs[:3]
    result = Stream()
    start = time.perf_counter()
    text = ""
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": MESSAGE}],
        temperature=temperature,
        max_tokens=int(max_tokens),
        stream=True,
    )
    async with stream:
        async for chunk in stream:
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece:
                text += piece
                result.updates += 1
                if result.ttft is None:
                    result.ttft = time.perf_counter() - start
    result.complete = text == expected
    return result


class BrowserSession:
    """One browser tab: its own session hash and its components' values, fired and updated as the JS client does.

    `run(dep)` fires one event and then, like the page, every event chained after it (`.then`, `.success`).
    Unqueued events are one `POST /run/predict`. Queued ones are `POST /queue/join`, then the session's SSE stream
    `GET /queue/data?session_hash=...` until `close_stream`: `process_generating` brings the outputs in full the
    first time and as diffs after, `process_completed` the outputs in full. Gradio sends `null` for a State input
    (the server keeps states per session). The page also holds a `/heartbeat` stream open; it is left out here.
    """

    def __init__(self, schema: AppSchema, http: httpx.AsyncClient) -> None:
        self.schema = schema
        self.http = http
        self.session = uuid.uuid4().hex[:11]
        self.values = dict(schema.defaults)
        self.values[schema.message] = MESSAGE
        if schema.ui_message is not None:
            # The page's box is a MultimodalTextbox: its value is the text and the files attached (none here).
            multimodal = schema.types.get(schema.ui_message) == "multimodaltextbox"
            self.values[schema.ui_message] = {"text": MESSAGE, "files": []} if multimodal else MESSAGE
        self.result = Stream()
        self.diffed_text = ""
        self.final_text = ""
        self._start = 0.0
        self._trigger: int | None = None
        # Events of one session share its SSE stream; this chain never has two queued at once, so run them in turn.
        self._queued = asyncio.Lock()

    async def run(self, dep_id: int, *, expected: str) -> Stream:
        self._start = time.perf_counter()
        self._trigger = self.schema.deps[dep_id]["targets"][0][0]
        ok = await self._fire(dep_id)
        self.result.complete = ok and self.diffed_text == expected and self.final_text == expected
        return self.result

    async def _fire(self, dep_id: int) -> bool:
        dep = self.schema.deps[dep_id]
        if not dep["backend_fn"]:
            ok = True
        elif dep.get("queue") is False:
            ok = await self._predict(dep)
        else:
            async with self._queued:
                ok = await self._join(dep)
        after = [
            child
            for child in self.schema.children.get(dep_id, [])
            if (ok or not self.schema.deps[child]["trigger_only_on_success"])
            and (not ok or not self.schema.deps[child].get("trigger_only_on_failure"))
        ]
        results = await asyncio.gather(*(self._fire(child) for child in after))
        return ok and all(results)

    def _body(self, dep: dict[str, Any]) -> dict[str, Any]:
        data = [None if self.schema.types.get(i) == "state" else self.values.get(i) for i in dep["inputs"]]
        return {
            "data": data,
            "event_data": None,
            "fn_index": dep["id"],
            "trigger_id": self._trigger,
            "session_hash": self.session,
        }

    def _store(self, dep: dict[str, Any], data: list[Any]) -> None:
        for component, value in zip(dep["outputs"], data, strict=False):
            if self.schema.types.get(component) == "state":
                continue
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    self.values[component] = value["value"]
            else:
                self.values[component] = value

    def _text(self, dep: dict[str, Any], data: list[Any]) -> str:
        outputs = (v for c, v in zip(dep["outputs"], data, strict=False) if self.schema.types.get(c) != "state")
        return next((text for text in map(reply_text, outputs) if text), "")

    async def _predict(self, dep: dict[str, Any]) -> bool:
        response = await self.http.post(f"{self.schema.api}/run/predict", json=self._body(dep))
        if response.status_code != 200:
            self.result.error = f"{dep['api_name']}: HTTP {response.status_code} {response.text[:200]}"
            return False
        self._store(dep, response.json()["data"])
        return True

    async def _join(self, dep: dict[str, Any]) -> bool:
        joined = await self.http.post(f"{self.schema.api}/queue/join", json=self._body(dep))
        if joined.status_code != 200:
            self.result.error = f"{dep['api_name']}: join HTTP {joined.status_code} {joined.text[:200]}"
            return False
        event_id = joined.json()["event_id"]
        outputs: list[Any] | None = None
        ok = False
        params = {"session_hash": self.session}
        async with self.http.stream("GET", f"{self.schema.api}/queue/data", params=params) as events:
            async for message in _sse_json(events):
                kind = message.get("msg")
                if kind == "close_stream":
                    break
                if kind == "unexpected_error":
                    self.result.error = f"{dep['api_name']}: {message.get('message')}"
                    break
                if message.get("event_id") != event_id:
                    continue
                if kind == "process_generating":
                    if not message.get("success", True):
                        self.result.error = f"{dep['api_name']}: {message['output'].get('error')}"
                        continue
                    data = message["output"]["data"]
                    if outputs is None:
                        outputs = list(data)
                    else:
                        for i, diff in enumerate(data):
                            outputs[i] = apply_diff(outputs[i] if i < len(outputs) else None, diff)
                    self.result.updates += 1
                    self.diffed_text = self._text(dep, outputs) or self.diffed_text
                    if self.result.ttft is None and self.diffed_text:
                        self.result.ttft = time.perf_counter() - self._start
                elif kind == "process_completed":
                    ok = bool(message.get("success", True)) and "error" not in message["output"]
                    if not ok:
                        self.result.error = f"{dep['api_name']}: {message['output'].get('error')}"
                        continue
                    data = message["output"]["data"]
                    self._store(dep, data)
                    if dep["types"]["generator"]:
                        self.final_text = self._text(dep, data)
        return ok


async def http_call_stream(http: httpx.AsyncClient, api: str, *, inputs: list[Any], expected: str) -> Stream:
    """One chat through Gradio's HTTP API, as README's curl example: `POST /call/chat`, then its SSE stream, where
    each `generating` event carries the outputs in full (no diffs) and `complete` the final ones."""
    result = Stream()
    start = time.perf_counter()
    posted = await http.post(f"{api}/call/chat", json={"data": [MESSAGE, *inputs]})
    if posted.status_code != 200:
        result.error = f"/call/chat: HTTP {posted.status_code} {posted.text[:200]}"
        return result
    event_id = posted.json()["event_id"]
    text = final = ""
    async with http.stream("GET", f"{api}/call/chat/{event_id}") as events:
        kind = ""
        async for line in events.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("generating", "complete"):
                outputs = json.loads(line[5:])
                value = reply_text(outputs[0]) if outputs else ""
                if kind == "complete":
                    final = value
                    break
                result.updates += 1
                text = value or text
                if result.ttft is None and text:
                    result.ttft = time.perf_counter() - start
            elif line.startswith("data:") and kind == "error":
                result.error = f"/call/chat: {line[5:].strip()[:200]}"
                break
    result.complete = text == expected and final == expected
    return result


async def _sse_json(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    if response.status_code != 200:
        raise RuntimeError(f"queue/data answered HTTP {response.status_code}")
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def _make_clients(url: str, n: int) -> list[Client]:
    from gradio_client import Client

    def build(_: int) -> Client:
        return Client(url, verbose=False, download_files=False, analytics_enabled=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(build, range(n)))


def _drop_clients(clients: list[Client]) -> None:
    # `Client.close()` joins the heartbeat thread for up to 1 s each (it only wakes on a heartbeat line, every
    # 15 s): flag them all instead, and let the daemon threads end on their next line.
    for client in clients:
        client._kill_heartbeat.set()


def gradio_client_run(
    clients: list[Client], *, inputs: list[Any], expected: str, timeout: float
) -> tuple[float, list[Stream]]:
    """Submit one `/chat` per client at once, then poll every job each 5 ms (iterating a Job spins at 1 ms)."""
    streams = [Stream() for _ in clients]
    start = time.perf_counter()
    starts, jobs = [], []
    for client in clients:
        starts.append(time.perf_counter())
        jobs.append(client.submit(MESSAGE, *inputs, api_name="/chat"))
    pending = set(range(len(jobs)))
    end = start
    while pending and time.perf_counter() - start < timeout:
        now = time.perf_counter()
        for i in list(pending):
            job, stream = jobs[i], streams[i]
            done = job.done()
            if stream.ttft is None and any(reply_text(out) for out in job.outputs()):
                stream.ttft = now - starts[i]
            if done:
                pending.discard(i)
                end = now
                stream.updates = len(job.outputs())
                try:
                    stream.complete = reply_text(job.result(timeout=5)) == expected
                except Exception as error:  # any failure of a job only makes that stream incomplete
                    stream.error = repr(error)
        time.sleep(0.005)
    for i in pending:
        streams[i].error = "timed out"
        jobs[i].cancel()
    return (end - start) if not pending else timeout, streams


# --- The benchmark ---------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    schema: AppSchema
    app_url: str
    app_pid: int | None
    backend_url: str
    backend_pid: int | None
    expected: str
    inputs: list[Any]
    idle_rate: float = 0.0  # CPU seconds per second the app burns with nothing to do
    started: float = field(default_factory=time.monotonic)
    partial: bool = False
    # /greet's latencies in seconds, the app otherwise idle ("idle") and while GREET_PROBE_N page chats stream.
    greets: dict[str, list[float]] = field(default_factory=dict)
    probe_mode: str = UI  # the mode whose chats stream while the probe runs
    _stop_probe: bool = False

    def timeout(self, n: int) -> float:
        return float(self.args.timeout or 30 + 4 * self.args.tokens * self.args.delay + 0.1 * n)

    def modes(self, n: int) -> list[str]:
        modes = [DIRECT, CHAT]
        if not self.args.no_ui and self.schema.ui_root is not None:
            modes.append(UI)
        if not self.args.no_http_call:
            modes.append(HTTP_CALL)
        if not self.args.no_gradio_client and n <= self.args.gradio_client_max_n:
            modes.append(GRADIO_CLIENT)
        return modes

    async def measure(self) -> list[Run]:
        from openai import AsyncOpenAI

        # Idle connections are dropped after 1 s, well before uvicorn closes them (5 s): reusing one the server is
        # closing fails with "Server disconnected without sending a response", which a browser would retry.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=1)
        openai_client = AsyncOpenAI(base_url=self.backend_url, api_key="bench", max_retries=0, timeout=60)
        timeout = httpx.Timeout(60, connect=10)
        runs: list[Run] = []
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as http, openai_client:
            # Warm-up, not reported: the first call pays for imports, connections and caches on every side.
            for mode in self.modes(1):
                await self._run(mode, 1, -1, http, openai_client)
            for round_ in range(self.args.rounds):
                for n in self.args.n:
                    modes = self.modes(n)
                    shift = round_ % len(modes)
                    for mode in modes[shift:] + modes[:shift]:
                        if time.monotonic() - self.started > self.args.budget:
                            self.partial = True
                            return runs
                        runs.append(await self._run(mode, n, round_, http, openai_client))
            if GREET_PROBE_N in self.args.n:
                self.greets["idle"] = await asyncio.to_thread(self._greet_for, 2.0)
                self.probe_mode = UI if UI in self.modes(GREET_PROBE_N) else CHAT
                self._stop_probe = False
                probe = asyncio.create_task(asyncio.to_thread(self._greet_until_stopped))
                try:
                    await self._run(self.probe_mode, GREET_PROBE_N, -1, http, openai_client, label="with /greet probe")
                finally:
                    self._stop_probe = True
                    self.greets["loaded"] = await probe
        return runs

    def _greet_for(self, seconds: float) -> list[float]:
        until = time.monotonic() + seconds
        return self._greets(lambda: time.monotonic() > until)

    def _greet_until_stopped(self) -> list[float]:
        return self._greets(lambda: self._stop_probe)

    def _greets(self, stop: Callable[[], bool]) -> list[float]:
        """Another visitor, in a thread of its own: /greet over HTTP as curl calls it, every 20 ms, until `stop()`."""
        latencies: list[float] = []
        with httpx.Client(base_url=self.app_url, timeout=30) as http:
            while not stop():
                started = time.perf_counter()
                event = http.post("gradio_api/call/greet", json={"data": ["bench"]}).json()["event_id"]
                http.get(f"gradio_api/call/greet/{event}")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)
        return latencies

    async def _run(
        self,
        mode: str,
        n: int,
        round_: int,
        http: httpx.AsyncClient,
        openai_client: AsyncOpenAI,
        label: str | None = None,
    ) -> Run:
        clients = await asyncio.to_thread(_make_clients, self.app_url, n) if mode == GRADIO_CLIENT else []
        await asyncio.sleep(0.3)  # let the previous run's connections close before the clock starts
        app_cpu, backend_cpu = cpu_seconds(self.app_pid), cpu_seconds(self.backend_pid)
        client_cpu = time.process_time()
        start = time.perf_counter()
        if mode == GRADIO_CLIENT:
            wall, streams = await asyncio.to_thread(
                gradio_client_run, clients, inputs=self.inputs, expected=self.expected, timeout=self.timeout(n)
            )
            _drop_clients(clients)
        else:
            streams = await asyncio.gather(*(self._one(mode, http, openai_client, n) for _ in range(n)))
            wall = time.perf_counter() - start
        await asyncio.sleep(0.2)  # the app's work after the last byte (closing, cleanup) belongs to this run
        app_after, backend_after = cpu_seconds(self.app_pid), cpu_seconds(self.backend_pid)
        window = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        run = Run(
            mode=mode,
            n=n,
            round=round_,
            wall=wall,
            streams=list(streams),
            app_cpu=None if app_cpu is None or app_after is None else app_after - app_cpu,
            backend_cpu=None if backend_cpu is None or backend_after is None else backend_after - backend_cpu,
            client_cpu=client_cpu,
            window=window,
        )
        label = label or ("warm-up" if round_ < 0 else f"round {round_ + 1}/{self.args.rounds}")
        errors = {s.error for s in run.streams if s.error}
        print(
            f"{label} N={n} {mode}: {wall:.2f} s, {sum(s.complete for s in run.streams)}/{n} complete"
            + (f", errors: {sorted(errors)[:3]}" if errors else ""),
            file=sys.stderr,
            flush=True,
        )
        return run

    async def _one(self, mode: str, http: httpx.AsyncClient, openai_client: AsyncOpenAI, n: int) -> Stream:
        coroutine: Awaitable[Stream]
        if mode == DIRECT:
            coroutine = direct_stream(openai_client, model=self.args.model, inputs=self.inputs, expected=self.expected)
        elif mode == HTTP_CALL:
            coroutine = http_call_stream(http, self.schema.api, inputs=self.inputs, expected=self.expected)
        else:
            root = self.schema.chat if mode == CHAT else self.schema.ui_root
            assert root is not None
            coroutine = BrowserSession(self.schema, http).run(root, expected=self.expected)
        try:
            return await asyncio.wait_for(coroutine, self.timeout(n))
        except Exception as error:  # a failed stream is counted incomplete, with its reason shown on stderr
            return Stream(error=f"{type(error).__name__}: {error}"[:200])


# --- Report ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Row:
    mode: str
    n: int
    wall: float
    ratio: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    added_ttft: float | None
    complete: int
    total: int
    updates_per_stream: float
    cpu_per_update: float | None  # ms
    net_cpu_per_update: float | None  # ms, less what the app burns when idle over the same time
    cpu_seconds: tuple[float | None, float | None, float]  # app, backend, clients: s per run, median


def cpu_per_update(runs: Sequence[Run], *, idle_rate: float = 0.0) -> float | None:
    """Milliseconds of app CPU per streamed update over `runs`, less `idle_rate` (CPU s/s) over their windows."""
    measured = [run for run in runs if run.app_cpu is not None]
    updates = sum(run.updates for run in measured)
    if not updates:
        return None
    return 1000 * sum((run.app_cpu or 0) - idle_rate * run.window for run in measured) / updates


def summarise(runs: list[Run], n: int, *, idle_rate: float) -> list[Row]:
    by_mode: dict[str, list[Run]] = {}
    for run in runs:
        if run.n == n and run.round >= 0:
            by_mode.setdefault(run.mode, []).append(run)
    direct = {run.round: run for run in by_mode.get(DIRECT, [])}
    direct_ttfts = [s.ttft for run in direct.values() for s in run.streams if s.ttft is not None]
    direct_p50 = percentile(direct_ttfts, 50)
    rows = []
    for mode in MODES:
        mode_runs = by_mode.get(mode)
        if not mode_runs:
            continue
        ttfts = [s.ttft for run in mode_runs for s in run.streams if s.ttft is not None]
        ratios = [run.wall / direct[run.round].wall for run in mode_runs if run.round in direct]
        p50 = percentile(ttfts, 50)
        app = [run.app_cpu for run in mode_runs if run.app_cpu is not None]
        backend = [run.backend_cpu for run in mode_runs if run.backend_cpu is not None]
        rows.append(
            Row(
                mode=mode,
                n=n,
                wall=statistics.median(run.wall for run in mode_runs),
                ratio=statistics.median(ratios) if ratios else None,
                ttft_p50=p50,
                ttft_p95=percentile(ttfts, 95),
                added_ttft=None if mode == DIRECT or p50 is None or direct_p50 is None else p50 - direct_p50,
                complete=sum(s.complete for run in mode_runs for s in run.streams),
                total=sum(len(run.streams) for run in mode_runs),
                updates_per_stream=sum(run.updates for run in mode_runs) / sum(len(r.streams) for r in mode_runs),
                cpu_per_update=None if mode == DIRECT else cpu_per_update(mode_runs),
                net_cpu_per_update=None if mode == DIRECT else cpu_per_update(mode_runs, idle_rate=idle_rate),
                cpu_seconds=(
                    statistics.median(app) if app else None,
                    statistics.median(backend) if backend else None,
                    statistics.median(run.client_cpu for run in mode_runs),
                ),
            )
        )
    return rows


def _fmt(value: float | None, spec: str, *, scale: float = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    return format(value * scale, ("+" if sign else "") + spec)


def table(rows: list[Row], *, rounds: int) -> list[str]:
    lines = [
        f"N={rows[0].n} concurrent streams ({rounds} rounds)",
        f"  {'mode':<14} {'wall s':>7} {'x direct':>8} {'TTFT p50 ms':>11} {'p95 ms':>8} {'added p50 ms':>12} "
        f"{'complete':>9} {'upd/stream':>10} {'CPU ms/upd':>10} {'net of idle':>11}  CPU s app/fake/bench",
    ]
    for row in rows:
        lines.append(
            f"  {row.mode:<14} {row.wall:>7.3f} {_fmt(row.ratio, '.2f') + 'x':>8} "
            f"{_fmt(row.ttft_p50, '.1f', scale=1000):>11} {_fmt(row.ttft_p95, '.1f', scale=1000):>8} "
            f"{_fmt(row.added_ttft, '.1f', scale=1000, sign=True):>12} {f'{row.complete}/{row.total}':>9} "
            f"{row.updates_per_stream:>10.1f} {_fmt(row.cpu_per_update, '.3f'):>10} "
            f"{_fmt(row.net_cpu_per_update, '.3f'):>11}  {'/'.join(_fmt(c, '.2f') for c in row.cpu_seconds)}"
        )
    return lines


def _row(rows: dict[int, list[Row]], n: int, mode: str) -> Row | None:
    return next((row for row in rows.get(n, []) if row.mode == mode), None)


def report(
    bench: Bench, runs: list[Run], memory: dict[str, float | None], cold_starts: list[float]
) -> tuple[list[str], bool]:
    """The tables, the start-up and memory lines, the targets, and the SUMMARY line last; and whether all were met."""
    args = bench.args
    rows = {n: summarise(runs, n, idle_rate=bench.idle_rate) for n in args.n}
    lines = [
        f"chat_stream: {args.tokens} tokens, one every {args.delay * 1000:g} ms, from {bench.backend_url}; "
        f"app at {bench.app_url}",
        "",
    ]
    for n in args.n:
        if rows[n]:
            lines += [*table(rows[n], rounds=args.rounds), ""]
    if not args.no_gradio_client and any(n > args.gradio_client_max_n for n in args.n):
        lines.append(f"gradio_client runs only for N <= {args.gradio_client_max_n} (--gradio-client-max-n).")
    if bench.partial:
        lines.append(f"BUDGET of {args.budget:g} s reached: the later runs were skipped, results are partial.")
    cold = statistics.median(cold_starts) if cold_starts else None
    if cold_starts:
        each = ", ".join(f"{s:.2f}" for s in cold_starts)
        lines.append(f"cold start, process start to first /greet answer over HTTP: {cold:.2f} s median ({each} s)")
    else:
        lines.append("cold start: not measured (--app-url)")
    lines.append(
        f"app RSS: idle {_fmt(memory.get('idle'), '.0f')} MB, after the load {_fmt(memory.get('after'), '.0f')} MB, "
        f"peak {_fmt(memory.get('peak'), '.0f')} MB; idle CPU {_fmt(memory.get('idle_cpu'), '.1f')} ms/s"
    )
    idle_cpu = memory.get("idle_cpu")
    idle_greets, loaded_greets = bench.greets.get("idle", []), bench.greets.get("loaded", [])
    probe_name = "page" if bench.probe_mode == UI else bench.probe_mode
    greet_p99 = percentile(loaded_greets, 99)
    if loaded_greets:
        lines.append(
            f"another visitor's /greet over HTTP: {_fmt(percentile(idle_greets, 50), '.1f', scale=1000)} ms p50, "
            f"{_fmt(percentile(idle_greets, 99), '.1f', scale=1000)} ms p99 with the app otherwise idle "
            f"({len(idle_greets)} calls); {_fmt(percentile(loaded_greets, 50), '.1f', scale=1000)} ms p50, "
            f"{_fmt(greet_p99, '.1f', scale=1000)} ms p99 while {GREET_PROBE_N} {probe_name} chats stream "
            f"({len(loaded_greets)} calls)"
        )
    lines.append(
        "CPU ms/upd: the app's process tree, user+system, per update received; net of idle: less its idle CPU "
        "over the same time. CPU s: median per run of the app, the fake server and this script's clients; "
        "only the app's counts against the targets."
    )

    streamed = [run for run in runs if run.mode in (CHAT, UI) and run.round >= 0]
    chat_cpu = cpu_per_update(streamed)
    chat_net = cpu_per_update(streamed, idle_rate=bench.idle_rate)
    checks: list[tuple[str, bool | None]] = []
    for mode in (UI, CHAT):
        at1, at64, at256 = (_row(rows, n, mode) for n in (1, 64, 256))
        for n, row, target in ((64, at64, TARGET_WALL_RATIO_64), (256, at256, TARGET_WALL_RATIO_256)):
            complete = f", {row.complete}/{row.total} complete" if row else ""
            ratio = _fmt(row.ratio if row else None, ".2f")
            checks.append(
                (
                    f"{mode} wall at {n} streams {ratio}x direct (<= {target}x){complete}",
                    None if row is None or row.ratio is None else row.ratio <= target and row.complete == row.total,
                )
            )
        for n, row, target_ms in ((1, at1, TARGET_ADDED_TTFT_1_MS), (64, at64, TARGET_ADDED_TTFT_64_MS)):
            added = _fmt(row.added_ttft if row else None, ".1f", scale=1000)
            checks.append(
                (
                    f"{mode} TTFT added at {n} stream(s) {added} ms p50 (<= {target_ms:g} ms)",
                    None if row is None or row.added_ttft is None else row.added_ttft * 1000 <= target_ms,
                )
            )
    checks += [
        (
            f"app CPU per streamed update {_fmt(chat_cpu, '.3f')} ms over all browser /chat and UI runs "
            f"({_fmt(chat_net, '.3f')} ms net of idle) (<= {TARGET_CPU_PER_UPDATE_MS} ms)",
            None if chat_cpu is None else chat_cpu <= TARGET_CPU_PER_UPDATE_MS,
        ),
        (
            f"cold start {_fmt(cold, '.2f')} s (<= {TARGET_COLD_START_S:g} s)",
            None if cold is None else cold <= TARGET_COLD_START_S,
        ),
        (
            f"another visitor's /greet while {GREET_PROBE_N} {probe_name} chats stream "
            f"{_fmt(greet_p99, '.1f', scale=1000)} "
            f"ms p99 (<= {TARGET_GREET_P99_MS:g} ms)",
            None if greet_p99 is None else greet_p99 * 1000 <= TARGET_GREET_P99_MS,
        ),
        (
            f"idle CPU {_fmt(idle_cpu, '.1f')} ms/s (<= {TARGET_IDLE_CPU_MS:g} ms/s)",
            None if idle_cpu is None else idle_cpu <= TARGET_IDLE_CPU_MS,
        ),
    ]
    lines.append("targets:")
    for text, met in checks:
        lines.append(f"  {'n/a ' if met is None else 'ok  ' if met else 'MISS'} {text}")
    ui64, chat64, ui256 = _row(rows, 64, UI), _row(rows, 64, CHAT), _row(rows, 256, UI)
    summary = (
        f"SUMMARY 64 streams: page {_fmt(ui64.ratio if ui64 else None, '.2f')}x direct "
        f"(TTFT {_fmt(ui64.added_ttft if ui64 else None, '.0f', scale=1000, sign=True)} ms), "
        f"/chat {_fmt(chat64.ratio if chat64 else None, '.2f')}x "
        f"(TTFT {_fmt(chat64.added_ttft if chat64 else None, '.0f', scale=1000, sign=True)} ms); "
        f"page at 256 {_fmt(ui256.ratio if ui256 else None, '.2f')}x; {_fmt(chat_cpu, '.2f')} ms CPU/update; "
        f"cold start {_fmt(cold, '.1f')} s; idle RSS {_fmt(memory.get('idle'), '.0f')} MB"
        + (" (PARTIAL)" if bench.partial else "")
    )
    lines.append(summary)
    return lines, all(met is not False for _, met in checks)


def _main(args: argparse.Namespace, procs: _Processes, logs: Path) -> int:
    if args.backend_url:
        backend_url, backend_pid = args.backend_url.rstrip("/"), None
    else:
        backend_pid, backend_url = start_fake_server(procs, logs, tokens=args.tokens, delay=args.delay)

    cold_starts: list[float] = []
    memory: dict[str, float | None] = {}
    if args.app_url:
        app_url, app_pid = args.app_url.rstrip("/") + "/", args.app_pid
    else:
        for i in range(args.cold_starts):
            process, app_url, seconds = start_app(procs, logs, backend_url=backend_url, model=args.model)
            cold_starts.append(seconds)
            print(f"cold start {i + 1}/{args.cold_starts}: {seconds:.2f} s", file=sys.stderr, flush=True)
            if i < args.cold_starts - 1:
                procs.stop(process)
        app_pid = process.pid
    time.sleep(2)  # let start-up work (imports finishing, first requests' caches) settle before "idle"
    memory["idle"] = memory_mb(app_pid)
    idle_cpu, idle_start = cpu_seconds(app_pid), time.perf_counter()
    time.sleep(3)
    idle_after = cpu_seconds(app_pid)
    idle_rate = (
        0.0 if idle_cpu is None or idle_after is None else (idle_after - idle_cpu) / (time.perf_counter() - idle_start)
    )
    memory["idle_cpu"] = None if idle_cpu is None else idle_rate * 1000

    schema = AppSchema.load(app_url)
    if schema.protocol != "sse_v3":
        print(f"warning: the app speaks {schema.protocol}; this client follows sse_v3", file=sys.stderr)
    inputs = schema.chat_inputs()
    max_tokens = int(inputs[2]) if len(inputs) > 2 and isinstance(inputs[2], (int, float)) else args.tokens
    expected = "".join(f"t{i} " for i in range(min(args.tokens, max_tokens)))
    bench = Bench(
        args=args,
        schema=schema,
        app_url=app_url,
        app_pid=app_pid,
        backend_url=backend_url,
        backend_pid=backend_pid,
        expected=expected,
        inputs=inputs,
        idle_rate=idle_rate,
    )
    runs = asyncio.run(bench.measure())
    time.sleep(2)
    memory["after"] = memory_mb(app_pid)
    memory["peak"] = memory_mb(app_pid, "VmHWM")
    lines, met = report(bench, runs, memory, cold_starts)
    print("\n".join(lines), flush=True)
    return 1 if args.check and not met else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    procs = _Processes()
    atexit.register(procs.stop_all)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="chat_stream-") as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            return _main(args, procs, logs)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
