"""Attachments: a 4 MB phone photo to a data URL and a 100-page PDF to text, against the raw library calls.

Paths, alternated round by round in one run (the order rotated) so that drift on a shared machine hits them alike:

Photo: a 4000 x 3000 JPEG of noisy gradients, about 4 MB, with a phone's EXIF (GPS, serial number).
- Pillow open+save:         `Image.open` + `save` as JPEG at quality 85, full size: what a plain re-encode costs;
- Pillow open+resize+save:  the same, resized to 2048 px first: the same output as the module's, the floor;
- module in-process:        `read_attachment`: the type sniffed, the draft decode, orientation, the profile, the
                            thumbnail, base64;
- module off the loop:      `AttachmentReader.read` awaited in an event loop: a worker process, its pipe, JSON.

PDF: 100 pages of about 3,000 characters each, Helvetica.
- pypdf extract:            `PdfReader` + `extract_text` on every page;
- module in-process:        `read_attachment`, limits raised so that all 100 pages are read;
- module off the loop:      `AttachmentReader.read`, the same limits;
- off the loop, defaults:   `AttachmentReader.read` under the default limits (MAX_DOCUMENT_CHARS stops it early).

A 5-byte text file, in-process and off the loop: the fixed cost of going through a worker.

Printed per path: median and best ms, and the ratio to the first path of its group (the median over rounds of the
per-round ratio). Then the targets (a photo adds at most 150 ms before the request leaves; a 100-page PDF is read
in under 2 s, off the loop), the largest gap of a coroutine ticking every 10 ms while the off-loop paths ran, and
a one-line SUMMARY. Exit status 0, or 1 with --check when a target is missed. Run from the repository root:

    python bench/attachments.py
    python bench/attachments.py --rounds 20 --check
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.attachments import AttachmentReader, DocumentPart, ImagePart, Limits, read_attachment  # noqa: E402
from services.config import Settings  # noqa: E402
from tests.support import files  # noqa: E402

PHOTO, PDF, TINY = "photo", "pdf", "tiny"
RAW_PHOTO, RAW_PDF, OFF_LOOP = "Pillow open+resize+save", "pypdf extract", "module off the loop"
TARGET_PHOTO_MS = 150.0
TARGET_PDF_MS = 2000.0
# Prose for the PDF's pages: common words and a few of the subject's.
WORDS: tuple[str, ...] = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be")
WORDS += ("by", "this", "model", "attachment", "document", "image", "page", "reader", "worker", "process", "text")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per path (default 10)")
    parser.add_argument("--pages", type=int, default=100, help="pages of the PDF (default 100)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args()
    if args.rounds < 1 or args.pages < 1:
        parser.error("--rounds and --pages must be positive")
    return args


def _pages(count: int) -> list[str]:
    """Pages of plain prose, about 3,000 characters each (40 lines of 75), the same every run."""
    rng = random.Random(21)
    pages = []
    for number in range(1, count + 1):
        lines = [f"Page {number}."]
        while len(lines) < 40:
            line = ""
            while len(line) < 70:
                line += rng.choice(WORDS) + " "
            lines.append(line.strip())
        pages.append("\n".join(lines))
    return pages


def _pillow_save(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    image.save(io.BytesIO(), "JPEG", quality=85)


def _pillow_resize_save(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    scale = 2048 / max(image.size)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    resized.save(io.BytesIO(), "JPEG", quality=85)


def _pypdf_extract(data: bytes) -> None:
    for page in PdfReader(io.BytesIO(data)).pages:
        page.extract_text()


async def _timed(work: Awaitable[object]) -> tuple[float, float]:
    """Seconds `work` took, and the largest gap of a coroutine sleeping 10 ms at a time meanwhile: how late the
    event loop got to it."""
    largest = 0.0

    async def tick() -> None:
        nonlocal largest
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            largest = max(largest, now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    begun = time.perf_counter()
    try:
        await work
        return time.perf_counter() - begun, largest
    finally:
        ticker.cancel()


async def _bench(args: argparse.Namespace, folder: Path) -> int:
    started = time.perf_counter()
    photo = files.photo(4000, 3000, exif=files.gps_exif())
    pdf = files.text_pdf(_pages(args.pages))
    photo_path, pdf_path, tiny_path = folder / "photo.jpg", folder / "report.pdf", folder / "hello.txt"
    photo_path.write_bytes(photo)
    pdf_path.write_bytes(pdf)
    tiny_path.write_bytes(b"hello")
    print(
        f"photo: 4000 x 3000 JPEG, {len(photo) / 1_048_576:.2f} MB with EXIF and GPS; PDF: {args.pages} pages, "
        f"{len(pdf) / 1024:.0f} KB; built in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    everything = Settings(max_document_chars=10_000_000, max_pdf_pages=10_000, attachment_timeout=60)
    whole = Limits.from_settings(everything)
    reader = AttachmentReader(everything)
    defaults = AttachmentReader(Settings())
    reader.start()
    defaults.start()

    async def off_loop(which: AttachmentReader, path: Path) -> None:
        await which.read([str(path)])

    # (group, path) -> the work; the raw library calls and the in-process reads run on the loop's thread on
    # purpose: they are the floor, with no process or pipe in between.
    in_process: dict[tuple[str, str], Callable[[], object]] = {
        (PHOTO, "Pillow open+save"): lambda: _pillow_save(photo),
        (PHOTO, RAW_PHOTO): lambda: _pillow_resize_save(photo),
        (PHOTO, "module in-process"): lambda: read_attachment(photo_path, name="photo.jpg", limits=whole),
        (PDF, RAW_PDF): lambda: _pypdf_extract(pdf),
        (PDF, "module in-process"): lambda: read_attachment(pdf_path, name="report.pdf", limits=whole),
        (TINY, "module in-process"): lambda: read_attachment(tiny_path, name="hello.txt", limits=whole),
    }
    off: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {
        (PHOTO, OFF_LOOP): lambda: off_loop(reader, photo_path),
        (PDF, OFF_LOOP): lambda: off_loop(reader, pdf_path),
        (PDF, "off the loop, defaults"): lambda: off_loop(defaults, pdf_path),
        (TINY, OFF_LOOP): lambda: off_loop(reader, tiny_path),
    }
    keys = [*in_process, *off]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    largest_gap = 0.0
    try:
        # Warm: the workers import Pillow and pypdf, and each path runs once untimed.
        for key in keys:
            await off[key]() if key in off else in_process[key]()
        photo_part = read_attachment(photo_path, name="photo.jpg", limits=whole)
        pdf_part = read_attachment(pdf_path, name="report.pdf", limits=whole)
        short = (await defaults.read([str(pdf_path)]))[0]
        for round_number in range(args.rounds):
            shift = round_number % len(keys)
            for key in keys[shift:] + keys[:shift]:
                if key in off:
                    took, gap = await _timed(off[key]())
                    largest_gap = max(largest_gap, gap)
                else:
                    begun = time.perf_counter()
                    in_process[key]()
                    took = time.perf_counter() - begun
                times[key].append(took)
            print(f"round {round_number + 1}/{args.rounds}", file=sys.stderr)
    finally:
        reader.close()
        defaults.close()
    assert isinstance(photo_part, ImagePart)
    assert isinstance(pdf_part, DocumentPart)
    assert isinstance(short, DocumentPart)

    def report(group: str, title: str, base: str) -> None:
        print(f"\n{title}")
        print(f"  {'path':24} {'median ms':>10} {'best ms':>9} {'x ' + base:>26}")
        for key in (key for key in keys if key[0] == group):
            print(
                f"  {key[1]:24} {statistics.median(times[key]) * 1000:10.1f} {min(times[key]) * 1000:9.1f} "
                f"{_paired(times, key, (group, base)):26.2f}"
            )

    print(f"\n{args.rounds} rounds, paths alternated; ratios are the median of the per-round ratios.")
    report(
        PHOTO,
        f"Photo -> data URL ({photo_part.width} x {photo_part.height} JPEG, {len(photo_part.data_url) / 1024:.0f} KB "
        f"as a data URL, thumbnail {len(photo_part.thumbnail) / 1024:.1f} KB)",
        RAW_PHOTO,
    )
    report(
        PDF,
        f"PDF -> text ({pdf_part.pages_read} pages, {len(pdf_part.text):,} characters; under the default limits "
        f"{short.pages_read} pages, {len(short.text):,} characters)",
        RAW_PDF,
    )
    report(
        TINY, "A 5-byte text file: the fixed cost of a worker (a thread's wait, the pipe, JSON)", "module in-process"
    )
    photo_ms = statistics.median(times[PHOTO, OFF_LOOP]) * 1000
    pdf_ms = statistics.median(times[PDF, OFF_LOOP]) * 1000
    photo_ok, pdf_ok, loop_ok = photo_ms <= TARGET_PHOTO_MS, pdf_ms < TARGET_PDF_MS, largest_gap < 0.1
    print("\nTargets:")
    print(f"  photo off the loop {photo_ms:.0f} ms <= {TARGET_PHOTO_MS:.0f} ms: {_verdict(photo_ok)}")
    print(f"  {args.pages}-page PDF off the loop {pdf_ms:.0f} ms < {TARGET_PDF_MS:.0f} ms: {_verdict(pdf_ok)}")
    print(f"  event loop's largest gap {largest_gap * 1000:.0f} ms < 100 ms: {_verdict(loop_ok)}")
    print(
        f"SUMMARY photo {photo_ms:.0f} ms (x{_paired(times, (PHOTO, OFF_LOOP), (PHOTO, RAW_PHOTO)):.2f} Pillow), "
        f"PDF {pdf_ms:.0f} ms (x{_paired(times, (PDF, OFF_LOOP), (PDF, RAW_PDF)):.2f} pypdf), loop gap "
        f"{largest_gap * 1000:.0f} ms: {_verdict(photo_ok and pdf_ok and loop_ok)}"
    )
    return 0 if not args.check or (photo_ok and pdf_ok and loop_ok) else 1


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def _paired(times: dict[tuple[str, str], list[float]], key: tuple[str, str], base: tuple[str, str]) -> float:
    return statistics.median(mine / floor for mine, floor in zip(times[key], times[base], strict=True))


def main() -> int:
    args = _parse_args()
    with tempfile.TemporaryDirectory() as folder:
        return asyncio.run(_bench(args, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
