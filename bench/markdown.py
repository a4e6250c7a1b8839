"""The page's Markdown made safe, against markdown-it-py rendering the same text, side by side in one run.

    python bench/markdown.py [--size 1000000] [--rounds 3] [--reply 100000] [--piece 20]

Whole texts: each shape of tests/support/pathological.py at `--size` characters (1 MB by default), timed two
ways, taking turns round by round so that drift on a shared machine hits them alike:

- markdown-it:     `MarkdownIt("commonmark").render(text)`: a CommonMark parser turning the text into HTML, the
                   reference for what a pass over the text costs in Python (some of these shapes make it
                   superlinear, as its column shows);
- safe_markdown:   `services.markdown.safe_markdown(text)`: what the app does to every text it shows (the marked
                   model deciding what is code, every other `<` escaped, images made links).

Printed per shape: the best time of each and the ratio safe_markdown / markdown-it.

A streaming reply: `--reply` characters of a Markdown reply (paragraphs, code, lists, HTML to escape) arriving
`--piece` characters at a time, rendered after every piece the two ways a chat can:

- whole text:      `safe_markdown` of the whole reply so far, each update (quadratic over the reply);
- MarkdownStream:  one `MarkdownStream` per reply, as ui/render.py's `LiveMarkdown` holds it, redoing only what
                   the end may still change.

Printed: the total and the worst single update of each, and the ratio. Exit status 0, or 1 with --check when a
1 MB shape takes 2 s or more, or the stream's worst update 10 ms or more.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.markdown import MarkdownStream, safe_markdown  # noqa: E402
from tests.support.pathological import PATHOLOGICAL  # noqa: E402

TARGET_WHOLE_S = 2.0
TARGET_UPDATE_MS = 10.0


def best_of(rounds: int, functions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best time of each function, the order rotated round by round."""
    names = list(functions)
    best = dict.fromkeys(names, float("inf"))
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            functions[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def reply(size: int, seed: int = 7) -> str:
    """A long model reply of mixed Markdown, with HTML written in prose and in code."""
    rng = random.Random(seed)
    blocks = (
        "Here is how it works: the `<div>` wraps a <b>bold</b> claim and a [link](https://example.com).\n\n",
        "```python\nfor i in range(3):\n    print('<b>', i)\n```\n\n",
        "- first `a < b`\n- second <i>x</i>\n  - nested ![img](https://example.com/x.png)\n\n",
        "| a | b |\n|---|---|\n| `<x>` | <y> |\n\n",
        "> quoted <span>text</span> and $$x^2$$ maths\n\n",
        "A long paragraph of words " * 8 + "\n\n",
    )
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(rng.choice(blocks))
        length += len(parts[-1])
    return "".join(parts)[:size]


def stream(text: str, piece: int) -> dict[str, tuple[float, float]]:
    """Total and worst update seconds, rendering after every piece: the whole text each time, and MarkdownStream."""
    cuts = range(piece, len(text) + piece, piece)
    results: dict[str, tuple[float, float]] = {}
    live = MarkdownStream()
    for name, render in (("whole text", safe_markdown), ("MarkdownStream", live.render)):
        total = worst = 0.0
        for cut in cuts:
            start = time.perf_counter()
            render(text[:cut])
            took = time.perf_counter() - start
            total += took
            worst = max(worst, took)
        results[name] = (total, worst)
    assert live.render(text) == safe_markdown(text)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="characters of each pathological text")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reply", type=int, default=100_000, help="characters of the streamed reply")
    parser.add_argument("--piece", type=int, default=20, help="characters per streamed update")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    parser_ = MarkdownIt("commonmark")
    print(f"Pathological texts of {args.size:,} characters, best of {args.rounds}:")
    print(f"  {'shape':<50} {'markdown-it':>12} {'safe_markdown':>14} {'ratio':>7}")
    slowest = 0.0
    for name, make in PATHOLOGICAL.items():
        text = make(args.size)
        best = best_of(
            args.rounds,
            {
                "markdown-it": lambda text=text: parser_.render(text),  # type: ignore[misc]
                "safe_markdown": lambda text=text: safe_markdown(text),  # type: ignore[misc]
            },
        )
        slowest = max(slowest, best["safe_markdown"])
        ratio = best["safe_markdown"] / best["markdown-it"]
        print(f"  {name:<50} {best['markdown-it']:>11.3f}s {best['safe_markdown']:>13.3f}s {ratio:>6.2f}x")

    text = reply(args.reply)
    updates = len(text) // args.piece
    print(f"\nA reply of {len(text):,} characters streamed {args.piece} at a time ({updates:,} updates):")
    results = stream(text, args.piece)
    for name, (total, worst) in results.items():
        print(f"  {name:<16} total {total:8.2f} s   worst update {worst * 1000:8.2f} ms")
    whole, live = results["whole text"], results["MarkdownStream"]
    print(f"  MarkdownStream: {whole[0] / live[0]:.0f}x less time in all than the whole text each update")

    missed = slowest >= TARGET_WHOLE_S or live[1] * 1000 >= TARGET_UPDATE_MS
    print(
        f"\nSUMMARY slowest {args.size:,}-character shape {slowest:.2f} s (target < {TARGET_WHOLE_S:.0f} s); "
        f"streamed reply {live[0]:.2f} s in all, worst update {live[1] * 1000:.1f} ms "
        f"(target < {TARGET_UPDATE_MS:.0f} ms){'  MISSED' if missed else ''}"
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
