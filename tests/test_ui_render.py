"""Tests for ui/render.py's live path: a streamed reply's messages are those of `safe_markdown`, reusing work."""

from __future__ import annotations

import time

import pytest

from services.chat import Reply
from services.markdown import safe_markdown
from ui.render import LiveMarkdown, live_reply

pytestmark = pytest.mark.unit


def texts(messages: list[dict]) -> list[str]:
    return [message["content"][0]["text"] for message in messages]


class TestLiveReply:
    def test_each_update_shows_what_safe_markdown_gives(self):
        """Thinking then an answer, streamed a few characters at a time: every update's messages hold exactly
        `safe_markdown` of the thinking and of the answer so far."""
        thinking = "Let me think about `<div>` and <b>tags</b> " * 8
        answer = "Use `<div>`:\n\n```html\n<div>\n  <img src=x>\n</div>\n```\n\n![x](http://elsewhere/leak) done " * 4
        live = LiveMarkdown()
        for cut in range(1, len(thinking), 7):
            assert texts(live_reply(Reply(text="", thinking=thinking[:cut]), live)) == [safe_markdown(thinking[:cut])]
        for cut in range(1, len(answer), 7):
            shown = texts(live_reply(Reply(text=answer[:cut], thinking=thinking, thinking_seconds=1.0), live))
            assert shown == [safe_markdown(thinking), safe_markdown(answer[:cut])]

    def test_replies_streaming_at_once_each_show_their_own_text(self):
        """Ten replies updated in turn, each with its own renderers: each shows its own text, made safe."""
        replies = [(f"reply {index}: " + "`<b>` <i>x</i> " * 10, LiveMarkdown()) for index in range(10)]
        for cut in range(5, 170, 9):
            for text, live in replies:
                assert texts(live_reply(Reply(text=text[:cut]), live)) == [safe_markdown(text[:cut])]

    def test_a_reply_that_starts_over_is_rendered_afresh(self):
        """A text that does not extend the last (a tool round's new answer) is rendered whole, not spliced."""
        live = LiveMarkdown()
        live_reply(Reply(text="```python\nprint('<b>')\n"), live)
        assert texts(live_reply(Reply(text="<b>plain</b>"), live)) == [safe_markdown("<b>plain</b>")]

    def test_a_long_reply_is_not_rendered_whole_at_each_update(self):
        """100 KB streamed 20 characters at a time through the live path: far below what 5,000 whole renders of
        up to 100 KB cost (each update redoes only the block still open)."""
        block = "## Step\n\nUse `<div>` here.\n\n```js\nconst a = b < c;\n```\n\n- item `<b>`\n\n"
        answer = (block * (100_000 // len(block) + 1))[:100_000]
        live = LiveMarkdown()
        start = time.perf_counter()
        for cut in range(20, len(answer) + 20, 20):
            live_reply(Reply(text=answer[:cut]), live)
        assert time.perf_counter() - start < 2.0
