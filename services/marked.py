"""Where the page's Markdown renderer sees code: a model of marked 12 as Gradio 6.31's Chatbot runs it.

The page renders a message's Markdown in the browser with marked 12 (GFM, `breaks`), after Gradio has replaced
every `$$...$$` with a placeholder. `services.markdown` escapes raw HTML everywhere except in code, so what it
treats as code must be code to marked too: text left unescaped that marked renders as HTML is a hole. This module
answers "which parts of this text are code to marked", erring towards "not code" (an escaped `<` shown as `&lt;`
in code is cosmetic).

The block structure is marked's own: its block rules are ported here with their regular expressions (with
JavaScript's meanings: `$` is the end of the input, `.` stops at line terminators, `\\s` is JavaScript's
whitespace), in linear time (marked's setext-heading rule is quadratic in list items; here its answer is found
with forward pointers). Inside blocks, a code span counts only where no other inline rule of marked can end
inside it. Blockquotes, list items marked would read after expanding tabs, and lists nested past `MAX_DEPTH` hold
no code here.

The input is the page's view of the text as `services.markdown` prepares it: no `<` at all (its output escapes
every `<` outside code, so marked meets no HTML), `$$...$$` already inert, no link reference definition (their
`[` escaped), tabs at line starts expanded and line ends normalised as marked does first.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal

__all__ = ["Checkpoint", "Resume", "analyze"]

# JavaScript's \s, and the characters String.prototype.trim removes.
_WS = "\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_WS_CHARS = "\t\n\v\f\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
_S = f"[{_WS}]"
_DOT = r"[^\n\r\u2028\u2029]"  # JavaScript's `.`

_BULLET = r"(?:[*+-]|[0-9]{1,9}[.)])"
_HR = r" {0,3}(?:(?:-[\t ]*){3,}|(?:_[ \t]*){3,}|(?:\*[ \t]*){3,})(?:\n+|\Z)"
_HEADING_START = rf" {{0,3}}#{{1,6}}(?:{_S}|\Z)"
_QUOTE_START = r" {0,3}>"
_FENCE_START = r" {0,3}(?:`{3,}(?=[^`\n]*\n)|~{3,})[^\n]*\n"
_LIST_START = r" {0,3}(?:[*+-]|1[.)]) "
_ROW = rf"(?:(?! *\n|{_HR}|{_HEADING_START}|{_QUOTE_START}| {{4}}[^\n]|{_FENCE_START}|{_LIST_START}){_DOT}*(?:\n|\Z))"


def _table(capture: bool) -> str:
    header, align, rows = ("(?P<header>", "(?P<align>", "(?P<rows>") if capture else ("(?:", "(?:", "(?:")
    return (
        rf" *{header}[^\n ]{_DOT}*)\n {{0,3}}{align}(?:\| *)?:?-+:? *(?:\| *:?-+:? *)*(?:\| *)?)"
        rf"(?:\n{rows}{_ROW}*)\n*|\Z)"
    )


# marked's block rules (gfm), without their leading `^`: they are matched at a position.
_NEWLINE = re.compile(r"(?: *(?:\n|\Z))+")
_CODE = re.compile(r"(?: {4}[^\n]+(?:\n(?: *(?:\n|\Z))*)?)+")
_FENCES = re.compile(
    r" {0,3}(`{3,}(?=[^`\n]*(?:\n|\Z))|~{3,})[^\n]*(?:\n|\Z)(?:|(?P<body>[\s\S]*?)(?:\n|\Z))"
    r"(?:(?P<close> {0,3}\1[~`]* *(?=\n|\Z))|\Z)"
)
_HEADING = re.compile(rf" {{0,3}}(#{{1,6}})(?={_S}|\Z)({_DOT}*)(?:\n+|\Z)")
_HR_RULE = re.compile(_HR)
_PARAGRAPH_NORMAL = rf"[^\n]+(?:\n(?!{_HR}|{_HEADING_START}|{_QUOTE_START}|{_FENCE_START}|{_LIST_START}| +\n)[^\n]+)*"
_BLOCKQUOTE = re.compile(rf"(?: {{0,3}}> ?(?:{_PARAGRAPH_NORMAL}|[^\n]*)(?:\n|\Z))+")
_LIST = re.compile(rf"( {{0,3}}{_BULLET})(?:[ \t][^\n]+?)?(?:\n|\Z)")
_DEF = re.compile(rf" {{0,3}}\[(?!{_S}*\])(?:\\{_DOT}|[^\[\]\\])+\]:")
_TABLE = re.compile(_table(capture=True))
_TABLE_ROW = re.compile(_ROW)
_PARAGRAPH = re.compile(
    rf"[^\n]+(?:\n(?!{_HR}|{_HEADING_START}|{_QUOTE_START}|{_FENCE_START}|{_LIST_START}|{_table(capture=False)}"
    r"| +\n)[^\n]+)*"
)
# A paragraph's lines from one of its line starts on (the line end before it was matched already).
_PARAGRAPH_REST = re.compile(
    rf"(?!{_HR}|{_HEADING_START}|{_QUOTE_START}|{_FENCE_START}|{_LIST_START}|{_table(capture=False)}| +\n)"
    rf"[^\n]+(?:\n(?!{_HR}|{_HEADING_START}|{_QUOTE_START}|{_FENCE_START}|{_LIST_START}|{_table(capture=False)}"
    r"| +\n)[^\n]+)*"
)
_TEXT = re.compile(r"[^\n]+")
# The setext heading rule, in three parts: what may not start one, its underline, what ends its content.
_LHEADING_NOT = re.compile(rf"{_BULLET} | {{4}}| {{0,3}}(?:`{{3,}}|~{{3,}})| {{0,3}}>| {{0,3}}#{{1,6}}")
_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+) *$", re.MULTILINE)
_LHEADING_BREAK = re.compile(
    rf"^(?:{_S}*?\n|{_BULLET} | {{4}}| {{0,3}}(?:`{{3,}}|~{{3,}})| {{0,3}}>| {{0,3}}#{{1,6}})|^[^\n]*[\u2028\u2029]",
    re.MULTILINE,
)
_SEPARATORS = re.compile("[\u2028\u2029]")
_DOLLARS = re.compile(r"\$\$")
_TASK = re.compile(r"\[[ xX]\] +")
_TASK_TEST = re.compile(r"\[[ xX]\] ")
_LEADING_TAB = re.compile(r"^ *\t", re.MULTILINE)
_LEADING_TABS = re.compile(r"^\t+")
_ROWS_TAIL = re.compile(r"\n[ \t]*\Z")
_ALIGN_EDGES = re.compile(r"^\||\| *$")
_NOT_SPACE = re.compile(r"[^ ]")
_SPACES = re.compile(r" *")
_BACKTICKS = re.compile(r"`+")
_SPACE = re.compile(_S)
_URL_START = re.compile(r"://|www\.", re.IGNORECASE)
_DIGITS = frozenset("0123456789")

# What `_Lexer._lheading` says when text still to come could make a heading.
_OPEN = (-1, -1)

# Lists nested deeper than this hold no code here (marked has no limit; here the work stays linear).
MAX_DEPTH = 5
# An inline context with more backticks than this holds no code here (this bounds the work per streamed update).
MAX_BACKTICKS = 256


def _trim(text: str) -> str:
    return text.strip(_WS_CHARS)


def _first_not_space(text: str) -> int:
    """JavaScript's `text.search(/[^ ]/)`."""
    match = _NOT_SPACE.search(text)
    return match.start() if match else -1


def _js_slice_start(text: str, start: int) -> int:
    """Where JavaScript's `text.slice(start)` begins."""
    return min(start, len(text)) if start >= 0 else max(len(text) + start, 0)


def _or_end(pos: int | None, end: int) -> int:
    return end if pos is None else pos


def _skip_newlines(text: str, pos: int, end: int) -> int:
    while pos < end and text[pos] == "\n":
        pos += 1
    return pos


@dataclass(frozen=True)
class Pairing:
    """Where the pairing of an inline context's backticks stands at a line start where no run waits for a partner:
    whether nothing after is code (`poisoned`), how many backticks came before, which of `[*_~` came before."""

    poisoned: bool = False
    backticks: int = 0
    seen: str = ""


@dataclass(frozen=True)
class Resume:
    """How the top level goes on from a checkpoint: at a block boundary (`fresh`), inside a fenced block still open
    (`fence`: its opening marks), before a list's next item (`list`: its bullet, as a pattern), before a table's
    next row (`table`: its number of columns), or inside a paragraph (`para`: whether an underline to come would
    still make a heading of it, and its pairing)."""

    kind: Literal["fresh", "fence", "list", "table", "para"] = "fresh"
    data: str | int | tuple[bool, Pairing] = ""


FRESH = Resume()
_START = Pairing()


@dataclass(frozen=True)
class Checkpoint:
    """A line start where lexing the rest alone, from `resume`, gives what lexing the whole gives, whatever is
    appended to the text (the line it starts is whole). That holds as long as the text up to `horizon` is as it
    was: Gradio's `$$` pass can turn text before the end into a placeholder once a later `$$` pairs with one."""

    pos: int
    resume: Resume
    horizon: int = 0


class _View:
    """Text marked lexes on its own (a list item's text), with where each of its pieces sits in the page's view."""

    def __init__(self, text: str, starts: list[int], origins: list[int]) -> None:
        self.text = text
        self._starts = starts
        self._origins = origins

    def origin(self, pos: int) -> int:
        k = bisect_right(self._starts, pos) - 1
        return self._origins[k] + pos - self._starts[k]

    def add(self, out: list[int], start: int, end: int) -> None:
        """Append [start, end) of this view to `out` as flat (start, end) pairs of the page's view."""
        if len(self._starts) == 1:
            out += (self._origins[0] + start, self._origins[0] + end)
            return
        k = bisect_right(self._starts, start) - 1
        while start < end:
            stop = min(end, self._starts[k + 1] if k + 1 < len(self._starts) else len(self.text))
            if stop > start:
                origin = self._origins[k] + start - self._starts[k]
                out += (origin, origin + stop - start)
            start = stop
            k += 1


class _Forward:
    """The first match of a line pattern at or after a position, for positions that only grow."""

    def __init__(self, pattern: re.Pattern[str], text: str, end: int) -> None:
        self._pattern, self._text, self._end = pattern, text, end
        self._asked = -1
        self._found: int | None = None

    def at_or_after(self, pos: int) -> int | None:
        if self._asked < 0 or (self._found is not None and self._found < pos):
            match = self._pattern.search(self._text, pos, self._end)
            self._found = match.start() if match else None
            self._asked = pos
        return self._found


class _Unsure(Exception):
    """Raised where the view holds what `services.markdown` should have ruled out: then nothing is code."""


class _Lexer:
    def __init__(self, checkpoints: list[Checkpoint] | None) -> None:
        self.code: list[int] = []  # flat (start, end) pairs
        self.checkpoints = checkpoints
        self.top = True  # marked's lexer.state.top, one for all levels as in marked
        self.look = 0  # the furthest the top level's setext decisions looked ahead
        self.seen_up_to = 0  # how far the last setext decision looked ahead
        self.list_open = False  # whether the last list lexed ran to the end of its text

    def mark(
        self, checkpoints: list[Checkpoint] | None, text: str, pos: int, resume: Resume, further: int = -1
    ) -> None:
        """Append a checkpoint at `pos`: it relies on its own line, on what the setext decisions before it looked
        at, and on `further`."""
        if checkpoints is not None:
            line_end = text.find("\n", pos)
            horizon = max(self.look, further, len(text) if line_end < 0 else line_end)
            checkpoints.append(Checkpoint(pos, resume, horizon))

    def context(
        self,
        view: _View,
        pieces: list[tuple[int, int]],
        state: Pairing = _START,
        *,
        points: bool = False,
        final: int | None = None,
    ) -> list[tuple[int, Pairing, int]]:
        """An inline context (marked's paragraph, text, heading or cell), its pieces joined by line ends and
        starting from `state`: its spans become code. If asked, the line starts (of the view) where no run of
        backticks waits for a partner, with the pairing there and the furthest point that pairing relied on."""
        text = view.text
        if not points and len(pieces) == 1:  # the usual context: one piece, no checkpoints asked
            start, end = pieces[0]
            if not state.poisoned and text.count("`", start, end) < 2:
                return []
            for a, b in _spans(text[start:end], state)[0]:
                view.add(self.code, start + a, start + b)
            return []
        if not points and not state.poisoned and sum(text.count("`", a, b) for a, b in pieces) < 2:
            return []
        offsets = []
        offset = 0
        for a, b in pieces:
            offsets.append(offset)
            offset += b - a + 1
        joined = text[pieces[0][0] : pieces[0][1]] if len(pieces) == 1 else "\n".join(text[a:b] for a, b in pieces)
        at = None
        if final is not None:  # a position of the view, as an offset of the context
            k = max(bisect_right([a for a, _ in pieces], final) - 1, 0)
            at = offsets[k] + min(max(final - pieces[k][0], 0), pieces[k][1] - pieces[k][0] + 1)
        spans, clean, relied = _spans(joined, state, points=points, final=at)
        for a, b in spans:
            k = bisect_right(offsets, a) - 1  # spans lie within one line: within one piece
            start = pieces[k][0] + a - offsets[k]
            view.add(self.code, start, start + b - a)
        further = -1
        if relied >= 0:
            k = bisect_right(offsets, relied) - 1
            further = pieces[k][0] + relied - offsets[k]
        out = []
        for at, pairing in clean:
            k = bisect_right(offsets, at) - 1
            pos = pieces[k][0] + at - offsets[k]
            if at > offsets[k] and pos <= pieces[k][1]:  # a line start inside a piece: a real one
                out.append((pos, pairing, further if pairing.poisoned else -1))
        return out

    def blocks(
        self, view: _View, end: int, *, depth: int, pos: int = 0, resume: Resume = FRESH, top_level: bool = False
    ) -> None:
        """marked's blockTokens over view.text[pos:end]."""
        text = view.text
        checkpoints = self.checkpoints if top_level else None
        last: str | None = None  # the type of marked's last token in this list of tokens
        pending: list[tuple[int, int]] | None = None  # the last paragraph or text, while it may still grow
        state = _START  # the pairing the pending paragraph starts from
        heading_open = False  # an underline still to come would make a heading of the last paragraph
        underline = _Forward(_UNDERLINE, text, end)
        breaks = _Forward(_LHEADING_BREAK, text, end)
        dollars = _Forward(_DOLLARS, text, end)
        if resume.kind == "para":
            heading_open, state = resume.data  # type: ignore[misc]
            heading = self._lheading_rest(text, pos, end, underline, breaks) if heading_open else None
            if top_level:
                self.look = max(self.look, self.seen_up_to)
            if heading is not None and heading != _OPEN:
                if heading[0] > pos:
                    self.context(view, [(pos, heading[0])], state)
                pos, last, heading_open = heading[1], "heading", False
            else:
                heading_open = heading == _OPEN
                match = _PARAGRAPH_REST.match(text, pos, _or_end(dollars.at_or_after(pos), end))
                last, pending = "paragraph", []
                if match and match.end() > pos:
                    pending.append((pos, match.end()))
                    pos = match.end()
                elif (blank := _NEWLINE.match(text, pos, end)) and blank.end() > pos:
                    # The paragraph ended at the line end before: with this blank line, marked's space token
                    # was longer than that line end.
                    last, pending = "space", None
        if resume.kind == "fence":
            pos, last = self._fence_body(view, pos, end, str(resume.data), checkpoints), "code"
        elif resume.kind == "list":
            pos, last = self._list(view, pos, end, depth, str(resume.data), checkpoints), "list"
            if self.list_open:
                checkpoints = None
        elif resume.kind == "table":
            pos, last = self._table_rows(view, pos, end, int(str(resume.data)), checkpoints), "table"
        while pos < end:
            head = text[pos : pos + 4]
            first = head.lstrip(" ")[:1]
            if heading_open and last != "paragraph":
                # The paragraph that an underline to come could make a heading of, and all after it, has ended.
                checkpoints = None
            if (
                checkpoints is not None
                and last not in ("paragraph", "text")
                and (pos == 0 or text[pos - 1] == "\n")
                and text.find("\n", pos, end) >= 0
            ):
                self.mark(checkpoints, text, pos, FRESH)
            if head[0] in " \n":
                match = _NEWLINE.match(text, pos, end)
                if match and match.end() > pos:
                    if match.end() - pos > 1 or last is None:
                        last = "space"
                        self._flush(view, pending, state, checkpoints, heading_open)
                        pending = None
                    pos = match.end()
                    continue
                if head == "    ":
                    match = _CODE.match(text, pos, end)
                    if match:
                        if pending is not None:  # an indented code block does not interrupt a paragraph
                            pending.append((pos, pos + len(text[pos : match.end()].rstrip("\n"))))
                        else:
                            view.add(self.code, pos, match.end())
                            last = "code"
                        pos = match.end()
                        continue
            if first in ("`", "~"):
                match = _FENCES.match(text, pos, end)
                if match:
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending = None
                    body = match.start("body") if match.group("body") is not None else -1
                    if match.group("close") is None:  # open to the end: what follows may yet close it
                        if body >= 0:
                            view.add(self.code, body, end)
                            if checkpoints is not None:
                                line = max(text.rfind("\n", body, end) + 1, body)
                                self.mark(checkpoints, text, line, Resume("fence", match.group(1)))
                    elif body >= 0:
                        view.add(self.code, body, match.end("body"))
                    last = "code"
                    pos = match.end()
                    continue
            elif first == "#":
                match = _HEADING.match(text, pos, end)
                if match:
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending = None
                    self._heading(view, match)
                    last = "heading"
                    pos = match.end()
                    continue
            elif first == ">":
                match = _BLOCKQUOTE.match(text, pos, end)
                if match:  # holds no code here
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending = None
                    last = "blockquote"
                    pos = match.end()
                    continue
            elif first == "[" and _DEF.match(text, pos, end):
                raise _Unsure
            if first in ("-", "_", "*"):
                match = _HR_RULE.match(text, pos, end)
                if match:
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending = None
                    last = "hr"
                    pos = match.end()
                    continue
            if (first in ("*", "+", "-") or first in _DIGITS) and _LIST.match(text, pos, end):
                self._flush(view, pending, state, checkpoints, heading_open)
                pending = None
                pos = self._list(view, pos, end, depth, None, checkpoints)
                last = "list"
                if self.list_open:
                    # It ran to the end, which it does not hold (marked trims its trailing whitespace): text
                    # appended may carry it on over what comes after it here.
                    checkpoints = None
                continue
            line_end = text.find("\n", pos, end)
            next_end = text.find("\n", line_end + 1, end) if line_end >= 0 else -1
            if line_end >= 0 and text.find("-", line_end, end if next_end < 0 else next_end) >= 0:
                match = _TABLE.match(text, pos, end)
                columns = _columns(text, match) if match else None
                if match and columns is not None:
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending = None
                    self._table(view, match, columns, checkpoints)
                    last = "table"
                    pos = match.end()
                    continue
            heading = self._lheading(text, pos, end, line_end, underline, breaks)
            if top_level:
                self.look = max(self.look, self.seen_up_to)
            opens = heading == _OPEN  # an underline still to come would make a heading of all from here
            if opens:
                heading = None
            if heading is not None:
                self._flush(view, pending, state, checkpoints, heading_open)
                pending = None
                self.context(view, [(pos, heading[0])])
                last = "heading"
                pos = heading[1]
                continue
            if self.top:
                # Gradio's latex extension says a block may start at the next `$$`: marked cuts the paragraph there.
                dollar = dollars.at_or_after(pos + 1)
                cut = dollar if dollar is not None else end
                match = _PARAGRAPH.match(text, pos, cut)
                assert match is not None  # text[pos] is not a line end: the space rule took those
                if not (last == "paragraph" and pending is not None):
                    self._flush(view, pending, state, checkpoints, heading_open)
                    pending, state, heading_open = [], _START, opens
                # else marked joins this paragraph to the one just before it (with a line end), always after a
                # cut, otherwise when a `$$` comes anywhere after that one's start: text still to come decides.
                # Read joined, it holds fewer spans than apart (its pairing is the same up to a run that pairs
                # across the join, and it sees more of `[*_~` before), so joined it is read.
                pending.append((pos, match.end()))
                last = "paragraph"
                pos = match.end()
                continue
            match = _TEXT.match(text, pos, end)
            assert match is not None
            if last != "text" or pending is None:
                self._flush(view, pending, state, checkpoints, heading_open)
                pending, state = [], _START
            pending.append((pos, match.end()))
            last = "text"
            pos = match.end()
        self._flush(view, pending, state, checkpoints, heading_open)
        self.top = True

    def _flush(
        self,
        view: _View,
        pending: list[tuple[int, int]] | None,
        state: Pairing,
        checkpoints: list[Checkpoint] | None,
        heading_open: bool,
    ) -> None:
        """The pending paragraph or text is complete: its spans; and at the top level, checkpoints at its whole
        lines where no run waits for a partner."""
        if not pending:
            return
        text = view.text
        # A line is surely the paragraph's once the line after it is whole (marked looks one line ahead): all
        # lines before the last whole one.
        end_of_whole = len(text) - 1 if text.endswith("\n") else text.rfind("\n")
        final = text.rfind("\n", 0, end_of_whole) + 1 if end_of_whole >= 0 else 0
        for pos, pairing, further in self.context(view, pending, state, points=checkpoints is not None, final=final):
            if text.find("\n", pos) >= 0:
                self.mark(checkpoints, text, pos, Resume("para", (heading_open, pairing)), further)

    def _lheading(
        self, text: str, pos: int, end: int, line_end: int, underline: _Forward, breaks: _Forward
    ) -> tuple[int, int] | None:
        """marked's setext heading at `pos`: (end of its content, end of its raw text); None; or `_OPEN` when
        there is none yet but nothing ends its content before the end of the text."""
        self.seen_up_to = 0
        if _LHEADING_NOT.match(text, pos, end) or (line_end >= 0 and _SEPARATORS.search(text, pos, line_end)):
            return None
        if line_end < 0:
            return _OPEN
        return self._lheading_from(text, line_end + 1, end, underline, breaks)

    def _lheading_from(
        self, text: str, pos: int, end: int, underline: _Forward, breaks: _Forward
    ) -> tuple[int, int] | None:
        """Whether lines from `pos` on end a setext heading's content (see `_lheading`)."""
        under = underline.at_or_after(pos)
        stop = breaks.at_or_after(pos)
        self.seen_up_to = 0
        if under is None and stop is None:
            return _OPEN
        for seen in (under, stop):  # what the decision relied on: those lines, whole
            if seen is not None:
                line_end = text.find("\n", seen, end)
                self.seen_up_to = max(self.seen_up_to, end if line_end < 0 else line_end)
        if under is None or (stop is not None and stop < under):
            return None
        under_end = text.find("\n", under, end)
        return under - 1, (end if under_end < 0 else _skip_newlines(text, under_end, end))

    def _lheading_rest(
        self, text: str, pos: int, end: int, underline: _Forward, breaks: _Forward
    ) -> tuple[int, int] | None:
        """For a paragraph resumed at `pos` (a line start) that an underline could still make a heading: where
        that heading's content and raw text end, None, or `_OPEN`."""
        return self._lheading_from(text, pos, end, underline, breaks)

    def _heading(self, view: _View, match: re.Match[str]) -> None:
        start, end = match.span(2)
        inner = view.text[start:end]
        start += len(inner) - len(inner.lstrip(_WS_CHARS))
        content = _trim(inner)
        if content.endswith("#"):
            trimmed = content.rstrip("#")
            if not trimmed or trimmed.endswith(" "):
                content = _trim(trimmed)
        if content:
            self.context(view, [(start, start + len(content))])

    def _fence_body(self, view: _View, pos: int, end: int, marks: str, checkpoints: list[Checkpoint] | None) -> int:
        """The rest of a fenced block still open at `pos` (a line start in its body): code to its closing line."""
        text = view.text
        closing = _closing(marks).search(text, pos, end)
        view.add(self.code, pos, closing.start() if closing else end)
        if closing:
            return closing.end()
        if checkpoints is not None:
            self.mark(checkpoints, text, max(text.rfind("\n", pos, end) + 1, pos), Resume("fence", marks))
        return end

    def _table(self, view: _View, match: re.Match[str], columns: int, checkpoints: list[Checkpoint] | None) -> None:
        """A table marked's table rule took: its cells, each an inline context."""
        for cell in _cells(view.text, *match.span("header")):
            self.context(view, [cell])
        if match.group("rows") is not None:
            self._rows(view, *match.span("rows"), columns, match.end(), checkpoints)

    def _table_rows(self, view: _View, pos: int, end: int, columns: int, checkpoints: list[Checkpoint] | None) -> int:
        """A table's rows from `pos` (a row's start) on, as marked's table rule takes them."""
        text = view.text
        stop = pos
        while stop < end:
            row = _TABLE_ROW.match(text, stop, end)
            if not row or row.end() == stop:
                break
            stop = row.end()
        table_end = _skip_newlines(text, stop, end)
        self._rows(view, pos, stop, columns, table_end, checkpoints)
        return table_end

    def _rows(
        self, view: _View, start: int, end: int, columns: int, table_end: int, checkpoints: list[Checkpoint] | None
    ) -> None:
        text = view.text
        if not _trim(text[start:end]):
            return
        tail = _ROWS_TAIL.search(text, start, end)  # marked: rows.replace(/\n[ \t]*$/, "")
        if tail:
            end = tail.start()
        pos = start
        while True:
            line_end = text.find("\n", pos, end)
            if checkpoints is not None and text.find("\n", pos, table_end) >= 0:
                self.mark(checkpoints, text, pos, Resume("table", columns))
            for cell in _cells(text, pos, end if line_end < 0 else line_end, count=columns):
                self.context(view, [cell])
            if line_end < 0:
                break
            pos = line_end + 1

    def _list(
        self, view: _View, pos: int, end: int, depth: int, bullet: str | None, checkpoints: list[Checkpoint] | None
    ) -> int:
        """marked's list rule at `pos` (or its items from `pos` on, given its bullet); returns the list's end."""
        text = view.text
        list_start = pos
        if bullet is None:
            start = _LIST.match(text, pos, end)
            assert start is not None
            marker = _trim(start.group(1))
            bullet = rf"[0-9]{{1,9}}\{marker[-1]}" if len(marker) > 1 else "\\" + marker
        item_re = _item_pattern(bullet)
        items: list[tuple[list[tuple[int, int]], bool]] = []
        while pos < end:
            cap = item_re.match(text, pos, end)
            if not cap or _HR_RULE.match(text, pos, end):
                break
            if checkpoints is not None and pos > list_start and text.find("\n", pos, end) >= 0:
                self.mark(checkpoints, text, pos, Resume("list", bullet))
            after = cap.group(2)
            first_line = after.split("\n", 1)[0]
            tabbed = first_line.startswith("\t")
            line = _LEADING_TABS.sub(lambda tabs: "   " * len(tabs.group()), first_line)
            pos = cap.end()
            next_end = text.find("\n", pos, end)
            next_line = text[pos : end if next_end < 0 else next_end]
            indent = _first_not_space(after)
            indent = 1 if indent > 4 else indent
            pieces = [(cap.start(2) + _js_slice_start(first_line, indent), cap.start(2) + len(first_line))]
            indent += len(cap.group(1))
            blank = False
            if not line and _SPACES.fullmatch(next_line):
                pos = min(end, pos + len(next_line) + 1)
            else:
                fences, heading, next_bullet, rule = _item_breaks(min(3, indent - 1))
                while pos < end:
                    line_end = text.find("\n", pos, end)
                    raw_line = text[pos : end if line_end < 0 else line_end]
                    if (
                        fences.match(raw_line)
                        or heading.match(raw_line)
                        or next_bullet.match(raw_line)
                        or rule.match(text, pos, end)
                    ):
                        break
                    if _first_not_space(raw_line) >= indent or not _trim(raw_line):
                        pieces.append((pos + _js_slice_start(raw_line, indent), pos + len(raw_line)))
                    else:
                        if (
                            blank
                            or _first_not_space(line) >= 4
                            or fences.match(line)
                            or heading.match(line)
                            or rule.match(line)
                        ):
                            break
                        pieces.append((pos, pos + len(raw_line)))
                    if not blank and not _trim(raw_line):
                        blank = True
                    pos = end if line_end < 0 else line_end + 1
                    line = raw_line[indent:]
            items.append((pieces, tabbed))
        open_to_end = pos >= end
        for index, (pieces, tabbed) in enumerate(items):
            self._item(view, pieces, tabbed, depth, last=index == len(items) - 1)
        self.list_open = open_to_end
        # marked's list.raw.trimEnd(): the list ends at its last character that is not whitespace
        return list_start + len(text[list_start:pos].rstrip(_WS_CHARS))

    def _item(self, view: _View, pieces: list[tuple[int, int]], tabbed: bool, depth: int, *, last: bool) -> None:
        """A list item's text (its lines less their indent), lexed as marked does, with `top` off."""
        text = view.text
        if last:  # marked: itemContents.trimEnd()
            while pieces:
                start, end = pieces[-1]
                kept = len(text[start:end].rstrip(_WS_CHARS))
                if kept:
                    pieces[-1] = (start, start + kept)
                    break
                pieces.pop()
        if not pieces:
            return
        start, end = pieces[0]
        if _TASK_TEST.match(text, start, end):
            task = _TASK.match(text, start, end)
            assert task is not None
            pieces[0] = (task.end(), end)
        item_text = "\n".join(text[a:b] for a, b in pieces)
        if tabbed or depth >= MAX_DEPTH or _LEADING_TAB.search(item_text):
            return  # marked would lex it after expanding tabs, or it is too deep: no code here
        starts, origins = [], []
        offset = 0
        for a, b in pieces:
            starts.append(offset)
            origins.append(view.origin(a))
            offset += b - a + 1
        self.top = False
        self.blocks(_View(item_text, starts, origins), len(item_text), depth=depth + 1)


_CLOSINGS: dict[str, re.Pattern[str]] = {}
_ITEMS: dict[str, re.Pattern[str]] = {}
_BREAKS: dict[int, tuple[re.Pattern[str], ...]] = {}


def _closing(marks: str) -> re.Pattern[str]:
    """A fenced block's closing line, for its opening marks."""
    if marks not in _CLOSINGS:
        _CLOSINGS[marks] = re.compile(rf"^ {{0,3}}{re.escape(marks)}[~`]* *$", re.MULTILINE)
    return _CLOSINGS[marks]


def _item_pattern(bullet: str) -> re.Pattern[str]:
    """marked's list item start, for a list's bullet."""
    if bullet not in _ITEMS:
        _ITEMS[bullet] = re.compile(rf"( {{0,3}}{bullet})((?:[\t ][^\n]*)?(?:\n|\Z))")
    return _ITEMS[bullet]


def _item_breaks(limit: int) -> tuple[re.Pattern[str], ...]:
    """What ends a list item: a fence, a heading, another bullet, a rule, indented by at most `limit`."""
    if limit not in _BREAKS:
        # JavaScript reads ` {0,-1}` as literal text (Annex B).
        indent = rf" {{0,{limit}}}" if limit >= 0 else r" \{0,-1\}"
        _BREAKS[limit] = (
            re.compile(rf"{indent}(?:```|~~~)"),
            re.compile(rf"{indent}#"),
            re.compile(rf"{indent}(?:[*+-]|[0-9]{{1,9}}[.)])(?:(?:[ \t][^\n]*)?(?:\n|\Z))"),
            re.compile(rf"{indent}(?:(?:- *){{3,}}|(?:_ *){{3,}}|(?:\* *){{3,}})(?:\n+|\Z)"),
        )
    return _BREAKS[limit]


def _columns(text: str, match: re.Match[str]) -> int | None:
    """The number of columns of what marked's table pattern matched, if marked's table rule takes it."""
    align = match.group("align")
    if "|" not in align and ":" not in align:
        return None
    columns = len(_ALIGN_EDGES.sub("", align).split("|"))
    return columns if len(_cells(text, *match.span("header"), keep_empty=True)) == columns else None


def _cells(
    text: str, start: int, end: int, count: int | None = None, *, keep_empty: bool = False
) -> list[tuple[int, int]]:
    """marked's splitCells over text[start:end]: each cell's range, trimmed; cells past `count` dropped, and
    empty ones left out unless `keep_empty` (to count them)."""
    cells: list[tuple[int, int]] = []
    cell_start = start
    if text.find("\\", start, end) < 0:  # no escaped pipe: every pipe splits
        for part in text[start:end].split("|"):
            cells.append((cell_start, cell_start + len(part)))
            cell_start += len(part) + 1
    else:
        pos = text.find("|", start, end)
        while pos >= 0:
            back = pos
            while back > start and text[back - 1] == "\\":
                back -= 1
            if (pos - back) % 2 == 0:
                cells.append((cell_start, pos))
                cell_start = pos + 1
            pos = text.find("|", pos + 1, end)
        cells.append((cell_start, end))
    if not _trim(text[cells[0][0] : cells[0][1]]):
        cells.pop(0)
    if cells and not _trim(text[cells[-1][0] : cells[-1][1]]):
        cells.pop()
    if count is not None:
        cells = cells[:count]
    out = []
    for a, b in cells:
        inner = text[a:b]
        stripped = inner.lstrip(_WS_CHARS)
        kept = len(stripped.rstrip(_WS_CHARS))
        if kept or keep_empty:
            a += len(inner) - len(stripped)
            out.append((a, a + kept))
    return out


def _spans(
    context: str, state: Pairing = _START, *, points: bool = False, final: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, Pairing]], int]:
    """The code spans of one inline context (their content, without backticks) that marked surely reads as code
    spans, the context starting from `state`: no other inline rule of marked can end inside them (a link at `]` or
    `)`, emphasis at `*` or `_`, a strikethrough at `~`, a url at a space, the text rule past a `~`). Past the
    first such doubt nothing is code, nor past the `MAX_BACKTICKS`th backtick. If asked, the line starts of the
    context before any run that waits for a partner, with the pairing there; a run also waits when what decides
    its pairing lies at or past `final` (where the context's lines may yet change). And where the run that ended
    the spans (past which nothing is code) was decided, or -1."""
    final = len(context) if final is None else final
    if state.poisoned:
        return [], _line_starts(context, 0, len(context), state) if points else [], -1
    if not points and context.count("`") == 2 and state.backticks + 2 <= MAX_BACKTICKS:
        return _one_span(context, state), [], -1
    budget = MAX_BACKTICKS - state.backticks
    runs: list[tuple[int, int]] = []
    total = 0
    over = len(context)  # where the runs past the budget start: a run may pair with one of them
    for match in _BACKTICKS.finditer(context):
        total += match.end() - match.start()
        if total > budget:
            over = match.start()
            break
        runs.append(match.span())
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(index)
    cursor = dict.fromkeys(by_length, 0)
    first: dict[str, int] = {}
    spans: list[tuple[int, int]] = []
    scanned = 0
    last_space = -1
    url = -1
    index = 0
    waiting = len(context)  # the first run that waits for a partner
    poisoned_at = len(context)
    relied = -1  # where what ended the spans was decided
    while index < len(runs):
        start, end = runs[index]
        back = start
        while back > 0 and context[back - 1] == "\\":
            back -= 1
        if (start - back) % 2:  # its first backtick is escaped: the run opens one later
            start += 1
        closers = by_length.get(end - start, [])
        k = cursor.get(end - start, 0)
        while k < len(closers) and closers[k] <= index:
            k += 1
        if closers:
            cursor[end - start] = k
        if end == start or k == len(closers):
            if end > start:
                if over < len(context):  # its partner may be past the budget
                    if over < final:
                        poisoned_at, relied = start, over
                    else:
                        waiting = min(waiting, start)
                    break
                waiting = min(waiting, start)
            index += 1
            continue
        close = closers[k]
        # The url rule runs from a `://` or `www.` to the next whitespace, over backticks.
        space = _last_space(context, scanned, start)
        if space >= 0:
            last_space = space
        for match in _URL_START.finditer(context, max(scanned - 3, 0), start):
            url = match.start()
        scanned = start
        if url > last_space or _hazard(context, start, end, runs[close][0], state, first):
            # marked may end a token inside: what follows may pair otherwise. (Unless a run at the very end,
            # which may yet grow, closes it: then it is only waiting.)
            if runs[close][1] == len(context) or runs[close][0] >= final:
                waiting = min(waiting, start)
            else:
                poisoned_at, relied = start, runs[close][0]
            break
        spans.append((end, runs[close][0]))
        index = close + 1
    if over < final:
        if over < poisoned_at:
            poisoned_at, relied = over, over
    else:
        waiting = min(waiting, over)
    if not points:
        return spans, [], relied
    clean = _line_starts(context, 0, min(waiting, poisoned_at), state)
    if poisoned_at <= waiting:
        clean += _line_starts(context, poisoned_at, waiting, Pairing(poisoned=True))
    return spans, clean, relied


def _hazard(context: str, start: int, end: int, close: int, state: Pairing, first: dict[str, int]) -> bool:
    """Whether another inline rule of marked could end inside the span from `start` (its opening run ends at
    `end`, its closing one starts at `close`): a line end, or a `~`, `\\` or escaped backtick before it, or in it
    a `]` or `)` after a `[`, a `*` or `_` after one of those, a `~` after one. (`first`: a cache of where those
    first occur.)"""
    inner = context[end:close]
    if "\n" in inner or (start > 0 and context[start - 1] in "~\\`"):
        return True
    if ("]" in inner or ")" in inner) and _before(context, "[", start, state, first):
        return True
    if ("*" in inner or "_" in inner) and (
        _before(context, "*", start, state, first) or _before(context, "_", start, state, first)
    ):
        return True
    return "~" in inner and _before(context, "~", start, state, first)


def _before(context: str, char: str, pos: int, state: Pairing, first: dict[str, int]) -> bool:
    """Whether `char` occurs before `pos` in the context, or before the context."""
    if char in state.seen:
        return True
    if char not in first:
        first[char] = context.find(char)
    return 0 <= first[char] < pos


def _one_span(context: str, state: Pairing) -> list[tuple[int, int]]:
    """`_spans` of a context with exactly two backticks."""
    start = context.find("`")
    close = context.find("`", start + 1)
    back = start
    while back > 0 and context[back - 1] == "\\":
        back -= 1
    if close == start + 1 or (start - back) % 2:  # one run of two, or an escaped opening: no span
        return []
    space = _last_space(context, 0, start)
    if _URL_START.search(context, space + 1, start) or _hazard(context, start, start + 1, close, state, {}):
        return []
    return [(start + 1, close)]


def _line_starts(context: str, start: int, end: int, state: Pairing) -> list[tuple[int, Pairing]]:
    """The line starts in context[start:end] (past its first character), each with the pairing there: `state`
    carried on over what comes before it."""
    out: list[tuple[int, Pairing]] = []
    pos = context.find("\n", start, end)
    if state.poisoned:
        while pos >= 0:
            out.append((pos + 1, state))
            pos = context.find("\n", pos + 1, end)
        return out
    first = {char: context.find(char) for char in "[*_~" if char not in state.seen}
    counted = 0
    backticks = state.backticks
    while pos >= 0:
        backticks += context.count("`", counted, pos + 1)
        counted = pos + 1
        seen = state.seen + "".join(char for char, at in first.items() if 0 <= at <= pos)
        out.append((pos + 1, Pairing(False, backticks, seen)))
        pos = context.find("\n", pos + 1, end)
    return out


def _last_space(text: str, start: int, end: int) -> int:
    """The position of the last JavaScript whitespace in text[start:end], or -1."""
    match = _SPACE.search(text[start:end][::-1])
    return end - 1 - match.start() if match else -1


def analyze(view: str, *, resume: Resume = FRESH, checkpoints: bool = False) -> tuple[list[int], list[Checkpoint]]:
    """The ranges of `view` that marked renders as code, as flat (start, end) pairs (not sorted, may overlap); and
    if asked, the checkpoints of the top level, in order."""
    lexer = _Lexer([] if checkpoints else None)
    try:
        lexer.blocks(_View(view, [0], [0]), len(view), depth=0, resume=resume, top_level=True)
    except _Unsure:
        return [], []
    found = sorted(lexer.checkpoints or [], key=lambda checkpoint: checkpoint.pos)
    return lexer.code, found
