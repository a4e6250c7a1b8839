"""Attachments as a visitor meets them: headless Chromium attaches an image and a document in the page, sees them
in the chat, and after a reload sees what a saved chat keeps of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import files
from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.browser import chromium
from tests.support.fake_openai import MODEL, FakeOpenAI, images_of, text_of

pytestmark = pytest.mark.browser

MESSAGE_BOX = "#message textarea"
WAIT = 20_000  # ms: two shared cores run the app, the fake server and Chromium together


@pytest.fixture(scope="module")
def seeing_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app whose model takes images (VISION_MODELS names it)."""
    env = fake_backed(fake_openai, VISION_MODELS=MODEL, RATE_LIMIT_PER_IP="none", RATE_LIMIT_PER_SESSION="none")
    with running_app(tmp_path_factory.mktemp("seeing"), **env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(WAIT)
    page.goto(url)
    page.locator(MESSAGE_BOX).wait_for()
    return page


def test_an_attached_image_and_document_are_shown_and_sent(browser, seeing_app, fake, tmp_path: Path):
    """Picked with the box's attach button: the message shows the image's thumbnail (a picture the browser
    draws) and the document's name, the model gets both, and after a reload the saved chat shows the thumbnail
    and says the model no longer has them."""
    picture = tmp_path / "sunset.jpg"
    picture.write_bytes(files.photo(1200, 900, exif=files.gps_exif()))
    notes = tmp_path / "notes.md"
    notes.write_bytes(b"The meeting is on Tuesday.")
    page = open_page(browser, seeing_app.url)
    page.locator('#message input[type="file"]').set_input_files([str(picture), str(notes)])
    expect(page.locator("#message img")).to_have_count(1)  # the box's own preview, once uploaded
    page.locator(MESSAGE_BOX).fill("What do you see?")
    page.locator(MESSAGE_BOX).press("Enter")
    # The Chatbot shows a message's text and its image as bubbles of their own.
    user = page.locator('[data-testid="user"]')
    expect(user.filter(has_text="notes.md")).to_have_count(1)
    thumbnail = user.locator("img")
    expect(thumbnail).to_have_count(1)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    expect(page.locator('[data-testid="bot"]').last).to_contain_text("What do you see?")
    sent = [m for m in fake.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]
    assert len(images_of(sent)) == 1
    assert "The meeting is on Tuesday." in text_of(sent)
    expect(page.locator("#past-chats input")).to_have_count(1)
    page.reload()
    page.locator(MESSAGE_BOX).wait_for()
    reopened = page.locator('[data-testid="user"]')
    expect(reopened.filter(has_text="no longer available to the model")).to_have_count(1)
    expect(reopened.locator("img")).to_have_count(1)
    page.context.close()
