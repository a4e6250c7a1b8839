"""Documents made into text the model reads: text files decoded by their bytes, PDFs read page by page with pypdf,
both bounded in characters (and pages), with a notice of what was left out."""

from __future__ import annotations

import codecs
import io
import re
import time
from collections.abc import Iterator
from typing import Any

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from services.attachments.parts import DocumentPart, Limits
from services.errors import AttachmentError
from services.text import clean

__all__ = ["is_pdf", "read_pdf", "read_text"]

# The PDF header may follow up to 1 KB of junk, and readers (pypdf among them) accept that.
_PDF_HEAD = 1024
_PDF_HEADER = re.compile(rb"(?:\A|[\r\n])%PDF-")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\f\v]{2,}")
# Page attributes a page takes from the /Pages nodes above it when it has none of its own.
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")
_MAX_TREE_DEPTH = 100


def is_pdf(head: bytes) -> bool:
    """A PDF header at the start of a line of the first KB: text that merely mentions "%PDF-" stays text."""
    return _PDF_HEADER.search(head[:_PDF_HEAD]) is not None


def read_text(data: bytes, *, name: str, limits: Limits) -> DocumentPart:
    """A text file, decided by its bytes: UTF-8, or UTF-8 or UTF-16 with a byte-order mark. Anything else (a
    binary file, another encoding) is refused with a sentence; the text is cut at `limits.max_document_chars`."""
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
        if b"\x00" in data:
            raise _binary(name)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise AttachmentError(
            name,
            f"{name} is not UTF-8 text (nor UTF-16 with a byte-order mark): save it as UTF-8 and attach it "
            "again, or attach a PDF.",
        ) from None
    if "\x00" in text:
        raise _binary(name)
    text = clean(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise AttachmentError(name, f"{name} is empty: attach a file with some text in it.")
    text, notice = _bounded(text, limits)
    return DocumentPart(name=name, kind="text", text=text, notice=notice)


def read_pdf(data: bytes, *, name: str, limits: Limits) -> DocumentPart:
    """A PDF's text, page by page: at most `limits.max_pdf_pages` pages, no page after the first begun past
    `limits.soft_seconds`, and no more once `limits.max_document_chars` are read. The caller bounds the time of
    a single page (a process it can stop); this keeps an honest long PDF from reaching that bound."""
    try:
        return _read_pdf(data, name=name, limits=limits)
    except AttachmentError:
        raise
    except (LimitReachedError, MemoryError, RecursionError):
        raise AttachmentError(
            name, f"{name} is too complex a PDF to read here: print it to a new PDF, or attach the pages you need."
        ) from None
    except Exception:
        # pypdf reports damaged or hostile data with many types (PdfReadError, ValueError, KeyError, ...).
        raise AttachmentError(
            name, f"{name} could not be read as a PDF; it may be damaged: print it to a new PDF and attach that."
        ) from None


def _read_pdf(data: bytes, *, name: str, limits: Limits) -> DocumentPart:
    deadline = time.monotonic() + limits.soft_seconds
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        _decrypt(reader, name)
    pages: list[str] = []
    chars = 0
    more = timed_out = False
    for page in _pages(reader, limit=limits.max_pdf_pages + 1):
        if len(pages) == limits.max_pdf_pages or chars > limits.max_document_chars:
            more = True
            break
        if pages and time.monotonic() > deadline:
            more = timed_out = True
            break
        text = page.extract_text() or ""
        pages.append(text)
        chars += len(text)
    text = _tidy("\n\n".join(pages))
    if not text:
        where = f"in its first {len(pages)} pages" if more else "in it"
        raise AttachmentError(
            name,
            f"{name} has no text {where} (a scan is pictures of text): attach the pages as images, or a PDF "
            "with text in it.",
        )
    text, cut = _bounded(text, limits)
    total = _page_count(reader, read=len(pages), more=more)
    of_total = f" of {total:,}" if total else ""
    notices = []
    if timed_out:
        notices.append(f"Reading stopped after its first {len(pages)}{of_total} pages: the rest took too long.")
    elif more and not cut:
        notices.append(f"Only its first {len(pages)}{of_total} pages were read.")
    if cut:
        notices.append(cut)
    return DocumentPart(
        name=name,
        kind="pdf",
        text=text,
        notice=" ".join(notices),
        pages_read=len(pages),
        pages_total=total,
    )


def _pages(reader: PdfReader, *, limit: int) -> Iterator[PageObject]:
    """The document's first `limit` pages, in order, found by walking its page tree only as far as needed.

    `reader.pages` lists every page before the first one is read: seconds for the tens of thousands of empty
    pages a small hostile file can hold. Each /Pages node is entered once (no cycle, no tree made exponential by
    shared nodes), at most _MAX_TREE_DEPTH deep; inherited attributes (resources, boxes, rotation) are applied as
    pypdf's own walk applies them.
    """
    root = reader.root_object.get("/Pages")
    stack: list[tuple[Iterator[Any], dict[str, Any]]] = [(iter([root]), {})]
    entered: set[int] = set()
    found = 0
    while stack and found < limit:
        kids, inherited = stack[-1]
        kid = next(kids, None)
        if kid is None:
            stack.pop()
            continue
        node = kid.get_object() if isinstance(kid, IndirectObject) else kid
        if not isinstance(node, DictionaryObject) or not node:
            continue
        if node.get("/Type") == "/Pages" or ("/Type" not in node and "/Kids" in node):
            if id(node) in entered or len(stack) > _MAX_TREE_DEPTH:
                continue
            entered.add(id(node))
            below = {**inherited, **{key: node[key] for key in _INHERITED if key in node}}
            children = node.get("/Kids")
            children = children.get_object() if isinstance(children, IndirectObject) else children
            if isinstance(children, ArrayObject):
                stack.append((iter(children), below))
            continue
        page = PageObject(reader, kid if isinstance(kid, IndirectObject) else None)
        if not isinstance(kid, IndirectObject):
            page.update(node)
        for key, value in inherited.items():
            page.setdefault(NameObject(key), value)
        found += 1
        yield page


def _page_count(reader: PdfReader, *, read: int, more: bool) -> int | None:
    """How many pages the document has: `read` when it was read to the end, else what its page tree says of
    itself, when that is believable (more than were read), else unknown."""
    if not more:
        return read
    try:
        pages = reader.root_object["/Pages"].get_object()
        count = pages.get("/Count") if isinstance(pages, DictionaryObject) else None
    except Exception:
        return None
    return count if isinstance(count, int) and count > read else None


def _decrypt(reader: PdfReader, name: str) -> None:
    """Many PDFs are encrypted with an empty password (they only restrict printing or copying): those are read."""
    try:
        opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:
        opened = False
    if not opened:
        raise AttachmentError(
            name,
            f"{name} is protected by a password: save a copy without it (print it to a new PDF) and attach that.",
        )


def _bounded(text: str, limits: Limits) -> tuple[str, str]:
    """The text cut at `max_document_chars`, and the notice that says so (empty when nothing was cut)."""
    if len(text) <= limits.max_document_chars:
        return text, ""
    return text[: limits.max_document_chars], f"Only its first {limits.max_document_chars:,} characters were read."


def _tidy(text: str) -> str:
    """Extracted text without what layout leaves behind: trailing spaces, runs of spaces, runs of blank lines.
    Every step is linear (a line split, and single-class patterns that cannot backtrack)."""
    lines = "\n".join(line.rstrip() for line in clean(text).split("\n"))
    return _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", lines)).strip()


def _binary(name: str) -> AttachmentError:
    return AttachmentError(
        name,
        f"{name} is not a text file: attach text (plain text, Markdown, code, CSV, JSON), a PDF or an image.",
    )
