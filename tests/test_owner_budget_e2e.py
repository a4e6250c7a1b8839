"""The owner's bill (issue #23) through the launched app: OWNER_DAILY_TOKENS and DAILY_TOKENS_PER_IP hold for every
client (the page's events, gradio_client, MCP), say why they refuse and what to do, and leave signed-in visitors
alone; the log tells the owner who paid.

The apps run as on a Space with `hf_oauth: true` (sign-in offered, the owner's HF_TOKEN and the visitors' tokens
both going to a stand-in router, which sends usage). Callers are told apart as a Space tells them: one trusted
proxy, each caller's address in X-Forwarded-For; MCP agents by the address their socket is bound to.
The model server writes replies of `REPLY_TOKENS` tokens, and counts a prompt's tokens as its words plus 4 a
message (`tests.support.fake_openai.prompt_tokens`), fewer than the app's estimate from characters.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.apps import RunningApp, running_app
from tests.support.fake_openai import Behaviour, FakeOpenAI, free_port, prompt_tokens

pytestmark = pytest.mark.e2e

OWNER_TOKEN = "hf_owner_token_of_the_space_0123"
VISITOR_TOKEN = "hf_visitor_token_abcdef_987654"
REPLY_TOKENS = 100
PER_ADDRESS = 300
SIGN_IN = "Sign in with Hugging Face to chat on your own account."
RESETS = r"it resets at midnight UTC, in (\d+ h )?\d+ min\."


def on_a_space(router: FakeOpenAI, **env: str) -> dict[str, str]:
    """The variables of a Space with `hf_oauth: true` whose owner's HF_TOKEN chats through `router` (a stand-in
    for Hugging Face's), as are signed-in visitors; the per-message rate limits off (the budgets are tested)."""
    return {
        "SPACE_ID": "someone/space-chat",
        "SYSTEM": "spaces",
        "SPACE_HOST": "someone-space-chat.hf.space",
        "OAUTH_CLIENT_ID": "client-id",
        "OAUTH_CLIENT_SECRET": "client-secret-of-the-space-oauth-app",
        "OAUTH_SCOPES": "openid profile inference-api",
        "OPENID_PROVIDER_URL": f"http://127.0.0.1:{free_port()}",
        "HF_TOKEN": OWNER_TOKEN,
        "HF_ROUTER_URL": router.base_url,
        "HF_ROUTER_MODELS": "fake-model",
        "LLM_MAX_RETRIES": "0",
        "RATE_LIMIT_PER_IP": "none",
        "RATE_LIMIT_PER_SESSION": "none",
        **env,
    }


def client(app: RunningApp, *, address: str | None = None, token: str | None = None) -> Client:
    """gradio_client from `address` (what a Space's proxy appends to X-Forwarded-For), or as a signed-in visitor."""
    headers = {"X-Forwarded-For": address} if address else None
    return Client(app.url, verbose=False, headers=headers, oauth_token=token)


def chat(app: RunningApp, message: str, *, address: str | None = None, token: str | None = None) -> str:
    """One /chat call, in a session of its own: the answer, or `AppError` with the app's sentence."""
    return str(client(app, address=address, token=token).predict(message, api_name="/chat"))


def refusal(app: RunningApp, message: str, *, address: str) -> str:
    with pytest.raises(AppError) as refused:
        chat(app, message, address=address)
    return str(refused.value)


def exhaust(app: RunningApp, router: FakeOpenAI, address: str) -> tuple[int, str]:
    """Chats from `address` until one is refused: how many were answered (each reached the server), and the
    sentence of the refusal, which reached nothing."""
    caller = client(app, address=address)
    for answered in range(10):
        sent = len(router.requests)
        caller.reset_session()  # each chat a conversation of its own: prompts of one size
        try:
            caller.predict(f"question {answered}", api_name="/chat")
        except AppError as refused:
            assert len(router.requests) == sent, "a refused chat reached the model server"
            return answered, str(refused)
        assert len(router.requests) == sent + 1
    raise AssertionError(f"{address} was never refused")


def resets_in_minutes(sentence: str) -> int:
    found = re.search(r"in (?:(\d+) h )?(\d+) min\.", sentence)
    assert found, sentence
    return int(found.group(1) or 0) * 60 + int(found.group(2))


def minutes_to_midnight_utc() -> float:
    now = datetime.datetime.now(datetime.UTC)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds() / 60


def spent(requests: list[dict[str, Any]]) -> int:
    """The tokens the server counted for these requests: their prompts, and the replies it wrote."""
    return sum(prompt_tokens(body) + min(REPLY_TOKENS, int(body["max_tokens"])) for body in requests)


@pytest.fixture(scope="module")
def router() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(tokens=REPLY_TOKENS)) as server:
        yield server


@pytest.fixture
def model(router: FakeOpenAI) -> FakeOpenAI:
    router.reset()
    return router


@pytest.fixture(scope="module")
def space(router: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """A Space behind one proxy whose every address may spend PER_ADDRESS tokens a day; the owner's budget is
    far away. Each test below chats from addresses of its own."""
    env = on_a_space(router, TRUSTED_PROXIES="1", DAILY_TOKENS_PER_IP=str(PER_ADDRESS), OWNER_DAILY_TOKENS="1000000")
    with running_app(tmp_path_factory.mktemp("space"), **env) as running:
        yield running


class TestPerAddress:
    def test_an_address_stops_at_its_budget_and_is_told_why_and_what_to_do(self, space, model):
        """Replies of 100 tokens: the third gets what is left, and the fourth is refused before any request,
        with one sentence that names DAILY_TOKENS_PER_IP, says when it resets and that signing in goes on."""
        answered, sentence = exhaust(space, model, "203.0.113.10")
        assert answered == 3
        assert spent(model.requests) <= PER_ADDRESS
        assert model.requests[-1]["max_tokens"] < REPLY_TOKENS  # the last reply got what was left
        left = PER_ADDRESS - spent(model.requests)
        assert re.fullmatch(
            rf"This message needs about \d+ tokens, more than what your address has left today \({left}\) "
            rf"\(DAILY_TOKENS_PER_IP\): {RESETS} {re.escape(SIGN_IN)}",
            sentence,
        ), sentence
        assert abs(resets_in_minutes(sentence) - minutes_to_midnight_utc()) <= 1

    def test_another_address_still_chats(self, space, model):
        exhaust(space, model, "203.0.113.20")
        before = len(model.requests)
        assert chat(space, "my own question", address="203.0.113.21").startswith("t0 t1 ")
        assert len(model.requests) == before + 1

    def test_two_addresses_of_one_ipv6_64_share_a_budget(self, space, model):
        """An IPv6 subscriber holds a whole /64: a second address in it finds the budget spent; the next /64's
        budget is whole."""
        exhaust(space, model, "2001:db8:1:2::1")
        before = len(model.requests)
        assert "(DAILY_TOKENS_PER_IP)" in refusal(space, "from my other address", address="2001:db8:1:2:ffff::9")
        assert len(model.requests) == before
        assert chat(space, "from the next /64", address="2001:db8:1:3::1").startswith("t0 ")
        assert len(model.requests) == before + 1

    def test_an_oversized_prompt_is_refused_before_any_request(self, space, model):
        """A message whose prompt alone is more than the address's whole day is refused before it is sent; it
        costs nothing, so the same address then chats."""
        long = "word " * 400  # 2,000 characters: about 500 tokens
        sentence = refusal(space, long, address="203.0.113.30")
        assert re.fullmatch(
            rf"This message needs about (\d+) tokens, more than what your address has left today \({PER_ADDRESS}\) "
            rf"\(DAILY_TOKENS_PER_IP\): {RESETS} {re.escape(SIGN_IN)}",
            sentence,
        ), sentence
        assert model.requests == []
        assert chat(space, "a short one", address="203.0.113.30").startswith("t0 ")


def page_events(url: str) -> tuple[int, int, list[int], dict[int, str | None], dict[str, Any]]:
    """The page's load event and its message box's submit, as its config names them: their fn_index, the submit's
    inputs (component ids), every component's label, and the page's values by label."""
    config = httpx.get(url + "config", timeout=10).json()
    labels = {c["id"]: c.get("props", {}).get("label") for c in config["components"]}
    values = {c.get("props", {}).get("label"): c.get("props", {}).get("value") for c in config["components"]}
    box = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "message")
    dependencies = config["dependencies"]
    load = next(d["id"] for d in dependencies if any(event == "load" for _, event in d["targets"]))
    submit = next(d for d in dependencies if [box, "submit"] in d["targets"])
    return load, submit["id"], submit["inputs"], labels, values


def page_event(url: str, fn_index: int, data: list[Any], *, address: str, session: str) -> dict[str, Any]:
    """One page event through Gradio's queue, as the page sends it, from `address`: its completion message."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    with httpx.Client(base_url=url, timeout=30, headers={"X-Forwarded-For": address}) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    return dict(json.loads(line[5:]))
    raise AssertionError("the event never completed")


def value_of(output: Any) -> Any:
    """A component's value in an event's output: plain, or inside an update."""
    return output.get("value") if isinstance(output, dict) and output.get("__type__") == "update" else output


class TestPage:
    def test_the_status_line_says_what_is_left_once_low_and_a_refused_chat_says_why(self, space, model):
        """The page from one address: its status line says nothing of the budget while much is left; once less
        than a fifth is, it says how many tokens (after the reply that spent them, and on the next page load);
        the chat past it is refused with the budget's sentence, and nothing reaches the model."""
        address = "198.51.100.7"
        load, submit, inputs, labels, values = page_events(space.url)

        def send(text: str) -> dict[str, Any]:
            """A message sent from a new tab: a conversation of its own, so that every prompt is of one size."""
            by_label = {**values, "Message": {"text": text, "files": []}}
            data = [by_label[labels[component]] for component in inputs]
            return page_event(space.url, submit, data, address=address, session=uuid.uuid4().hex)

        def status_on_load() -> str:
            loaded = page_event(space.url, load, [None], address=address, session=uuid.uuid4().hex)
            assert loaded["success"] is True
            return str(value_of(loaded["output"]["data"][0]))

        assert "free budget" not in status_on_load()
        statuses = []
        for text in ("one", "two", "three"):
            replied = send(text)
            assert replied["success"] is True, replied
            statuses.append(str(value_of(replied["output"]["data"][2])))
        left = PER_ADDRESS - spent(model.requests)
        assert 0 < left < PER_ADDRESS / 5
        low = f"**About {left:,} tokens of today's free budget are left** (it resets at midnight UTC, in about "
        assert "free budget" not in statuses[1]
        assert low in statuses[2], statuses[2]
        assert low in status_on_load()
        assert statuses[2].endswith(SIGN_IN)

        refused = send("four")
        assert refused["success"] is False
        assert re.fullmatch(
            rf"This message needs about \d+ tokens, more than what your address has left today \({left}\) "
            rf"\(DAILY_TOKENS_PER_IP\): {RESETS} {re.escape(SIGN_IN)}",
            refused["output"]["error"],
        ), refused["output"]
        assert len(model.requests) == 3


OWNER_DAILY = 300


@pytest.fixture(scope="module")
def owner_spent(router: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """A Space whose owner lets the public spend OWNER_DAILY tokens a day, all addresses together."""
    env = on_a_space(router, TRUSTED_PROXIES="1", OWNER_DAILY_TOKENS=str(OWNER_DAILY), DAILY_TOKENS_PER_IP="none")
    with running_app(tmp_path_factory.mktemp("owner"), **env) as running:
        yield running


class TestOwnersBudget:
    def test_it_stops_every_anonymous_caller_and_a_signed_in_visitor_still_chats(self, owner_spent, model):
        """Three addresses spend the owner's day between them; then every anonymous caller, those three and a
        newcomer, is refused before any request and told to sign in. A signed-in visitor still chats, on their
        own token and with their whole max_tokens, and is not counted: the anonymous refusal is unchanged."""
        for address in ("192.0.2.1", "192.0.2.2"):
            assert chat(owner_spent, "hello", address=address).startswith("t0 ")
        assert [r["_headers"]["authorization"] for r in model.requests] == [f"Bearer {OWNER_TOKEN}"] * 2
        answered, sentence = exhaust(owner_spent, model, "192.0.2.3")
        assert answered == 1
        left = OWNER_DAILY - spent(model.requests)
        assert 0 <= left < 30
        expected = (
            rf"This message needs about \d+ tokens, more than what is left of this Space's free budget today "
            rf"\({left}\) \(OWNER_DAILY_TOKENS\): {RESETS} {re.escape(SIGN_IN)}"
        )
        assert re.fullmatch(expected, sentence), sentence
        sent = len(model.requests)
        for address in ("192.0.2.1", "192.0.2.2", "2001:db8:9::1"):
            assert re.fullmatch(expected, refusal(owner_spent, "hello", address=address))
        assert len(model.requests) == sent

        assert chat(owner_spent, "as a visitor", address="192.0.2.1", token=VISITOR_TOKEN).startswith("t0 ")
        visitor = model.requests[-1]
        assert visitor["_headers"]["authorization"] == f"Bearer {VISITOR_TOKEN}"
        assert visitor["max_tokens"] == 512  # the owner's leftovers do not cut a visitor's reply
        assert re.fullmatch(expected, refusal(owner_spent, "hello", address="192.0.2.4"))


async def ask_from(app: RunningApp, address: str, message: str) -> str:
    """One `ask` tool call by the official MCP client, its socket bound to `address`: the answer or the error.
    On a Space, Gradio names the tools after it (`space_chat_ask`)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with (
        httpx.AsyncClient(transport=transport, timeout=30) as http,
        streamable_http_client(app.url + "gradio_api/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        ask = next(tool.name for tool in (await session.list_tools()).tools if tool.name.endswith("ask"))
        answer = await asyncio.wait_for(session.call_tool(ask, {"message": message}), 30)
    return "".join(getattr(part, "text", "") for part in answer.content)


@pytest.fixture(scope="module")
def unproxied(router: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """No proxy (callers are their sockets' addresses, MCP agents on 127.0.0.2 and 127.0.0.3), PER_ADDRESS
    tokens an address, and a line of usage in the log every second."""
    env = on_a_space(
        router,
        TRUSTED_PROXIES="0",
        DAILY_TOKENS_PER_IP=str(PER_ADDRESS),
        OWNER_DAILY_TOKENS="1000000",
        USAGE_LOG_SECONDS="1",
    )
    with running_app(tmp_path_factory.mktemp("mcp"), **env) as running:
        yield running


class TestMcp:
    def test_each_agent_is_counted_by_its_own_address(self, unproxied, model):
        """Gradio's MCP server runs `ask` through its own loopback client, yet each agent's tokens count against
        its own address: one agent spending its day leaves another's answered."""
        answers = [asyncio.run(ask_from(unproxied, "127.0.0.2", f"question {i}")) for i in range(4)]
        assert [answer.startswith("t0 ") for answer in answers] == [True, True, True, False]
        assert "your address has left today" in answers[3] or "Your address has used up" in answers[3]
        assert "(DAILY_TOKENS_PER_IP)" in answers[3]
        assert len(model.requests) == 3
        assert asyncio.run(ask_from(unproxied, "127.0.0.3", "my own question")).startswith("t0 ")
        assert len(model.requests) == 4


LINE = re.compile(
    r"Tokens since (?P<since>\S+ \S+) UTC by who paid: (?P<paid>.+?); refused for the daily budgets: "
    r"(?P<refused>\d+); the public's spend on the owner's account today: (?P<today>[\d,]+) of 1,000,000\."
)


def usage_lines(log: str) -> list[re.Match[str]]:
    return list(LINE.finditer(log))


def wait_for_line(app: RunningApp, after: int, timeout: float = 10) -> list[re.Match[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(lines := usage_lines(app.log())) > after:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no line of usage in the log:\n{app.log()[-3000:]}")


def paid(lines: list[re.Match[str]]) -> dict[str, int]:
    """Tokens by who paid, added up over `lines`."""
    total: dict[str, int] = {}
    for line in lines:
        if line["paid"] != "none":
            for entry in line["paid"].split(", "):
                payer, tokens = entry.rsplit(" ", 1)
                total[payer] = total.get(payer, 0) + int(tokens.replace(",", ""))
    return total


class TestLog:
    def test_the_line_says_who_paid_and_what_was_refused(self, unproxied, model):
        """USAGE_LOG_SECONDS=1: after a line, an anonymous chat (the owner pays), a signed-in visitor's (the
        visitor pays) and a prompt too large for the address; a second later, a refusal writes the next line.
        The lines since say exactly those tokens, as the server counted them, and both refusals."""
        oversized = "word " * 400
        time.sleep(1.1)
        with pytest.raises(AppError):
            chat(unproxied, oversized)  # a refusal past the period: writes the line of what came before
        before = len(wait_for_line(unproxied, after=0))
        day = datetime.datetime.now(datetime.UTC).date()

        chat(unproxied, "on the owner")
        chat(unproxied, "on my own account", token=VISITOR_TOKEN)
        with pytest.raises(AppError):
            chat(unproxied, oversized)
        time.sleep(1.1)
        with pytest.raises(AppError):
            chat(unproxied, oversized)
        lines = wait_for_line(unproxied, after=before)

        owner, visitor = model.requests
        assert visitor["_headers"]["authorization"] == f"Bearer {VISITOR_TOKEN}"
        assert paid(lines[before:]) == {"owner": spent([owner]), "visitor": spent([visitor])}
        assert sum(int(line["refused"]) for line in lines[before:]) == 2
        if datetime.datetime.now(datetime.UTC).date() == day:  # the day's spend is every line's owner so far
            assert int(lines[-1]["today"].replace(",", "")) == paid(lines).get("owner", 0)
