"""The page passes axe-core's WCAG 2.1 A and AA rules with no serious or critical violation, at desktop and mobile
width, after a chat: axe-core from npm (tests/js), run in Chromium against the real app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.support import node
from tests.support.apps import RunningApp
from tests.support.browser import chromium
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

MESSAGE_BOX = "#message textarea"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SIZES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module")
def axe_source() -> str:
    try:
        _, modules = node.node_modules()
    except node.NodeUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    return (modules / "axe-core" / "axe.min.js").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def serious(results: dict[str, Any]) -> list[str]:
    """One line per serious or critical violation: the rule, and the elements it found."""
    return [
        f"{rule['id']} ({rule['impact']}): {rule['help']} at {[node['target'] for node in rule['nodes']][:8]}"
        for rule in results["violations"]
        if rule["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_serious_violation_after_a_chat(browser: Browser, app: RunningApp, fake: FakeOpenAI, axe_source, size):
    """After a reply (a saved chat in the sidebar, a notice, the Parameters open), axe finds nothing serious."""
    fake.behaviour.reply = "Here is **bold** text, a [link](https://example.org) and `code`."
    context = browser.new_context(**SIZES[size])
    page = context.new_page()
    page.goto(app.url)
    page.locator(MESSAGE_BOX).wait_for()
    page.locator(MESSAGE_BOX).fill("Hello")
    page.locator(MESSAGE_BOX).press("Enter")
    expect(page.locator('[data-testid="bot"]').last).to_contain_text("link and code", timeout=15_000)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=15_000)
    expect(page.locator("#past-chats input")).to_have_count(1, timeout=15_000)
    page.get_by_role("button", name="Parameters").click()
    page.add_script_tag(content=axe_source)
    results = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_21_AA,
    )
    context.close()
    assert serious(results) == []
