"""The second round's attacks on the edge (security issue #19, rows 3, 4, 5, 6, 9, 10), over real HTTP against the
launched app. Row 3 in Chromium, over TLS with two host names: tests/test_browser_cross_origin.py.

Callers are told apart as a Space tells them: one trusted proxy (`TRUSTED_PROXIES=1`), each caller's address in
the X-Forwarded-For line the proxy appends. The per-address limits run at their defaults here.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.apps import PER_ADDRESS_LIMITS_OFF, RunningApp, fake_backed, running_app
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.latency import assert_kept_answering

pytestmark = pytest.mark.e2e

DEFAULT_LIMITS = dict.fromkeys(PER_ADDRESS_LIMITS_OFF, "<unset>")
PASSWORD = "correct-horse-battery-staple"


def caller(address: str) -> dict[str, str]:
    """The headers a Space's proxy adds for a caller at `address`."""
    return {"X-Forwarded-For": address}


def page_event(url: str, elem_id: str, event: str) -> int:
    config = httpx.get(url + "config", timeout=10).json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d["id"] for d in config["dependencies"] if [component, event] in d["targets"])


def queue_event(url: str, fn_index: int, data: list[Any], *, session: str, address: str) -> dict[str, Any]:
    """One page event through Gradio's queue, as the page sends it, from `address`: its completion message."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    with httpx.Client(base_url=url, timeout=30, headers=caller(address)) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    return dict(json.loads(line[5:]))
    raise AssertionError("the event never completed")


def call(url: str, name: str, data: list[Any], *, address: str, session: str | None = None) -> httpx.Response:
    """POST /gradio_api/call/<name> from `address` (the answer of the POST: an event id, or a refusal)."""
    body: dict[str, Any] = {"data": data}
    if session is not None:
        body["session_hash"] = session
    return httpx.post(f"{url}gradio_api/call/{name}", json=body, headers=caller(address), timeout=30)


def result(url: str, name: str, data: list[Any], *, address: str, session: str | None = None) -> str:
    """The stream of one /call, read to its end."""
    answer = call(url, name, data, address=address, session=session)
    answer.raise_for_status()
    return httpx.get(f"{url}gradio_api/call/{name}/{answer.json()['event_id']}", timeout=30).text


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.002)) as server:
        yield server


@pytest.fixture
def upstream(model: FakeOpenAI) -> FakeOpenAI:
    model.reset()
    return model


@pytest.fixture(scope="module")
def space(model: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app as a Space runs it (one proxy), the per-address limits at their defaults, and room for 50 sessions
    (so that a flood that could evict would)."""
    env = fake_backed(
        model,
        TRUSTED_PROXIES="1",
        SESSION_CAPACITY="50",
        RATE_LIMIT_PER_IP="none",
        RATE_LIMIT_PER_SESSION="none",
        **DEFAULT_LIMITS,
    )
    with running_app(tmp_path_factory.mktemp("space"), **env) as app:
        yield app


class TestRow4GuessedSessions:
    def test_a_chosen_hash_is_refused(self, space):
        """README's former example, `my-session-1`: a 422 that says why, and the model is never called."""
        refused = call(space.url, "chat", ["hello"], address="198.51.100.1", session="my-session-1")
        assert refused.status_code == 422
        assert "looks chosen, not random" in refused.json()["detail"]

    def test_a_stranger_with_the_hash_reads_adds_stops_nothing(self, space, upstream):
        """A visitor's hash, sent by a stranger from another address, names another session: the stranger's
        export finds nothing (and makes no session), its Stop stops nothing, its chat starts empty; the visitor's
        conversation is untouched."""
        session = str(uuid.uuid4())
        visitor, stranger = "198.51.100.2", "203.0.113.66"
        assert 'data: ["You said: my name is Ada"]' in result(
            space.url, "chat", ["my name is Ada"], address=visitor, session=session
        )
        export = page_event(space.url, "export-md", "click")
        stop = page_event(space.url, "message", "stop")
        exported = queue_event(space.url, export, [], session=session, address=stranger)
        assert exported["success"] is False
        assert "nothing to export" in json.dumps(exported["output"])
        assert queue_event(space.url, stop, [], session=session, address=stranger)["success"] is True
        result(space.url, "chat", ["what did they say?"], address=stranger, session=session)
        assert upstream.requests[-1]["messages"][1:] == [{"role": "user", "content": "what did they say?"}]
        mine = queue_event(space.url, export, [], session=session, address=visitor)
        content = mine["output"]["data"][0]["content"]
        assert "my name is Ada" in content
        assert "what did they say" not in content
        result(space.url, "chat", ["and now?"], address=visitor, session=session)
        assert [m["content"] for m in upstream.requests[-1]["messages"][1:]] == [
            "my name is Ada",
            "You said: my name is Ada",
            "and now?",
        ]


class TestRow5SessionFlood:
    def test_a_flood_of_fresh_hashes_gets_429_and_evicts_nobody(self, space, upstream):
        """1,001 session-making calls from one address in a few seconds (room for 50 sessions), every other one with
        a fresh hash: past the first 30 hashes, 429; and a visitor's conversation, from another address, is still
        whole afterwards. The calls without a hash (each its own session, for one call) evict nobody either."""
        session = str(uuid.uuid4())
        result(space.url, "chat", ["remember me"], address="198.51.100.3", session=session)
        statuses: list[int] = []
        started = time.monotonic()
        with httpx.Client(base_url=space.url, timeout=30, headers=caller("203.0.113.77")) as http:
            for i in range(1001):
                body: dict[str, Any] = {"data": []}
                if i % 2 == 0:
                    body["session_hash"] = uuid.uuid4().hex
                statuses.append(http.post("gradio_api/call/increment", json=body).status_code)
        elapsed = time.monotonic() - started
        hashed, hashless = statuses[0::2], statuses[1::2]
        assert hashed.count(200) <= 30 + elapsed / 2  # 30 at once, then one every 2 s
        assert set(statuses) == {200, 429}
        # Without a hash each call is a session for that call only: far more than the 50 kept went through (the
        # rest met API_REQUESTS_PER_MINUTE), and none stayed to push anyone out.
        assert hashless.count(200) > 100
        result(space.url, "chat", ["still there?"], address="198.51.100.3", session=session)
        assert upstream.requests[-1]["messages"][1]["content"] == "remember me", f"flood took {elapsed:.1f} s"

    def test_the_limit_says_why(self, space):
        address = "203.0.113.78"
        answers = [call(space.url, "increment", [], address=address, session=uuid.uuid4().hex) for _ in range(31)]
        refused = answers[-1]
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith("Too many new sessions from this address: at most 30 a minute.")
        assert int(refused.headers["Retry-After"]) >= 1


class TestRow3AnotherSiteOverHttp:
    """What Chromium does in tests/test_browser_cross_origin.py, seen from HTTP: the headers and the cookies."""

    def test_the_public_api_is_readable_from_another_site_without_credentials(self, space):
        headers = {"Origin": "https://evil.test", "Host": "space.test"}
        answer = httpx.post(space.url + "gradio_api/call/greet", json={"data": ["Ada"]}, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://evil.test"
        assert "access-control-allow-credentials" not in answer.headers
        preflight = httpx.options(
            space.url + "gradio_api/call/greet",
            headers={
                **headers,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert "access-control-allow-credentials" not in preflight.headers

    def test_app_auth_cookies_do_not_reach_the_app_from_another_site(self, model, tmp_path):
        """Behind APP_AUTH, a logged-in visitor's cookie sent by another site's request is not the visitor's:
        the token route refuses it, and the API answers 401 as to anyone without a login."""
        env = fake_backed(model, APP_AUTH=f"ada:{PASSWORD}")
        with running_app(tmp_path, **env) as app, httpx.Client(base_url=app.url, timeout=10) as http:
            assert http.post("login", data={"username": "ada", "password": PASSWORD}).status_code == 200
            # Over plain HTTP only the cookie without `Secure` is sent: the token route reads the other one
            # (tests/test_browser_cross_origin.py reads it over TLS); the user route reads both.
            assert http.get("gradio_api/user").json() == "ada"
            foreign = {"Origin": "https://evil.test", "Host": "space.test"}
            for route in ("gradio_api/token", "gradio_api/user"):
                refused = http.get(route, headers=foreign)
                assert refused.status_code == 403
                assert "ada" not in refused.text
            assert http.post("gradio_api/call/greet", json={"data": ["Ada"]}, headers=foreign).status_code == 401
            assert http.post("gradio_api/call/greet", json={"data": ["Ada"]}).status_code == 200


class TestRow10Framing:
    def test_the_page_says_where_it_may_be_framed_and_where_forms_may_post(self, space):
        policy = httpx.get(space.url).headers["content-security-policy"]
        assert "frame-ancestors 'self' https://huggingface.co" in policy
        assert "form-action 'self'" in policy
        assert "base-uri 'self'" in policy
        assert "object-src 'none'" in policy


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def folder_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1_048_576


class TestRow6Floods:
    def test_unread_results_and_uploads_stay_bounded_while_a_visitor_greets(self, model, tmp_path):
        """1,500 /call/reverse of 100 KB (astral characters: 4 bytes each in memory too) never read, and 200
        different uploads of 1 MB in about a second, from one address: the process grows by under 100 MB, the
        upload cache by under 50 MB, and a visitor at another address keeps getting /greet back (nine in ten in under
        1 s). (The issue's 3,000 calls: past the address's 600 a minute, the rest are refused alike, so half show
        it.)"""
        cache = tmp_path / "gradio-cache"
        env = fake_backed(model, TRUSTED_PROXIES="1", GRADIO_TEMP_DIR=str(cache), **DEFAULT_LIMITS)
        with running_app(tmp_path, **env) as app:
            result(app.url, "greet", ["warm"], address="198.51.100.9")
            before = rss_mb(app.process.pid)
            stop = threading.Event()
            latencies: list[float] = []
            samples: list[float] = []

            def visitor() -> None:
                with httpx.Client(base_url=app.url, timeout=10, headers=caller("198.51.100.9")) as http:
                    while not stop.is_set():
                        started = time.monotonic()
                        event = http.post("gradio_api/call/greet", json={"data": ["Ada"]}).json()["event_id"]
                        assert "Hello, Ada!" in http.get(f"gradio_api/call/greet/{event}").text
                        latencies.append(time.monotonic() - started)
                        samples.append(rss_mb(app.process.pid))
                        time.sleep(0.2)

            probe = threading.Thread(target=visitor)
            probe.start()
            body = json.dumps({"data": ["\U0001f600" * 25_000]}, ensure_ascii=False).encode()
            flood_statuses: list[int] = []
            reversed_in: list[float] = []

            async def flood() -> None:
                limits = httpx.Limits(max_connections=16)
                async with httpx.AsyncClient(base_url=app.url, timeout=60, limits=limits) as http:
                    headers = {**caller("203.0.113.99"), "content-type": "application/json"}

                    async def one(_: int) -> None:
                        answer = await http.post("gradio_api/call/reverse", content=body, headers=headers)
                        flood_statuses.append(answer.status_code)

                    reversing = time.monotonic()
                    await asyncio.gather(*(one(i) for i in range(1500)))
                    reversed_in.append(time.monotonic() - reversing)
                    upload_headers = caller("203.0.113.98")
                    # Each its own content: Gradio's cache keeps one copy of equal files.
                    files = [{"files": ("a.json", i.to_bytes(4, "big") + b"x" * 999_996)} for i in range(200)]
                    uploads = await asyncio.gather(
                        *(http.post("gradio_api/upload", files=f, headers=upload_headers) for f in files)
                    )
                    flood_statuses.extend(answer.status_code + 1000 for answer in uploads)

            started = time.monotonic()
            asyncio.run(flood())
            flooded = time.monotonic() - started
            time.sleep(2)  # the last results land, the upload cache is trimmed
            samples.append(rss_mb(app.process.pid))
            stop.set()
            probe.join()
            log = app.log()
        peak = max(samples)
        accepted = flood_statuses.count(200)
        uploaded = flood_statuses.count(1200)
        assert peak - before < 100, f"grew from {before:.0f} to {peak:.0f} MB ({accepted} calls accepted)"
        assert folder_mb(cache) < 50, f"{folder_mb(cache):.0f} MB cached ({uploaded} uploads accepted)"
        # API_REQUESTS_PER_MINUTE (600) is a bucket of 600 that refills at 10 a second, however slow the flood.
        assert accepted <= 600 + 10 * reversed_in[0] + 5, f"{accepted} calls accepted in {reversed_in[0]:.1f} s"
        assert flood_statuses.count(429) + accepted == 1500
        assert flood_statuses.count(1429) >= 150
        assert len(latencies) > 5
        assert_kept_answering(latencies, f"{flooded:.1f} s of flood (/greet)")
        assert "Traceback" not in log


class TestRow9McpCallersToldApart:
    def test_one_agents_flood_leaves_another_agents_calls_alone(self, model, tmp_path):
        """Off Spaces (no proxy), two MCP agents on two addresses (127.0.0.2 and 127.0.0.3): Gradio's MCP server
        calls the queue through its own loopback client, yet each agent's `ask` counts against its own address,
        so one agent using up RATE_LIMIT_PER_IP leaves the other's calls answered."""
        env = fake_backed(model, TRUSTED_PROXIES="0", RATE_LIMIT_PER_IP="3", RATE_LIMIT_PER_SESSION="none")
        with running_app(tmp_path, **env) as app:
            flooder = [asyncio.run(ask_from(app, "127.0.0.2", f"question {i}")) for i in range(5)]
            other = asyncio.run(ask_from(app, "127.0.0.3", "my own question"))
        assert flooder[:3] == ["You said: question 0", "You said: question 1", "You said: question 2"]
        assert all("Slow down" in answer for answer in flooder[3:])
        assert other == "You said: my own question"


async def ask_from(app: RunningApp, address: str, message: str) -> str:
    """One `ask` tool call by the official MCP client, its socket bound to `address`: the answer or the error."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with (
        httpx.AsyncClient(transport=transport, timeout=30) as http,
        streamable_http_client(app.url + "gradio_api/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        answer = await asyncio.wait_for(session.call_tool("ask", {"message": message}), 30)
    return "".join(getattr(part, "text", "") for part in answer.content)
