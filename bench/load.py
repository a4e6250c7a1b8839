"""Load: 200 concurrent clients over loopback, each a short chat and a tool call; then the same past the queue's size.

    python bench/load.py [--clients 200] [--tokens 20] [--delay 0.02]

Starts its own fake OpenAI-compatible server (tests/support/fake_openai.py) and the app, both on 127.0.0.1, and
calls the app through Gradio's HTTP API (POST /gradio_api/call/<name>, then its SSE stream), the way curl or the JS
client would. Phase 1 runs every client against a queue large enough for all of them: every answer must arrive and
be exact. Phase 2 caps the queue (QUEUE_MAX_SIZE) below the number of clients: the extra callers must get a clear
"queue is full" error at once, not hang. Everything is bounded in count and time. The last lines are the counts
(lost / wrong / errored / busy) and the p50/p99 latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.apps import PER_ADDRESS_LIMITS_OFF  # noqa: E402
from tests.support.fake_openai import free_port  # noqa: E402

CALL_TIMEOUT = 60.0  # seconds: a call that takes longer counts as lost


@dataclass
class Tally:
    ok: int = 0
    wrong: int = 0
    errored: int = 0
    busy: int = 0
    lost: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def start(cmd: list[str], env: dict[str, str], url: str, *, timeout: float = 60) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{cmd} did not start")


async def call(http: httpx.AsyncClient, api: str, data: list[object]) -> tuple[str, object]:
    """('complete', value) or ('error', message) for one call through Gradio's HTTP API."""
    posted = await http.post(f"/gradio_api/call/{api}", json={"data": data})
    if posted.status_code != 200:
        return "error", posted.text
    event, payload = "", ""
    async with http.stream("GET", f"/gradio_api/call/{api}/{posted.json()['event_id']}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                payload = line.removeprefix("data:").strip()
            if event in ("complete", "error") and payload:
                break
    value = json.loads(payload) if payload else None
    if event == "complete":
        return "complete", value[0] if isinstance(value, list) else value
    return "error", (value or {}).get("error") if isinstance(value, dict) else value


async def client(http: httpx.AsyncClient, i: int, expected_reply: str, tally: Tally) -> None:
    started = time.monotonic()

    async def both() -> tuple[tuple[str, object], tuple[str, object]]:
        return await call(http, "chat", [f"client {i}", "Be brief.", 0.0, 64]), await call(
            http, "reverse", [f"client {i}"]
        )

    try:
        chat, tool = await asyncio.wait_for(both(), CALL_TIMEOUT)
    except asyncio.TimeoutError:
        tally.lost += 1
        return
    except httpx.HTTPError as error:
        tally.errored += 1
        tally.errors.append(f"{type(error).__name__}: {error}")
        return
    for (kind, value), expected in ((chat, expected_reply), (tool, f"client {i}"[::-1])):
        if kind == "error":
            if value and "queue is full" in str(value).lower():
                tally.busy += 1
            else:
                tally.errored += 1
                tally.errors.append(str(value))
            return
        if value != expected:
            tally.wrong += 1
            return
    tally.ok += 1
    tally.latencies.append(time.monotonic() - started)


async def run_clients(url: str, clients: int, expected_reply: str) -> Tally:
    tally = Tally()
    # Idle connections are dropped after 1 s, well before uvicorn closes them (5 s): reusing one the server is
    # closing fails with a ReadError (a browser would retry it), which showed up as 1-2 "errored" in some runs.
    limits = httpx.Limits(
        max_connections=clients * 2 + 10, max_keepalive_connections=clients * 2 + 10, keepalive_expiry=1
    )
    async with httpx.AsyncClient(base_url=url, timeout=CALL_TIMEOUT, limits=limits) as http:
        await asyncio.gather(*(client(http, i, expected_reply, tally) for i in range(clients)))
    return tally


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def phase(name: str, fake_url: str, clients: int, expected_reply: str, **app_env: str) -> Tally:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "HF_TOKEN", "APP_AUTH")}
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        OPENAI_BASE_URL=fake_url,
        LLM_MODEL="fake-model",
        RATE_LIMIT_PER_SESSION="none",
        RATE_LIMIT_PER_IP="none",
        # Every bench client comes from 127.0.0.1, one address.
        **PER_ADDRESS_LIMITS_OFF,
        **app_env,
    )
    url = f"http://127.0.0.1:{port}/"
    app = start([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], env, url)
    try:
        started = time.monotonic()
        tally = asyncio.run(run_clients(url, clients, expected_reply))
        wall = time.monotonic() - started
    finally:
        app.terminate()
        app.wait(10)
    print(
        f"{name}: {clients} clients in {wall:.1f} s | ok {tally.ok} | busy {tally.busy} | lost {tally.lost} | "
        f"wrong {tally.wrong} | errored {tally.errored}"
    )
    for message in sorted(set(tally.errors))[:5]:
        print(f"    error: {message[:200]}")
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=20, help="tokens in each reply")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between two tokens")
    parser.add_argument("--queue-size", type=int, default=50, help="QUEUE_MAX_SIZE in the shedding phase")
    args = parser.parse_args()

    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}/v1"
    fake = start(
        [sys.executable, "-m", "tests.support.fake_openai", "--port", str(fake_port), "--tokens", str(args.tokens),
         "--delay", str(args.delay)],
        dict(os.environ),
        fake_url + "/models",
    )  # fmt: skip
    expected = "".join(f"t{i} " for i in range(args.tokens))
    try:
        full = phase("all admitted", fake_url, args.clients, expected, QUEUE_MAX_SIZE="none")
        shed = phase(
            f"queue capped at {args.queue_size}",
            fake_url,
            args.clients,
            expected,
            QUEUE_MAX_SIZE=str(args.queue_size),
            CHAT_CONCURRENCY="10",
        )
    finally:
        fake.terminate()
        fake.wait(10)
    # Shedding is right only if the extra callers were told so: nothing lost, wrong or unexplained.
    shed_ok = shed.busy > 0 and shed.lost == 0 and shed.wrong == 0 and shed.errored == 0
    print(f"shedding: {shed.busy} callers told 'queue is full', {shed.ok} served -> {'OK' if shed_ok else 'FAIL'}")
    print(
        f"RESULT {args.clients} clients: lost {full.lost} wrong {full.wrong} errored {full.errored} | "
        f"p50 {percentile(full.latencies, 50) * 1000:.0f} ms p99 {percentile(full.latencies, 99) * 1000:.0f} ms"
    )
    return 0 if full.lost == full.wrong == full.errored == 0 and full.ok == args.clients and shed_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
