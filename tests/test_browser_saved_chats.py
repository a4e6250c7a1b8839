"""Saved chats as a visitor meets them: headless Chromium (Debian's) driving the real app, records in localStorage."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support.apps import RunningApp, fake_backed, running_app, start_app, stop_app
from tests.support.browser import chromium
from tests.support.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.browser

MESSAGE_BOX = "#message textarea"
PREFIX = "space-chat:v1:"
WAIT = 15_000  # ms: two shared cores run the app, the fake server and Chromium together
NOT_VERIFIED = (
    "1 saved chat(s) in this browser could not be verified (altered, or saved before this Space's HISTORY_SECRET "
    "changed) and were removed."
)
TAMPERED = (
    "A saved conversation did not pass its check (altered, or saved under another HISTORY_SECRET). "
    "It was not shown, and was removed."
)


def chat_env(fake: FakeOpenAI, **env: str) -> dict[str, str]:
    """An app on the fake server with no rate limits (every client here is 127.0.0.1) and no retries."""
    return fake_backed(fake, LLM_MAX_RETRIES="0", RATE_LIMIT_PER_IP="none", RATE_LIMIT_PER_SESSION="none", **env)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One visitor's browser: its tabs share localStorage; each tab has its own sessionStorage."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT)
    yield context
    context.close()


@pytest.fixture(scope="module")
def quota_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app with the smallest budgets it accepts: 1,000 characters a chat, 10,000 in all."""
    env = chat_env(fake_openai, HISTORY_CONVERSATION_CHARS="1000", HISTORY_TOTAL_CHARS="10000")
    with running_app(tmp_path_factory.mktemp("quota"), **env) as running:
        yield running


# Driving the page


def open_tab(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.locator(MESSAGE_BOX).wait_for()
    return page


def send(page: Page, text: str) -> None:
    box = page.locator(MESSAGE_BOX)
    expect(box).to_be_editable(timeout=WAIT)
    box.fill(text)
    box.press("Enter")


def wait_for_reply(page: Page, expected: str, count: int | None = None) -> None:
    """The last reply reads `expected`, the stream is over, and (with `count`) there are that many replies."""
    replies = page.locator('[data-testid="bot"]')
    expect(replies.last).to_have_text(expected, timeout=WAIT)
    if count is not None:
        expect(replies).to_have_count(count, timeout=WAIT)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=WAIT)
    expect(page.locator(MESSAGE_BOX)).to_be_editable(timeout=WAIT)


def chat(page: Page, text: str, count: int | None = None) -> None:
    send(page, text)
    wait_for_reply(page, f"You said: {text}", count)


def expect_shown(page: Page, users: list[str]) -> None:
    """The chat shows exactly these messages, each answered by the fake server's echo."""
    expect(page.locator('[data-testid="user"]')).to_have_text(users, timeout=WAIT)
    expect(page.locator('[data-testid="bot"]')).to_have_text([f"You said: {u}" for u in users], timeout=WAIT)


def past_chats(page: Page) -> Any:
    return page.locator("#past-chats label")


def reload(page: Page) -> None:
    page.reload()
    page.locator(MESSAGE_BOX).wait_for()


# What the browser holds


def records(page: Page) -> dict[str, dict[str, Any]]:
    """The saved chats in this origin's localStorage, parsed, by id."""
    raw = page.evaluate(
        """(prefix) => Object.fromEntries(Object.keys(localStorage)
            .filter((k) => k.startsWith(prefix)).map((k) => [k.slice(prefix.length), localStorage.getItem(k)]))""",
        PREFIX,
    )
    return {key: json.loads(value) for key, value in raw.items()}


def wait_for_record_count(page: Page, count: int) -> dict[str, dict[str, Any]]:
    """The records once there are `count` of them (the page writes them in a step after the reply ends)."""
    with contextlib.suppress(PlaywrightTimeout):  # the assertion below says what is there instead
        page.wait_for_function(
            """([prefix, count]) => Object.keys(localStorage).filter((k) => k.startsWith(prefix)).length === count""",
            arg=[PREFIX, count],
            timeout=WAIT,
        )
    found = records(page)
    assert len(found) == count, json.dumps(found, indent=1, ensure_ascii=False)[:4000]
    return found


def wait_for_saved(page: Page, users: list[str]) -> tuple[str, dict[str, Any]]:
    """This tab's chat as saved, once its record holds exactly `users` with their echoed replies."""
    expected = turns_for(users)
    with contextlib.suppress(PlaywrightTimeout):  # the assertions below say what is there instead
        page.wait_for_function(
            """([prefix, expected]) => {
                const id = sessionStorage.getItem("space-chat:current");
                const raw = id && localStorage.getItem(prefix + id);
                return !!raw && JSON.stringify(JSON.parse(raw).turns) === expected;
            }""",
            arg=[PREFIX, json.dumps(expected, separators=(",", ":"), ensure_ascii=False)],
            timeout=WAIT,
        )
    current = page.evaluate("() => sessionStorage.getItem('space-chat:current')")
    found = records(page)
    assert current in found, (current, found)
    assert found[current]["turns"] == expected
    return current, found[current]


def turns_for(users: list[str]) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for text in users:
        turns += [{"role": "user", "text": text}, {"role": "assistant", "text": f"You said: {text}"}]
    return turns


def title_of(text: str) -> str:
    """The sidebar's title for a chat opened by `text`: white space collapsed, at most 60 characters."""
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


# The tests


class TestKeptAcrossReloadsAndRestarts:
    def test_a_reload_keeps_the_conversation(self, context, app, fake):
        """A reload reopens this tab's chat: both exchanges are shown again, and it is the listed, picked one."""
        page = open_tab(context, app.url)
        chat(page, "the first message", 1)
        chat(page, "the second message", 2)
        conversation_id, record = wait_for_saved(page, ["the first message", "the second message"])
        assert record["meta"]["title"] == "the first message"

        reload(page)
        expect_shown(page, ["the first message", "the second message"])
        expect(past_chats(page)).to_have_text(["the first message"], timeout=WAIT)
        expect(page.locator("#past-chats input:checked")).to_have_value(conversation_id, timeout=WAIT)
        # The reopened chat goes on: the model sees both earlier exchanges.
        chat(page, "the third message", 3)
        assert [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "user"] == [
            "the first message",
            "the second message",
            "the third message",
        ]

    def test_a_restart_with_the_same_secret_keeps_the_chat(self, context, fake_openai, fake, tmp_path):
        """The app stopped and started again on the same port, same HISTORY_SECRET: a reload lists and reopens it."""
        port = free_port()
        running = start_app(tmp_path, port=port, **chat_env(fake_openai))
        try:
            page = open_tab(context, running.url)
            chat(page, "kept over a restart", 1)
            conversation_id, _ = wait_for_saved(page, ["kept over a restart"])
        finally:
            stop_app(running)
        running = start_app(tmp_path, port=port, **chat_env(fake_openai))
        try:
            reload(page)
            expect_shown(page, ["kept over a restart"])
            expect(past_chats(page)).to_have_text(["kept over a restart"], timeout=WAIT)
            expect(page.locator("#past-chats input:checked")).to_have_value(conversation_id, timeout=WAIT)
            expect(page.locator("#saved-notice")).to_have_text("", timeout=WAIT)
            assert list(records(page)) == [conversation_id]
        finally:
            stop_app(running)

    def test_a_restart_with_another_secret_says_so_and_starts_clean(self, context, fake_openai, fake, tmp_path):
        """Another HISTORY_SECRET after a restart: a notice says the chat could not be verified; it is gone."""
        port = free_port()
        running = start_app(tmp_path, port=port, **chat_env(fake_openai))
        try:
            page = open_tab(context, running.url)
            chat(page, "signed with the old secret", 1)
            wait_for_saved(page, ["signed with the old secret"])
        finally:
            stop_app(running)
        running = start_app(tmp_path, port=port, **chat_env(fake_openai, HISTORY_SECRET="a-new-secret-after-restart"))
        try:
            reload(page)
            expect(page.locator("#saved-notice")).to_have_text(NOT_VERIFIED, timeout=WAIT)
            expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
            expect(page.locator('[data-testid="bot"]')).to_have_count(0, timeout=WAIT)
            expect(past_chats(page)).to_have_count(0, timeout=WAIT)
            assert "signed with the old secret" not in page.locator("body").inner_text()
            assert wait_for_record_count(page, 0) == {}
            # It starts clean: the next chat is saved on its own, under the new secret.
            chat(page, "after the new secret", 1)
            wait_for_saved(page, ["after the new secret"])
            assert len(records(page)) == 1
        finally:
            stop_app(running)


class TestTabs:
    def test_two_tabs_chatting_at_once_both_keep_their_chats(self, context, app, fake):
        """Two tabs of one browser reply at the same time; both chats are stored, and a third tab lists both."""
        fake.behaviour.delay = 0.3  # each reply streams for a second or two, so the two overlap
        first, second = open_tab(context, app.url), open_tab(context, app.url)
        for round_ in ("one", "two"):
            texts = {first: f"left tab message {round_}", second: f"right tab message {round_}"}
            for page, text in texts.items():
                send(page, text)
            # Both replies are streaming at once.
            for page in texts:
                expect(page.get_by_role("button", name="Stop")).to_have_count(1, timeout=WAIT)
            for page, text in texts.items():
                wait_for_reply(page, f"You said: {text}", 1 if round_ == "one" else 2)
        left_id, _ = wait_for_saved(first, ["left tab message one", "left tab message two"])
        right_id, _ = wait_for_saved(second, ["right tab message one", "right tab message two"])
        assert left_id != right_id
        for page in (first, second):  # neither tab's save ran into the other's
            expect(page.locator("#storage-notice")).to_have_text("", timeout=WAIT)

        third = open_tab(context, app.url)
        expect(past_chats(third)).to_have_count(2, timeout=WAIT)
        assert sorted(past_chats(third).all_inner_texts()) == ["left tab message one", "right tab message one"]
        stored = records(third)
        assert set(stored) == {left_id, right_id}
        assert stored[left_id]["turns"] == turns_for(["left tab message one", "left tab message two"])
        assert stored[right_id]["turns"] == turns_for(["right tab message one", "right tab message two"])
        # A new tab opens on a new chat, not on either of the other tabs' chats.
        expect(third.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
        expect(third.locator("#saved-notice")).to_have_text("", timeout=WAIT)


class TestSidebar:
    def test_the_sidebar_reopens_and_deletes_a_past_chat(self, context, app, fake):
        """New chat starts empty; picking the old title brings its messages back; Delete removes it everywhere."""
        page = open_tab(context, app.url)
        chat(page, "the older chat", 1)
        old_id, _ = wait_for_saved(page, ["the older chat"])
        page.locator("#new-chat").click()
        expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
        expect(page.locator('[data-testid="bot"]')).to_have_count(0, timeout=WAIT)
        chat(page, "the newer chat", 1)
        new_id, _ = wait_for_saved(page, ["the newer chat"])
        expect(past_chats(page)).to_have_text(["the newer chat", "the older chat"], timeout=WAIT)

        past_chats(page).filter(has_text="the older chat").click()
        expect_shown(page, ["the older chat"])
        expect(page.locator("#past-chats input:checked")).to_have_value(old_id, timeout=WAIT)
        # The reopened chat goes on from where it was, with its own history only.
        chat(page, "the older chat, continued", 2)
        wait_for_saved(page, ["the older chat", "the older chat, continued"])
        assert [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "user"] == [
            "the older chat",
            "the older chat, continued",
        ]

        page.locator("#delete-chat").click()
        expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
        expect(past_chats(page)).to_have_text(["the newer chat"], timeout=WAIT)
        stored = wait_for_record_count(page, 1)
        assert list(stored) == [new_id]
        reload(page)  # this tab's chat was the deleted one: the reload opens a new chat, and lists the other
        expect(past_chats(page)).to_have_text(["the newer chat"], timeout=WAIT)
        expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
        assert list(records(page)) == [new_id]


class TestExportImport:
    def test_export_then_import_round_trips(self, browser, context, app, fake, tmp_path):
        """Export JSON and Markdown hold the chat; importing the JSON in another browser shows and lists it again."""
        page = open_tab(context, app.url)
        users = ["Export me: café, naïve ✓", "and a second line"]
        chat(page, users[0], 1)
        chat(page, users[1], 2)
        wait_for_saved(page, users)

        with page.expect_download(timeout=WAIT) as download:
            page.locator("#export-json").click()
        assert download.value.suggested_filename == "export-me-caf-na-ve.json"
        exported_path = tmp_path / "exported.json"
        download.value.save_as(exported_path)
        exported = json.loads(exported_path.read_text(encoding="utf-8"))
        assert set(exported) == {"format", "version", "title", "created", "updated", "messages"}
        assert (exported["format"], exported["version"]) == ("space-chat/conversation", 1)
        assert exported["title"] == users[0]
        assert exported["messages"] == turns_for(users)

        with page.expect_download(timeout=WAIT) as download:
            page.locator("#export-md").click()
        assert download.value.suggested_filename == "export-me-caf-na-ve.md"
        markdown = Path(download.value.path()).read_text(encoding="utf-8")
        assert markdown == (
            "# Export me: café, naïve ✓\n\n"
            "## You\n\nExport me: café, naïve ✓\n\n## Assistant\n\nYou said: Export me: café, naïve ✓\n\n"
            "## You\n\nand a second line\n\n## Assistant\n\nYou said: and a second line\n"
        )

        other = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        other.set_default_timeout(WAIT)
        try:
            fresh = open_tab(other, app.url)
            expect(past_chats(fresh)).to_have_count(0, timeout=WAIT)
            assert records(fresh) == {}
            fresh.locator('#saved-chats input[type="file"]').set_input_files(str(exported_path))
            expect_shown(fresh, users)
            expect(past_chats(fresh)).to_have_text([users[0]], timeout=WAIT)
            imported_id, record = wait_for_saved(fresh, users)
            assert list(records(fresh)) == [imported_id]
            assert record["meta"]["title"] == users[0]
            expect(fresh.locator("#past-chats input:checked")).to_have_value(imported_id, timeout=WAIT)

            # Exported again from the importing browser: the same conversation, exactly.
            with fresh.expect_download(timeout=WAIT) as download:
                fresh.locator("#export-json").click()
            again = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
            assert {k: again[k] for k in ("format", "version", "title", "created", "messages")} == {
                k: exported[k] for k in ("format", "version", "title", "created", "messages")
            }
        finally:
            other.close()


class TestTampering:
    def test_an_altered_record_is_refused_with_a_notice(self, context, app, fake):
        """A record whose turns were edited in localStorage is not shown after a reload; a notice says why."""
        page = open_tab(context, app.url)
        chat(page, "words as they were said", 1)
        conversation_id, _ = wait_for_saved(page, ["words as they were said"])
        page.evaluate(
            """(key) => {
                const record = JSON.parse(localStorage.getItem(key));
                record.turns[1].text = "WORDS PUT IN THE ASSISTANT'S MOUTH";
                localStorage.setItem(key, JSON.stringify(record));
            }""",
            PREFIX + conversation_id,
        )
        assert records(page)[conversation_id]["turns"][1]["text"] == "WORDS PUT IN THE ASSISTANT'S MOUTH"

        reload(page)
        expect(page.locator("#saved-notice")).to_have_text(TAMPERED, timeout=WAIT)
        expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
        expect(page.locator('[data-testid="bot"]')).to_have_count(0, timeout=WAIT)
        assert "PUT IN THE ASSISTANT" not in page.content()
        assert "PUT IN THE ASSISTANT" not in page.locator("body").inner_text()
        assert wait_for_record_count(page, 0) == {}
        # The refused record is gone, so the sidebar does not offer it either.
        expect(past_chats(page)).to_have_count(0, timeout=WAIT)


class TestQuota:
    def test_the_total_budget_drops_the_oldest_chats_with_a_notice(self, context, quota_app, fake):
        """Past HISTORY_TOTAL_CHARS the oldest chat goes, a notice names it, and the records stay under budget."""
        page = open_tab(context, quota_app.url)
        # Each chat is 990 characters (a 490-character message and its 500-character echo): ten fit in 10,000.
        texts = [f"Quota chat {i:02d} " + "x" * 476 for i in range(1, 12)]
        ids: list[str] = []
        for number, text in enumerate(texts, start=1):
            if number > 1:
                page.locator("#new-chat").click()
                expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=WAIT)
            chat(page, text, 1)
            conversation_id, record = wait_for_saved(page, [text])
            assert record["meta"]["chars"] == 990
            ids.append(conversation_id)
            if number <= 10:
                expect(page.locator("#saved-notice")).to_have_text("", timeout=WAIT)
                assert len(records(page)) == number

        notice = f"To stay within your browser's storage, 1 oldest saved chat(s) were removed: “{title_of(texts[0])}”."
        expect(page.locator("#saved-notice")).to_have_text(notice, timeout=WAIT)
        expect(page.locator("#saved-notice")).to_be_visible(timeout=WAIT)
        stored = wait_for_record_count(page, 10)
        assert set(stored) == set(ids[1:])
        assert sum(record["meta"]["chars"] for record in stored.values()) == 9900
        expect(past_chats(page)).to_have_text([title_of(text) for text in reversed(texts[1:])], timeout=WAIT)

        # A new tab of the same browser agrees: ten chats, the oldest not among them, within budget.
        other = open_tab(context, quota_app.url)
        expect(past_chats(other)).to_have_count(10, timeout=WAIT)
        assert title_of(texts[0]) not in past_chats(other).all_inner_texts()
        assert sum(record["meta"]["chars"] for record in records(other).values()) <= 10_000

    def test_a_chat_over_its_budget_keeps_its_latest_messages_with_a_notice(self, context, quota_app, fake):
        """Past HISTORY_CONVERSATION_CHARS only the latest messages are stored, and a notice says how many."""
        page = open_tab(context, quota_app.url)
        first, second = "Long chat A " + "y" * 288, "Long chat B " + "z" * 288  # 300 characters, echoes 310
        chat(page, first, 1)
        wait_for_saved(page, [first])
        expect(page.locator("#saved-notice")).to_have_text("", timeout=WAIT)
        chat(page, second)  # how many messages the tab then shows is the session's bound, not checked here
        conversation_id, record = wait_for_saved(page, [second])
        assert record["meta"]["chars"] == 610
        notice = (
            "Only the latest 2 of this chat's 4 messages are kept (HISTORY_CONVERSATION_CHARS is 1,000 characters)."
        )
        expect(page.locator("#saved-notice")).to_have_text(notice, timeout=WAIT)
        expect(page.locator("#saved-notice")).to_be_visible(timeout=WAIT)

        reload(page)
        expect_shown(page, [second])
        expect(page.locator("#past-chats input:checked")).to_have_value(conversation_id, timeout=WAIT)
