"""Images and documents through the launched app, as every client sends them: gradio_client, HTTP (curl's way) and
MCP. The test model server records the parts it receives: what arrives is checked pixel by pixel and word by word,
and every refusal happens before any request."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image, ImageChops, ImageStat

from tests.support import files
from tests.support.apps import RunningApp, fake_backed, running_app
from tests.support.fake_openai import MODEL, Behaviour, FakeOpenAI, images_of, text_of

pytestmark = pytest.mark.e2e

BLIND = "blind-model"


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Behaviour(models=(MODEL, BLIND), vision_models=(MODEL,))) as server:
        yield server


@pytest.fixture
def upstream(model_server: FakeOpenAI) -> FakeOpenAI:
    model_server.reset()
    model_server.behaviour.models, model_server.behaviour.vision_models = (MODEL, BLIND), (MODEL,)
    return model_server


@pytest.fixture(scope="module")
def target(model_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app with two models of one server: the listing says the first reads images, the second does not."""
    env = fake_backed(
        model_server,
        LLM_MODEL="<unset>",
        LLM_MODELS=f"{MODEL},{BLIND}",
        VISION_MODELS="nothing-else",
        RATE_LIMIT_PER_IP="none",
        RATE_LIMIT_PER_SESSION="none",
        MAX_ATTACHMENTS="3",
    )
    with running_app(tmp_path_factory.mktemp("attachments"), **env) as app:
        yield app


def write(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    path.write_bytes(data)
    return str(path)


def ask(target: RunningApp, message: str, *paths: str, **inputs: Any) -> str:
    """/ask through gradio_client, each path uploaded with `handle_file`, as README shows."""
    files_input = [handle_file(path) for path in paths]
    answer: str = Client(target.url, verbose=False).predict(message, files=files_input, api_name="/ask", **inputs)
    return answer


def last_user(upstream: FakeOpenAI) -> Any:
    return [m for m in upstream.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]


def decoded(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/jpeg;base64,") or data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


class TestImages:
    def test_a_phone_photo_arrives_bare_and_at_most_2048_px(self, target, upstream, tmp_path):
        """A 4000x3000 JPEG with GPS: the model gets a JPEG of at most 2048 px, no EXIF at all, the same
        picture (compared pixel by pixel with the original scaled down)."""
        original = files.photo(4000, 3000, exif=files.gps_exif())
        path = write(tmp_path, "holiday.jpg", original)
        assert ask(target, "What is this?", path) == "You said: What is this?"
        [url] = images_of(last_user(upstream))
        image = decoded(url)
        assert max(image.size) <= 2048
        assert image.size[0] / image.size[1] == pytest.approx(4 / 3, rel=0.01)
        assert dict(image.getexif()) == {}
        assert b"Exif" not in base64.b64decode(url.split(",", 1)[1])
        expected = Image.open(io.BytesIO(original)).convert("RGB").resize(image.size)
        difference = ImageStat.Stat(ImageChops.difference(image.convert("RGB"), expected)).mean
        assert max(difference) < 12, difference

    def test_an_image_for_a_model_that_cannot_see_is_refused_before_any_request(self, target, upstream, tmp_path):
        path = write(tmp_path, "cat.png", files.png_with_text(files.noisy(64, 64)))
        with pytest.raises(AppError, match=rf"{BLIND} cannot see images.*the models here that can: {MODEL}"):
            ask(target, "cat?", path, model=BLIND)
        assert upstream.requests == []

    def test_a_page_disguised_as_a_png_is_refused_by_its_bytes(self, target, upstream, tmp_path):
        for name, data in (
            ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
            ("photo.png", b"<!doctype html><html><body onload=alert(1)>hi</body></html>"),
        ):
            with pytest.raises(AppError, match=name):
                ask(target, "look", write(tmp_path, name, data))
        assert upstream.requests == []

    def test_a_session_keeps_its_image_for_the_next_turn(self, target, upstream, tmp_path):
        """/chat: the image attached in one turn is sent again with that turn in the next (one data URL)."""
        client = Client(target.url, verbose=False)
        client.predict(
            "Look at this",
            files=[handle_file(write(tmp_path, "a.png", files.png_with_text(files.noisy(80, 60))))],
            api_name="/chat",
        )
        client.predict("And now?", api_name="/chat")
        users = [m for m in upstream.requests[-1]["messages"] if m["role"] == "user"]
        assert len(images_of(users[0]["content"])) == 1
        assert text_of(users[-1]["content"]) == "And now?"


class TestDocuments:
    def test_a_text_file_and_a_pdf_arrive_with_their_names(self, target, upstream, tmp_path):
        notes = write(tmp_path, "notes.md", b"# Plan\n\nThe password for the demo is zephyr.\n")
        report = write(tmp_path, "report.pdf", files.text_pdf(["alpha beta gamma", "delta epsilon"]))
        ask(target, "Summarise", notes, report)
        text = text_of(last_user(upstream))
        assert '<file name="notes.md">' in text
        assert "zephyr" in text
        assert '<file name="report.pdf">' in text
        assert "alpha beta gamma" in text
        assert "delta epsilon" in text
        assert text.endswith("Summarise")

    def test_a_binary_file_is_refused(self, target, upstream, tmp_path):
        path = write(tmp_path, "data.txt", bytes(range(256)) * 4)
        with pytest.raises(AppError, match="data.txt"):
            ask(target, "read", path)
        assert upstream.requests == []

    def test_too_many_files_are_refused(self, target, upstream, tmp_path):
        paths = [write(tmp_path, f"n{i}.txt", b"note") for i in range(4)]
        with pytest.raises(AppError, match="at most 3 files"):
            ask(target, "read", *paths)
        assert upstream.requests == []


class TestHttp:
    def test_upload_then_call_as_curl_does(self, target, upstream):
        """README's curl way: POST the file to /gradio_api/upload, then name the path it answered in `files`."""
        with httpx.Client(base_url=target.url, timeout=30) as http:
            uploaded = http.post(
                "gradio_api/upload", files={"files": ("notes.txt", b"The code is 4242.", "text/plain")}
            )
            [path] = uploaded.json()
            files_input = [{"path": path, "meta": {"_type": "gradio.FileData"}}]
            event = http.post(
                "gradio_api/call/ask", json={"data": ["What is the code?", "", None, None, None, "", files_input]}
            )
            text = http.get(f"gradio_api/call/ask/{event.json()['event_id']}").text
        complete = text.split("event: complete", 1)[1]
        assert complete.rstrip().endswith('What is the code?"]')
        assert "4242" in text_of(last_user(upstream))

    @pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "https://example.org/x.png"])
    def test_a_path_that_is_not_an_upload_is_refused(self, target, upstream, path):
        """The Space reads only what its upload route wrote, and fetches no URL: refused at the edge, with a
        sentence, before Gradio (which would fetch the URL, or log a traceback) sees it."""
        files_input = [{"path": path, "url": path, "meta": {"_type": "gradio.FileData"}}]
        data = {"data": ["read it", "", None, None, None, "", files_input]}
        refused = httpx.post(target.url + "gradio_api/call/ask", json=data, timeout=30)
        assert refused.status_code == 422
        assert "names a file that was not uploaded to this Space" in refused.json()["detail"]
        assert upstream.requests == []
        assert "Traceback" not in target.log()

    def test_files_only_where_an_input_takes_them_and_in_its_shape(self, target, upstream):
        """A file reference in the system prompt, or `files` that are not a list of files: 422, no traceback."""
        reference = {"path": "a", "meta": {"_type": "gradio.FileData"}}
        for data, says in (
            (["hi", {"x": [reference]}], "/ask's 'history' takes no files"),
            (["hi", "", None, None, None, "", "more"], "/ask's 'files' takes files uploaded to this Space"),
        ):
            refused = httpx.post(target.url + "gradio_api/call/ask", json={"data": data}, timeout=30)
            assert refused.status_code == 422
            assert refused.json()["detail"].startswith(says)
        assert "Traceback" not in target.log()


class TestMcp:
    def test_the_ask_tool_takes_a_data_url(self, target, upstream):
        """An agent sends a file as a data: URL, as Gradio's MCP server takes files; the image reaches the model."""
        png = files.png_with_text(files.noisy(40, 30))
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()

        async def call() -> Any:
            async with (
                streamable_http_client(target.url + "gradio_api/mcp/") as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await session.call_tool("ask", {"message": "What colour?", "files": [data_url]})

        import asyncio

        result = asyncio.run(asyncio.wait_for(call(), 60))
        assert not result.isError, result
        assert len(images_of(last_user(upstream))) == 1


class TestHostileFiles:
    def test_refused_quickly_while_another_visitor_is_served(self, target, upstream, tmp_path):
        """A decompression bomb, a PDF of 10,000 empty pages and a heavy one are each refused or cut within
        seconds, while another visitor's /greet keeps answering under a second."""
        hostile = {
            "bomb.png": files.png_bomb(50_000, 50_000),
            "empty.pdf": files.blank_pdf(10_000),
            "heavy.pdf": files.heavy_pdf(operators=100_000, pages=20),
        }
        upstream.behaviour.reply = "Read."  # what was read may be sent; the echo of a heavy PDF is not the point
        slowest = [0.0]
        done = threading.Event()

        def visitor() -> None:
            with httpx.Client(base_url=target.url, timeout=10) as http:
                while not done.is_set():
                    started = time.monotonic()
                    event = http.post("gradio_api/call/greet", json={"data": ["Ada"]}).json()["event_id"]
                    assert "Hello, Ada!" in http.get(f"gradio_api/call/greet/{event}").text
                    slowest[0] = max(slowest[0], time.monotonic() - started)

        thread = threading.Thread(target=visitor)
        thread.start()
        try:
            for name, data in hostile.items():
                started = time.monotonic()
                try:
                    ask(target, "read", write(tmp_path, name, data))
                except AppError as error:
                    assert name in str(error)
                assert time.monotonic() - started < 20, name
        finally:
            done.set()
            thread.join()
        assert slowest[0] < 1.0
        assert json.dumps(upstream.requests).count("data:image") == 0
