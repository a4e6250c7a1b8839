"""In headless Chromium, the real page: hostile Markdown from a model renders no element of its own.

The page renders a message's Markdown in the browser (Gradio 6.31's marked, with its `$$` pass and mermaid rule)
and sanitizes after: a `form`, a `div` with `style` and a same-origin `img` survive its sanitizer. Whatever
`services.markdown` leaves unescaped as code must be code to that renderer. These tests watch the chat's DOM
(a MutationObserver, so that an element shown for one streamed update and gone the next counts too) while hostile
replies stream in, and while a few hundred generated snippets, imported as a saved chat, render at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.browser import chromium
from tests.support.fake_openai import Behaviour, FakeOpenAI

pytestmark = pytest.mark.browser

MESSAGE_BOX = "#message textarea"
WAIT = 20_000  # ms: two shared cores run the app, the fake server and Chromium together
# What the payloads are marked with: no element of the page's own carries these.
INJECTED = (
    "#chatbot form, #chatbot iframe, #chatbot img, #chatbot input:not([type=checkbox]), #chatbot x-pwn, "
    "#chatbot [id^=pwn], #chatbot [class~=pwn-b], #chatbot [style*=fixed], #chatbot [onload], #chatbot [onerror], "
    "#chatbot .mermaid svg"
)
# Records every element matching INJECTED that appears in the chat, however briefly.
WATCH = """(selector) => {
    window.__injected = [];
    const record = (node) => {
        if (!(node instanceof Element)) return;
        for (const element of [node, ...node.querySelectorAll("*")])
            if (element.matches(selector)) window.__injected.push(element.outerHTML.slice(0, 300));
    };
    new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach(record)))
        .observe(document.body, {childList: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(delay=0.01)) as fake:
        yield fake


@pytest.fixture(scope="module")
def app(server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app on the fake server, taking saved chats of a few hundred messages."""
    env = fake_backed(
        server,
        LLM_MAX_RETRIES="0",
        RATE_LIMIT_PER_IP="none",
        RATE_LIMIT_PER_SESSION="none",
        MAX_HISTORY_MESSAGES="2000",
        HISTORY_CONVERSATION_CHARS="400000",
        HISTORY_TOTAL_CHARS="1000000",
        MAX_REQUEST_BYTES="2000000",
    )
    with running_app(tmp_path_factory.mktemp("markdown"), **env) as running:
        yield running


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.locator(MESSAGE_BOX).wait_for()
    page.evaluate(WATCH, INJECTED)
    return page


def injected(page: Page) -> list[str]:
    """What appeared of the payloads, plus what is there now (in case it came before the watch)."""
    seen: list[str] = page.evaluate("() => window.__injected")
    now: list[str] = page.evaluate(
        "(selector) => [...document.querySelectorAll(selector)].map((e) => e.outerHTML.slice(0, 300))", INJECTED
    )
    return seen + now


FORM = '<form action="https://elsewhere.example/login" id="pwn-form"><input type="password" name="p"></form>'
OVERLAY = '<div style="position:fixed;inset:0;background:red" id="pwn-overlay">Session expired</div>'
HOSTILE_REPLIES = {
    # The report's row 7: a fence whose info string holds a backtick is no fence for the page either.
    "a fence with a backtick in its info": f"Here you go:\n```x`\n{OVERLAY}\n{FORM}\n```\nDone.",
    "a mermaid diagram": f'```mermaid\ngraph TD\nA["{FORM}"] --> B["{OVERLAY}"]\n```\nDone.',
    "mermaid with entities": '```mermaid\ngraph TD\nA["&lt;form id=pwn-f&gt;&lt;input type=password&gt;"]\n```\nDone.',
    "latex hiding a backtick": f"$$`$$ {FORM} `\n\nDone.",
    "a lone $$ cutting a span": f"a `x $$ {FORM} `\n\nDone.",
    "a table splitting a span": f"| `a | {FORM}` |\n|---|---|\n\nDone.",
    "emphasis closing inside a span": f"*a ``b*`{FORM}``*\n\nDone.",
    "an autolink running over a backtick": f"see http://x/`{FORM}`\n\nDone.",
    "a fence closed by marks and a tilde": f"```\n```~\n```\n```\n{FORM}\n```\n\nDone.",
    "images from elsewhere": '![x](http://127.0.0.1:9/leak.png) <img src="/favicon.ico" id="pwn-img"> Done.',
    "an svg and a frame": "<svg onload=alert(1) id=pwn-svg></svg><iframe src=//elsewhere.example id=pwn-frame>\nDone.",
}


class TestHostileReplies:
    @pytest.mark.parametrize("name", HOSTILE_REPLIES)
    def test_nothing_of_a_streamed_reply_renders_as_html(self, browser, server, app, name):
        """The reply streams in pieces (each update rendered by the page): at no point does an element from it
        exist in the chat, and the page runs none of its scripts."""
        reply = HOSTILE_REPLIES[name]
        server.reset()
        server.behaviour.pieces = tuple(reply[i : i + 7] for i in range(0, len(reply), 7))
        page = open_page(browser, app.url)
        box = page.locator(MESSAGE_BOX)
        box.fill("go")
        box.press("Enter")
        expect(page.locator("[data-testid='bot']").last).to_contain_text("Done.", timeout=WAIT)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=WAIT)
        page.wait_for_timeout(1500)  # mermaid and KaTeX run after the Markdown
        assert injected(page) == []
        assert page.evaluate("() => window.__pwned") is None
        page.context.close()

    def test_code_still_shows_tags_as_text(self, browser, server, app):
        """Code blocks and code spans, in paragraphs, list items and tables, show their `<tags>` as written."""
        server.reset()
        server.behaviour.reply = (
            'Use `<div>` here.\n\n```html\n<div class="box">\n  <span>hi</span>\n</div>\n```\n\n'
            "1. Install:\n   ```bash\n   npm i <pkg>\n   ```\n2. Then `<input>`\n\n| tag | use |\n|---|---|\n"
            "| `<td>` | cell |\n\nDone."
        )
        page = open_page(browser, app.url)
        box = page.locator(MESSAGE_BOX)
        box.fill("show me")
        box.press("Enter")
        bot = page.locator("[data-testid='bot']").last
        expect(bot).to_contain_text("Done.", timeout=WAIT)
        codes = bot.locator("code")
        expect(codes.filter(has_text='<div class="box">')).to_have_count(1)
        for text in ("<div>", "npm i <pkg>", "<input>", "<td>"):
            expect(codes.filter(has_text=text).first).to_be_visible()
        assert injected(page) == []
        page.context.close()


PAYLOADS = [
    '<form id="pwn-f" action="https://elsewhere.example">', "<img src=/favicon.ico id=pwn-i>",
    '<div style="position:fixed" id="pwn-d">', "<iframe src=//elsewhere.example id=pwn-fr>", "<x-pwn>",
    "<svg onload=window.__pwned=1 id=pwn-s>", '<b class="pwn-b">', "<input id=pwn-in>", "<details id=pwn-de>",
]  # fmt: skip
PIECES = [
    "`", "``", "```", "````", "~~~", "~", "$$", "$", "*", "_", "[", "]", "(", ")", "![", "](", "]:", "|", "-|-",
    "\\", "http://x/", "www.", " ", "  ", "\n", "\n", "\n\n", "x", "text", "- ", "1. ", "> ", "# ", "===", "---",
    "```mermaid\n", "```js\n", "[ ] ", "    ", *PAYLOADS, *PAYLOADS,
]  # fmt: skip
LINE_STARTS = ["", "", "", "  ", "    ", "- ", "* ", "1. ", "  - ", "> ", "# ", "| ", "   "]


def snippets(count: int, seed: int) -> list[str]:
    """Snippets mixing fences, backticks, indentation, lists, tables, `$$` and HTML tags: half free-form, half
    line by line."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        if index % 2:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(4, 40))))
        else:
            lines = [
                rng.choice(LINE_STARTS) + "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))
                for _ in range(rng.randint(2, 10))
            ]
            out.append("\n".join(lines))
    return out


class TestGeneratedSnippets:
    def test_hundreds_of_snippets_render_no_element_of_their_own(self, browser, app, tmp_path):
        """300 generated snippets, imported as a saved chat (each an answer of its own, rendered by the page as
        it renders replies): none puts an element of its payloads in the chat, and no script of theirs runs."""
        texts = snippets(300, seed=2026)
        messages = []
        for index, text in enumerate(texts):
            messages += [{"role": "user", "text": f"snippet {index}"}, {"role": "assistant", "text": text}]
        export = {"format": "space-chat/conversation", "version": 1, "title": "snippets", "messages": messages}
        path = tmp_path / "snippets.json"
        path.write_text(json.dumps(export), encoding="utf-8")
        page = open_page(browser, app.url)
        page.locator('#saved-chats input[type="file"]').set_input_files(str(path))
        expect(page.locator("[data-testid='user']")).to_have_count(len(texts), timeout=60_000)
        expect(page.locator("[data-testid='user']").last).to_have_text(f"snippet {len(texts) - 1}")
        page.wait_for_timeout(3000)  # every message's Markdown rendered, mermaid and KaTeX run
        found = injected(page)
        assert found == [], found[:5]
        assert page.evaluate("() => window.__pwned") is None
        page.context.close()


def test_the_watch_sees_an_element_added_to_the_chat(browser, app):
    """What the tests above find empty is not empty by construction: an element of a payload's kind, added to
    the chat, is seen."""
    page = open_page(browser, app.url)
    page.evaluate(
        """() => { const e = document.createElement("form"); e.id = "pwn-probe";
                   document.querySelector("#chatbot").appendChild(e); }"""
    )
    page.wait_for_timeout(200)
    assert any("pwn-probe" in html for html in injected(page))
    page.context.close()
