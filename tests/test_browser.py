"""The UI as a person sees it: headless Chromium (Debian's, never a downloaded one) driving the real app."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.apps import ROOT, RunningApp, fake_backed, running_app
from tests.support.browser import chromium
from tests.support.fake_openai import FakeOpenAI, Fault

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "artifacts" / "screenshots"
MARKDOWN_REPLY = "Here is **bold** text and code:\n```python\nprint(1)\n```\ndone"
MESSAGE_BOX = "#message textarea"  # its placeholder is cleared after the first message


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, app: RunningApp) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(app.url)
    page.locator(MESSAGE_BOX).wait_for()
    yield page
    context.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def bot_messages(page: Page) -> list[str]:
    return page.locator('[data-testid="bot"]').all_inner_texts()


def send(page: Page, text: str) -> None:
    box = page.locator(MESSAGE_BOX)
    box.fill(text)
    box.press("Enter")


def wait_for_reply(page: Page, expected: str, timeout: float = 10) -> None:
    expect(page.locator('[data-testid="bot"]').last).to_have_text(expected, timeout=timeout * 1000)
    # The stop button gives way to the send button once the stream is over.
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def luminance(css_colour: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


class TestChat:
    def test_reply_grows_and_renders_markdown(self, page, fake):
        """Enter sends; the reply is seen at two or more partial lengths, then as rendered Markdown."""
        fake.behaviour.reply = MARKDOWN_REPLY
        fake.behaviour.delay = 0.08
        send(page, "show me markdown")
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            texts = bot_messages(page)
            if texts and (not seen or texts[-1] != seen[-1]):
                seen.append(texts[-1])
            if texts and texts[-1].rstrip().endswith("done"):
                break
            time.sleep(0.03)
        partials = [t for t in seen if not t.rstrip().endswith("done")]
        assert len(set(partials)) >= 2, seen
        bot = page.locator('[data-testid="bot"]').last
        expect(bot.locator("strong")).to_have_text("bold")
        expect(bot.locator("pre code")).to_contain_text("print(1)")
        shoot(page, "chat-light")

    def test_stop_halts_the_stream(self, page, fake):
        """Stop ends the reply where it is, and the model server sees the request closed."""
        fake.behaviour.tokens = 400
        send(page, "a long one")
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("t3 ", timeout=10_000)
        page.get_by_role("button", name="Stop").click()
        deadline = time.monotonic() + 2
        while not fake.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.disconnects, "the model server kept streaming after Stop"
        # The stop is done once its button is gone; an update already on its way may land before that.
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        stopped_at = bot_messages(page)[-1]
        time.sleep(0.5)
        assert bot_messages(page)[-1] == stopped_at
        assert "t399" not in stopped_at
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        expect(page.locator(MESSAGE_BOX)).to_be_editable()

    def test_retry_undo_and_clear(self, page, fake):
        """Retry asks again, undo takes the last turn back, clear empties the chat and its history."""
        send(page, "first question")
        wait_for_reply(page, "You said: first question")
        requests_before = len(fake.requests)
        page.get_by_role("button", name="Retry").click()
        deadline = time.monotonic() + 10
        while len(fake.requests) == requests_before and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_for_reply(page, "You said: first question")
        assert len(fake.requests) == requests_before + 1
        assert fake.requests[-1]["messages"][-1] == {"role": "user", "content": "first question"}
        assert len(bot_messages(page)) == 1

        page.get_by_role("button", name="Undo").click()
        expect(page.locator('[data-testid="bot"]')).to_have_count(0)
        expect(page.locator(MESSAGE_BOX)).to_have_value("first question")

        send(page, "second question")
        wait_for_reply(page, "You said: second question")
        page.get_by_role("button", name="Clear").click()
        expect(page.locator('[data-testid="bot"]')).to_have_count(0)
        send(page, "after clear")
        wait_for_reply(page, "You said: after clear")
        assert [m["role"] for m in fake.requests[-1]["messages"]] == ["system", "user"]

    def test_an_example_is_sent_as_typed(self, page, fake):
        """An example card sends its text: it shows as the user's message and is what the model receives."""
        requests_before = len(fake.requests)
        page.get_by_text("palindrome").first.click()
        wait_for_reply(page, "You said: Write a Python function that checks whether a string is a palindrome.")
        expect(page.locator('[data-testid="user"]')).to_have_count(1)
        assert len(fake.requests) == requests_before + 1
        assert fake.requests[-1]["messages"][-1]["content"].endswith("is a palindrome.")

    def test_a_blank_message_is_not_sent_even_after_a_failed_turn(self, page, fake):
        """A failed turn leaves the user's message on screen; Enter on a blank box then calls nothing (it must not
        send that message again) and shows no error; the next real message is joined to the unanswered one."""
        fake.behaviour.faults.append(Fault(status=400, message="refused"))
        send(page, "this one fails")
        expect(page.get_by_text("refused the request")).to_be_visible(timeout=10_000)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)  # the box is ready again
        expect(page.locator(MESSAGE_BOX)).to_be_editable()
        requests_before = len(fake.requests)
        errors = page.locator(".error, [data-testid='error']")
        errors_before = errors.count()
        send(page, "   ")
        page.wait_for_timeout(1000)
        assert len(fake.requests) == requests_before
        assert errors.count() <= errors_before  # no new error shown
        send(page, "a real one")
        wait_for_reply(page, "You said: this one fails\n\na real one")
        assert [m["role"] for m in fake.requests[-1]["messages"]] == ["system", "user"]


class TestTools:
    def test_text_tools(self, page):
        """Type, click a tool, see the result."""
        page.get_by_role("tab", name="Text tools").click()
        page.get_by_label("Text", exact=True).fill("stressed")
        page.get_by_role("button", name="Reverse").click()
        expect(page.get_by_label("Result")).to_have_value("desserts")
        page.get_by_role("button", name="Count characters, words, lines").click()
        expect(page.get_by_label("Characters")).to_have_value("8")
        expect(page.get_by_label("Words")).to_have_value("1")
        expect(page.get_by_label("Lines")).to_have_value("1")
        shoot(page, "tools-light")

    def test_greeting(self, page):
        """Type a name, press Enter, read the greeting."""
        page.get_by_role("tab", name="Greeting").click()
        name = page.get_by_label("Your name")
        name.fill("Ada")
        name.press("Enter")
        expect(page.get_by_label("Greeting")).to_have_value("Hello, Ada!")
        shoot(page, "greeting-light")

    def test_counters_are_per_browser_session(self, browser, app):
        """Two browser contexts count independently."""
        pages = []
        for _ in range(2):
            context = browser.new_context()
            page = context.new_page()
            page.goto(app.url)
            page.get_by_role("tab", name="Counter").click()
            pages.append(page)
        first, second = pages
        for _ in range(3):
            first.get_by_role("button", name="Add 1").click()
            expect(first.get_by_label("Count")).to_have_value(str(_ + 1))
        second.get_by_role("button", name="Add 1").click()
        expect(second.get_by_label("Count")).to_have_value("1")
        expect(first.get_by_label("Count")).to_have_value("3")
        first.get_by_role("button", name="Reset").click()
        expect(first.get_by_label("Count")).to_have_value("0")
        shoot(first, "counter-light")
        for page in pages:
            page.context.close()


class TestAccessibility:
    def test_every_input_has_a_label(self, page):
        """Each visible text field, slider and number box has an accessible name, on every tab."""
        for tab in ("Chat", "Text tools", "Greeting", "Counter"):
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("button", name="Parameters").first.click() if tab == "Chat" else None
            unlabelled = page.evaluate(
                """() => [...document.querySelectorAll('input, textarea')]
                    .filter(el => el.offsetParent !== null && el.type !== 'hidden')
                    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                  && !el.getAttribute('aria-labelledby'))
                    .map(el => el.outerHTML.slice(0, 120))"""
            )
            assert unlabelled == [], f"{tab}: {unlabelled}"

    def test_chat_works_from_the_keyboard(self, page, fake):
        """Focus the message box with Tab alone, type, and send with Enter."""
        page.locator("body").focus()
        box = page.locator(MESSAGE_BOX)
        for _ in range(40):
            page.keyboard.press("Tab")
            if box.evaluate("el => el === document.activeElement"):
                break
        else:
            pytest.fail("Tab never reached the message box")
        page.keyboard.type("by keyboard")
        page.keyboard.press("Enter")
        wait_for_reply(page, "You said: by keyboard")

    def test_tool_buttons_work_from_the_keyboard(self, page):
        """A focused button runs on Enter, as a mouse click would."""
        page.get_by_role("tab", name="Greeting").click()
        page.get_by_label("Your name").fill("Grace")
        page.get_by_role("button", name="Greet").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_label("Greeting")).to_have_value("Hello, Grace!")


class TestMobile:
    def test_no_horizontal_scroll_and_chat_usable(self, browser, app, fake):
        """At 390x844 the saved chats' sidebar starts closed (open, it would cover the chat), the page does not
        scroll sideways, and a chat still works."""
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page = context.new_page()
        page.goto(app.url)
        page.locator(MESSAGE_BOX).wait_for()
        expect(page.locator("#saved-chats")).not_to_have_class(re.compile(r"\bopen\b"))
        send(page, "from a phone")
        wait_for_reply(page, "You said: from a phone")
        overflow = page.evaluate("() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
        assert overflow <= 0, f"the page scrolls {overflow}px sideways"
        shoot(page, "chat-mobile")
        context.close()


@pytest.fixture(scope="module")
def dark_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("dark"), **fake_backed(fake_openai, APP_THEME_MODE="dark")) as running:
        yield running


class TestDarkMode:
    def test_dark_setting_forces_a_dark_page(self, browser, dark_app, app):
        """APP_THEME_MODE=dark reloads with ?__theme=dark and the page is dark; the default page is light."""
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
        page = context.new_page()
        page.goto(dark_app.url)
        page.wait_for_url(re.compile(r"__theme=dark"))
        page.locator(MESSAGE_BOX).wait_for()
        background = page.evaluate("() => getComputedStyle(document.querySelector('gradio-app')).backgroundColor")
        assert luminance(background) < 0.2, background
        shoot(page, "chat-dark")
        for tab, name in (("Text tools", "tools-dark"), ("Greeting", "greeting-dark"), ("Counter", "counter-dark")):
            page.get_by_role("tab", name=tab).click()
            shoot(page, name)

        page.goto(app.url)
        page.locator(MESSAGE_BOX).wait_for()
        assert "__theme" not in page.url
        background = page.evaluate("() => getComputedStyle(document.querySelector('gradio-app')).backgroundColor")
        assert luminance(background) > 0.8, background
        context.close()


@pytest.fixture(scope="module")
def private_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with running_app(
        tmp_path_factory.mktemp("auth"), **fake_backed(fake_openai, APP_AUTH="ada:correct-horse")
    ) as running:
        yield running


class TestAuth:
    def test_login_refuses_a_wrong_password(self, browser, private_app):
        """APP_AUTH shows a login page; a wrong password stays there, the right one opens the app."""
        context = browser.new_context()
        page = context.new_page()
        page.goto(private_app.url)
        page.get_by_label("username").fill("ada")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        expect(page.locator(MESSAGE_BOX)).to_have_count(0)
        page.get_by_label("username").fill("ada")  # the form is emptied after a failed attempt
        page.get_by_label("password").fill("correct-horse")
        page.get_by_role("button", name="Login").click()
        expect(page.locator(MESSAGE_BOX)).to_be_visible(timeout=10_000)
        context.close()


@pytest.fixture(scope="module")
def short_memory_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with running_app(
        tmp_path_factory.mktemp("short-memory"), **fake_backed(fake_openai, MAX_HISTORY_CHARS="60")
    ) as running:
        yield running


class TestTrimmedHistory:
    def test_the_page_says_when_old_messages_are_left_out(self, browser, short_memory_app, fake):
        """A conversation longer than the model can take is trimmed, and a warning says how much went."""
        context = browser.new_context()
        page = context.new_page()
        page.goto(short_memory_app.url)
        page.locator(MESSAGE_BOX).wait_for()
        send(page, "a first message that is long")
        wait_for_reply(page, "You said: a first message that is long")
        send(page, "second")
        wait_for_reply(page, "You said: second")
        expect(page.get_by_text("2 earlier message(s) were left out")).to_be_visible()
        assert [m["role"] for m in fake.requests[-1]["messages"]] == ["system", "user"]
        context.close()
