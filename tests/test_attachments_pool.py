"""Tests for services/attachments/pool.py: files read in real worker processes, hostile ones stopped at the time
bound while the event loop keeps its pace and another visitor is served."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from services.attachments import AttachmentReader, DocumentPart, ImagePart, Upload, pool
from services.attachments.pool import _worker_env
from services.config import Settings
from services.errors import AttachmentError
from tests.support import files

# Worker processes are started: end-to-end by the project's kinds.
pytestmark = pytest.mark.e2e

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def reader() -> Iterator[AttachmentReader]:
    reader = AttachmentReader(Settings(attachment_timeout=TIMEOUT, attachment_workers=2, max_attachments=5))
    reader.start()
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def upload(folder: Path):
    """upload(data, "name.ext") -> the path of a file holding it, named so."""

    def write(data: bytes, name: str) -> str:
        path = folder / name
        path.write_bytes(data)
        return str(path)

    return write


@pytest.fixture(scope="module")
def hostile(upload) -> list[str]:
    """A decompression bomb, a PDF of 10,000 empty pages, a disguised SVG, a PDF that keeps pypdf busy."""
    return [
        upload(files.png_bomb(100_000, 100_000), "bomb.png"),
        upload(files.blank_pdf(10_000), "blank.pdf"),
        upload(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "cat.png"),
        upload(files.heavy_pdf(), "heavy.pdf"),
    ]


class TestReading:
    def test_a_message_s_files_in_order(self, reader, upload):
        """An image and a document, read in workers, come back in the order given, as the app's own types."""
        photo = upload(files.photo(800, 600, exif=files.gps_exif()), "photo.jpg")
        notes = upload(b"# Notes\nhello", "upload-7f3a")
        parts = asyncio.run(reader.read([photo, Upload(notes, "notes.md")]))
        assert isinstance(parts[0], ImagePart)
        assert (parts[0].name, parts[0].width, parts[0].height) == ("photo.jpg", 800, 600)
        assert parts[1] == DocumentPart(name="notes.md", kind="text", text="# Notes\nhello")

    def test_a_refusal_is_the_worker_s_sentence(self, reader, upload):
        """What the worker refuses reaches the caller as an AttachmentError with its sentence and the name."""
        path = upload(b"<!DOCTYPE html><html></html>", "selfie.png")
        with pytest.raises(AttachmentError) as info:
            asyncio.run(reader.read([path]))
        assert str(info.value).startswith("selfie.png is not a PNG, JPEG, WebP or GIF image")
        assert info.value.name == "selfie.png"

    def test_too_many_files_are_refused_before_any_work(self, reader):
        """Past MAX_ATTACHMENTS, refused at once: the files (which do not even exist) are never opened."""
        with pytest.raises(AttachmentError, match=r"^A message takes at most 5 files and this one has 6"):
            asyncio.run(reader.read([f"/nonexistent/{n}.png" for n in range(6)]))

    def test_attachments_off(self):
        reader = AttachmentReader(Settings(max_attachments=0))
        try:
            with pytest.raises(AttachmentError, match=r"^This Space takes no attachments"):
                asyncio.run(reader.read(["/nonexistent/a.png"]))
            assert asyncio.run(reader.read([])) == []
        finally:
            reader.close()

    def test_the_size_limit_is_the_setting(self, upload):
        reader = AttachmentReader(Settings(max_attachment_bytes=2048, attachment_workers=1))
        try:
            with pytest.raises(AttachmentError, match=r"^big\.txt is 3 KB; files of at most 2 KB are accepted"):
                asyncio.run(reader.read([upload(b"a" * 3000, "big.txt")]))
        finally:
            reader.close()


class TestHostileFiles:
    def test_a_stuck_pdf_is_stopped_at_the_time_bound(self, reader, upload, hostile):
        """pypdf busy on one page for longer than ATTACHMENT_TIMEOUT: the worker is killed, the file refused
        with a sentence, and the next file is read by a fresh worker."""
        started = time.perf_counter()
        with pytest.raises(AttachmentError, match=r"^heavy\.pdf took longer than 2 s to read, so reading it was"):
            asyncio.run(reader.read([hostile[3]]))
        assert TIMEOUT <= time.perf_counter() - started < TIMEOUT + 1.5
        after = asyncio.run(reader.read([upload(b"still here", "after.txt")]))
        assert after[0].text == "still here"

    def test_the_event_loop_keeps_its_pace(self, reader, hostile):
        """While every hostile file is read at once, a coroutine ticking every 10 ms never waits 100 ms."""

        async def scenario() -> tuple[list[float], list[BaseException | object]]:
            gaps: list[float] = []
            done = asyncio.Event()

            async def tick() -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.01)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            ticker = asyncio.ensure_future(tick())
            outcomes = await asyncio.gather(*(reader.read([path]) for path in hostile), return_exceptions=True)
            done.set()
            await ticker
            return gaps, outcomes

        gaps, outcomes = asyncio.run(scenario())
        assert all(isinstance(outcome, AttachmentError) for outcome in outcomes), outcomes
        assert len(gaps) > 20
        # A file read on the loop would stop it for seconds; a busy runner's scheduling, for tens of ms.
        assert max(gaps) < 0.25

    def test_another_visitor_is_served(self, reader, upload, hostile):
        """A hostile PDF holds one worker to the time bound; a photo sent meanwhile is read by the other at once."""
        photo = upload(files.photo(1200, 900), "visitor.jpg")

        async def scenario() -> tuple[bool, BaseException | object]:
            stuck = asyncio.ensure_future(reader.read([hostile[3]]))
            await asyncio.sleep(0.2)
            parts = await reader.read([photo])
            assert isinstance(parts[0], ImagePart)
            served_first = not stuck.done()
            return served_first, (await asyncio.gather(stuck, return_exceptions=True))[0]

        served_first, stuck = asyncio.run(scenario())
        assert served_first, "the photo waited for the stuck PDF's worker"
        assert isinstance(stuck, AttachmentError)

    def test_a_bomb_and_blank_pages_are_refused_quickly(self, reader, hostile):
        """The decompression bomb, 10,000 empty pages and the disguised SVG are refused well within the bound."""
        for path, says in zip(hostile[:3], ("megapixels", "has no text", "an SVG"), strict=True):
            started = time.perf_counter()
            with pytest.raises(AttachmentError, match=says):
                asyncio.run(reader.read([path]))
            assert time.perf_counter() - started < 5.0, (
                path
            )  # the bound is ATTACHMENT_TIMEOUT; niced workers on a loaded runner


class TestWorkers:
    def test_the_environment_has_no_secret(self, monkeypatch):
        """A worker reads hostile files: it never gets the app's variables or anything named like a credential."""
        for name in ("OPENAI_API_KEY", "HF_TOKEN", "HISTORY_SECRET", "APP_AUTH", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"):
            monkeypatch.setenv(name, "s3cret")
        monkeypatch.setenv("LLM_MODEL", "gpt")
        monkeypatch.setenv("LANG", "C.UTF-8")
        env = _worker_env()
        assert "s3cret" not in env.values()
        assert "LLM_MODEL" not in env
        assert env["LANG"] == "C.UTF-8"
        assert env["PATH"] == os.environ["PATH"]

    def test_close_ends_the_workers(self, upload):
        """close() ends every worker process; a closed reader refuses new files with a sentence."""
        reader = AttachmentReader(Settings(attachment_workers=2))
        reader.start()
        workers = [reader._idle.get() for _ in range(2)]
        processes = [worker._process for worker in workers if worker is not None]
        for worker in workers:
            reader._idle.put(worker)
        assert len(processes) == 2
        assert all(process.poll() is None for process in processes)
        reader.close()
        assert all(process.poll() is not None for process in processes)
        reader.close()
        with pytest.raises(AttachmentError, match=r"^The Space is stopping"):
            asyncio.run(reader.read([upload(b"late", "late.txt")]))

    def test_a_worker_s_start_is_not_the_file_s_time(self, upload, monkeypatch):
        """A worker that takes longer to start than ATTACHMENT_TIMEOUT (a busy machine) still reads the file: the
        bound is on reading, not on the interpreter's start."""
        slow = "import runpy, time; time.sleep(2); runpy.run_module('services.attachments.worker', run_name='__main__')"
        monkeypatch.setattr(pool, "_WORKER", (sys.executable, "-c", slow))
        reader = AttachmentReader(Settings(attachment_timeout=1.0, attachment_workers=1))
        try:
            parts = asyncio.run(reader.read([upload(b"late start", "late.txt")]))
        finally:
            reader.close()
        assert parts == [DocumentPart(name="late.txt", kind="text", text="late start")]

    def test_a_worker_that_never_starts(self, upload, monkeypatch):
        """A worker that never says it is ready is replaced, and the file is refused with a sentence."""
        monkeypatch.setattr(pool, "_WORKER", (sys.executable, "-c", "import time; time.sleep(60)"))
        monkeypatch.setattr(pool, "_START_SECONDS", 0.5)
        reader = AttachmentReader(Settings(attachment_workers=1))
        try:
            with pytest.raises(AttachmentError, match=r"^The Space is busy: attach the file again in a moment\.$"):
                asyncio.run(reader.read([upload(b"x", "never.txt")]))
        finally:
            reader.close()

    def test_a_worker_that_dies_is_replaced(self, upload):
        """A worker killed from outside (as the kernel would on memory) costs that file only."""
        reader = AttachmentReader(Settings(attachment_workers=1))
        try:
            reader.start()
            worker = reader._idle.get()
            assert worker is not None
            worker._process.kill()
            worker._process.wait()
            reader._idle.put(worker)
            path = upload(files.photo(64, 64), "lost.jpg")
            with pytest.raises(AttachmentError, match=r"^lost\.jpg could not be read"):
                asyncio.run(reader.read([path]))
            image = Image.new("RGB", (10, 10))
            image.save(Path(path).with_suffix(".png"))
            assert isinstance(asyncio.run(reader.read([str(Path(path).with_suffix(".png"))]))[0], ImagePart)
        finally:
            reader.close()
