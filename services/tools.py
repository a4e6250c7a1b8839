"""The small text tools and the greeting: pure functions, each checked against the configured size limit."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from services.errors import ValidationError
from services.text import clean

__all__ = [
    "TOOLS",
    "TextStats",
    "TextTool",
    "count",
    "greet",
    "increment",
    "lower",
    "reverse",
    "slugify",
    "title",
    "upper",
]

MAX_NAME_CHARS = 200


def _text(field: str, value: object, *, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"expected text, got {type(value).__name__}.")
    if len(value) > max_chars:
        raise ValidationError(field, f"is {len(value):,} characters; at most {max_chars:,} are allowed.")
    return clean(value)


def greet(name: object) -> str:
    """'Hello, {name}!' for a non-empty name (surrounding spaces trimmed)."""
    clean = _text("name", name, max_chars=MAX_NAME_CHARS).strip()
    if not clean:
        raise ValidationError("name", "is empty: type a name to greet.")
    return f"Hello, {clean}!"


def reverse(text: object, *, max_chars: int) -> str:
    """The text backwards by grapheme-ish unit: combining marks stay on their base character."""
    value = _text("text", text, max_chars=max_chars)
    # Reversing code points would move an accent (e + U+0301) onto the neighbouring letter; keep clusters.
    return "".join(reversed(_clusters(value)))


def _clusters(value: str) -> list[str]:
    """Split into base characters, each with the combining marks that follow it."""
    clusters: list[str] = []
    for char in value:
        if clusters and unicodedata.combining(char):
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters


def upper(text: object, *, max_chars: int) -> str:
    return _text("text", text, max_chars=max_chars).upper()


def lower(text: object, *, max_chars: int) -> str:
    return _text("text", text, max_chars=max_chars).lower()


def title(text: object, *, max_chars: int) -> str:
    """Title Case that leaves apostrophes alone ("don't" -> "Don't", where str.title gives "Don'T")."""
    value = _text("text", text, max_chars=max_chars)
    return re.sub(r"[^\W_]+(?:['\u2019][^\W_]+)*", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), value)


def slugify(text: object, *, max_chars: int) -> str:
    """A lowercase ASCII slug for URLs and file names: 'Héllo, World!' -> 'hello-world'."""
    value = _text("text", text, max_chars=max_chars)
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass(frozen=True)
class TextStats:
    characters: int
    words: int
    lines: int


def count(text: object, *, max_chars: int) -> TextStats:
    """Characters, whitespace-separated words, and lines (an empty text has 0 lines; a final newline adds none)."""
    value = _text("text", text, max_chars=max_chars)
    return TextStats(characters=len(value), words=len(value.split()), lines=len(value.splitlines()))


def increment(count_so_far: object) -> int:
    """The next value of a per-session counter; anything that is not a count restarts it."""
    if isinstance(count_so_far, bool) or not isinstance(count_so_far, int) or count_so_far < 0:
        return 1
    return count_so_far + 1


@dataclass(frozen=True)
class TextTool:
    """A text tool as the page shows it and an API caller reads of it: its endpoint's name, its button's label,
    what it does and returns (the endpoint's docstring, which MCP agents read), and the function."""

    name: str
    label: str
    does: str
    returns: str
    run: Callable[..., str]


# In the order the page shows them.
TOOLS: tuple[TextTool, ...] = (
    TextTool("reverse", "Reverse", "Reverse a text, keeping accents on their letters.", "The text backwards.", reverse),
    TextTool("upper", "UPPERCASE", "Convert a text to UPPERCASE.", "The text in upper case.", upper),
    TextTool("lower", "lowercase", "Convert a text to lowercase.", "The text in lower case.", lower),
    TextTool(
        "title",
        "Title Case",
        """Convert a text to Title Case, leaving apostrophes alone ("don't" stays "Don't").""",
        "The text with each word capitalised.",
        title,
    ),
    TextTool(
        "slugify",
        "slugify",
        'Make a lowercase ASCII slug for URLs and file names: "Héllo, World!" gives "hello-world".',
        "The slug: lowercase letters, digits and hyphens.",
        slugify,
    ),
)
