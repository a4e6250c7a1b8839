"""The attacks at once, while a visitor uses the Space: it stays responsive, bounded in memory, and nothing leaks.

Attackers send 6.5 MB bodies, oversized histories, big uploads and chats whose model server answers with errors
quoting the key, start calls whose results they never read, flood fresh session hashes and call from another
site; meanwhile a visitor calls /greet every 100 ms and a page in Chromium opens a deep link and chats. Everything
goes through a recording proxy, whose bytes are scanned for the secrets afterwards. (All callers share 127.0.0.1
here, so the per-address limits are off: what holds is the bounds behind them.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.apps import start_app, stop_app
from tests.support.browser import chromium
from tests.support.fake_openai import Behaviour, FakeOpenAI, Fault
from tests.support.latency import assert_kept_answering
from tests.support.recording_proxy import RecordingProxy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

KEY = "sk-abuse-canary-Qw3rTy7uIo"
ATTACK_SECONDS = 8.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def repeat(until: float, action: Callable[[httpx.Client], object], url: str) -> threading.Thread:
    def run() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < until:
                with contextlib.suppress(httpx.HTTPError):  # an attacker's connection refused or cut is the point
                    action(http)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def greet_until(until: float, url: str, latencies: list[float], greetings: list[str]) -> None:
    """The visitor's probe, in its own thread so that it covers the whole attack, the page's load included."""
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            event = http.post("gradio_api/call/greet", json={"data": ["Ada"]}).json()["event_id"]
            greetings.append(http.get(f"gradio_api/call/greet/{event}").text)
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)


def test_the_space_holds_while_attacked(tmp_path: Path):
    """/greet keeps answering (nine in ten within 1 s, none past 3 s), the process grows by under 100 MB, no form
    of the key is in any byte sent back or logged, and no script runs in the visitor's page."""
    hostile_reply = 'Here ![x](http://127.0.0.1:9/leak.png) <img src=x onerror="window.__pwned=1"> done'
    with FakeOpenAI(Behaviour(reply=hostile_reply, delay=0.002)) as server:
        for _ in range(2000):
            server.behaviour.faults.append(Fault(error_after=1, message=f"upstream: Authorization: Bearer {KEY}"))
        app = start_app(
            tmp_path,
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=KEY,
            LLM_MODEL="fake-model",
            LLM_MAX_RETRIES="0",
            RATE_LIMIT_PER_IP="none",
            RATE_LIMIT_PER_SESSION="none",
        )
        try:
            with RecordingProxy(app.url) as proxy:
                httpx.get(proxy.url + "gradio_api/info", timeout=10)
                before = rss_mb(app.process.pid)
                until = time.monotonic() + ATTACK_SECONDS
                huge = json.dumps({"data": ["x" * 6_500_000], "fn_index": 0, "session_hash": "a"}).encode()
                history = json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2500)
                attacks = [
                    repeat(until, lambda h: h.post("gradio_api/queue/join", content=huge), proxy.url),
                    repeat(until, lambda h: h.post("gradio_api/call/ask", json={"data": ["hi", history]}), proxy.url),
                    repeat(
                        until,
                        lambda h: h.post("gradio_api/upload", files={"files": ("a.json", b"x" * 3_000_000)}),
                        proxy.url,
                    ),
                    *(repeat(until, lambda h: h.get(f"gradio_api/call/chat/{_chat(h)}"), proxy.url) for _ in range(3)),
                    # Results never read (issue #19, row 6), fresh sessions (row 5), another site's calls (row 3).
                    repeat(
                        until, lambda h: h.post("gradio_api/call/reverse", json={"data": ["x" * 100_000]}), proxy.url
                    ),
                    repeat(until, _fresh_session, proxy.url),
                    repeat(until, _from_another_site, proxy.url),
                ]
                latencies: list[float] = []
                greetings: list[str] = []
                visitor = threading.Thread(target=greet_until, args=(until, proxy.url, latencies, greetings))
                visitor.start()
                with chromium() as browser:
                    page = browser.new_context().new_page()
                    page.goto(proxy.url + "?deep_link=attacker")
                    page.locator("#message textarea").wait_for(timeout=30_000)
                    visitor.join()
                    page.locator("#message textarea").fill("hello")
                    page.locator("#message textarea").press("Enter")
                    page.wait_for_timeout(3000)
                    pwned = page.evaluate("() => window.__pwned")
                for attack in attacks:
                    attack.join(timeout=30)
                after = rss_mb(app.process.pid)
                received = proxy.received
        finally:
            stop_app(app)
    assert len(latencies) >= ATTACK_SECONDS / 3, f"only {len(latencies)} greetings in {ATTACK_SECONDS} s"
    assert all("Hello, Ada!" in text for text in greetings)
    assert_kept_answering(latencies, f"{ATTACK_SECONDS:g} s of attacks (/greet)")
    assert after - before < 100, f"the process grew from {before:.0f} to {after:.0f} MB"
    assert pwned is None
    basic = base64.b64encode(f"user:{KEY}".encode())
    for form in (KEY.encode(), KEY.upper().encode(), basic[8:-4]):
        assert form not in received
        assert form.decode() not in app.log()
    assert b"reported an error: upstream: Authorization: Bearer ***" in received  # the attack did run


def _fresh_session(http: httpx.Client) -> None:
    http.post("gradio_api/call/increment", json={"data": [], "session_hash": uuid.uuid4().hex})


def _from_another_site(http: httpx.Client) -> None:
    foreign = {"Origin": "https://evil.test", "Cookie": "access-token-x=stolen"}
    http.get("gradio_api/token", headers=foreign)
    http.post("gradio_api/call/greet", json={"data": ["evil"]}, headers=foreign)


def _chat(http: httpx.Client) -> str:
    return str(http.post("gradio_api/call/chat", json={"data": ["hi"]}).json()["event_id"])
