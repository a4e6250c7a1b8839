"""Markdown built to make a parser work superlinearly: the shapes of issue #19's table and the classic ones.

Each shape is a function of a size in characters. Each text holds a `<`, so that `safe_markdown` does its whole
work (text without `<` or `!` is returned as it is). Used by tests/test_markdown.py (3 KB to 300 KB) and
bench/markdown.py (1 MB).
"""

from __future__ import annotations

from collections.abc import Callable


def _ladder(size: int) -> str:
    """Runs of 1, 2, 3... backticks, each followed by a tag: quadratic for a code span regex."""
    parts: list[str] = []
    length, count = 0, 1
    while length < size:
        parts.append("`" * count + "<a>")
        length += count + 3
        count = count % 400 + 1
    return "".join(parts)


PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "img without an end": lambda n: "<img " * (n // 5),
    "a backtick ladder": _ladder,
    "fences with a backtick in their info, then HTML": lambda n: "```x`\n<form action=https://e>\n" * (n // 30),
    "brackets": lambda n: "<b>" + "[" * n,
    "emphasis marks": lambda n: "<b>" + "*_" * (n // 2),
    "image starts": lambda n: "<b>" + "![" * (n // 2),
    "anchor starts": lambda n: "<a " * (n // 3),
    "nested quotes": lambda n: "".join(">" * (i % 60 + 1) + " `<b>`\n" for i in range(n // 40)),
    "nested lists": lambda n: "".join("  " * (i % 30) + "- `<b>` x\n" for i in range(n // 40)),
    "unclosed fences": lambda n: "```\n<b>\n" * (n // 8),
    "one long line": lambda n: "a `b` <i> " * (n // 10),
    "setext lines and rules": lambda n: "a `<b>`\n***\n" * (n // 12),
    "table rows": lambda n: "a|b\n-|-\n" + "`x`|<b>\n" * (n // 8),
    "latex pairs": lambda n: "$$x$$ `<b>` " * (n // 12),
    "a lone $$ then a list": lambda n: "$$\n" + "- item `<b>`\n" * (n // 13),
}
