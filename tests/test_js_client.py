"""README.md's JavaScript snippet (tests/js/chat.mjs), run with Node and the pinned @gradio/client from npm
(installed by tests/support/node.py)."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import node
from tests.support.apps import ROOT, fake_backed, running_app
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

JS_DIR = node.JS_DIR
SCRIPT = JS_DIR / "chat.mjs"
SNIPPET = JS_DIR / "README-snippet.md"
# The message chat.mjs sends: the fake server's reply is "You said: " and it.
MESSAGE = "Name three primary colours, then say which one is the warmest."
SCRIPT_TIMEOUT = 60
# @gradio/client 2.7.0 prints this when close() aborts its event stream before it has read the server's last
# message (`close_stream`, sent just after the last result): harmless, and a race that a loaded machine loses now
# and then (1 run in 30 here). Anything else on stderr fails the test.
CLOSE_RACE_TRACE = re.compile(
    r"DOMException \[AbortError\]: This operation was aborted\n"
    r"(?:    at .*\n)*?    at Client\.close .*\n(?:    at .*\n)*"
)


def pinned_version() -> str:
    return node.pinned_version("@gradio/client")


def node_with_client() -> str:
    """Node, with tests/js/node_modules installed from the lockfile."""
    try:
        return node.node_modules()[0]
    except node.NodeUnavailable as error:
        pytest.fail(str(error), pytrace=False)


def readme_js_section() -> str:
    """README.md's JavaScript section, or tests/js/README-snippet.md until README.md has one."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^(#{2,4}) JavaScript\b.*?(?=^#{1,4} |\Z)", readme, flags=re.M | re.S)
    return match.group(0) if match else SNIPPET.read_text()


class TestJavaScriptClient:
    def test_snippet_streams_reports_the_error_and_exits(self, fake: FakeOpenAI, tmp_path: Path):
        """`node chat.mjs URL` prints the growing reply, the reply, a refusal's error, and exits 0 by itself."""
        node = node_with_client()
        assert f'"{MESSAGE}"' in SCRIPT.read_text(), "chat.mjs no longer sends MESSAGE: update the test's copy"
        with running_app(tmp_path, **fake_backed(fake)) as app:
            try:
                done = subprocess.run(
                    [node, str(SCRIPT), app.url],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=SCRIPT_TIMEOUT,
                )
            except subprocess.TimeoutExpired as error:
                printed = (error.stdout or b"").decode(errors="replace")  # bytes, whatever `text` says
                pytest.fail(f"chat.mjs did not exit by itself in {SCRIPT_TIMEOUT} s; it printed:\n{printed}")
        output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\napp log:\n{app.log()}"
        assert done.returncode == 0, output
        assert CLOSE_RACE_TRACE.sub("", done.stderr) == "", output
        lines = done.stdout.splitlines()
        assert len(lines) >= 4, output
        *partial_lines, reply_line, error_line = lines
        assert all(line.startswith("partial: ") for line in partial_lines), output
        assert reply_line.startswith("reply: "), output
        assert error_line.startswith("error: "), output
        partials = [line.removeprefix("partial: ") for line in partial_lines]
        reply = reply_line.removeprefix("reply: ")
        error = error_line.removeprefix("error: ")
        assert reply == f"You said: {MESSAGE}", output
        assert len(partials) >= 2, output
        assert all(len(a) < len(b) and b.startswith(a) for a, b in itertools.pairwise(partials)), output
        assert all(reply.startswith(partial) for partial in partials), output
        assert partials[-1] == reply, output
        assert error.startswith("temperature:"), output
        # The refused call never reached the model server.
        assert len(fake.requests) == 1, output

    def test_readme_snippet_is_the_tested_script(self):
        """The ```js block of README.md's JavaScript section is chat.mjs byte for byte; npm and the CDN get the pin."""
        section = readme_js_section()
        blocks = re.findall(r"^```js\n(.*?)^```$", section, flags=re.M | re.S)
        assert len(blocks) == 1, "the JavaScript section needs exactly one ```js block"
        assert blocks[0] == SCRIPT.read_text()
        assert f"npm i @gradio/client@{pinned_version()}\n" in section
        assert f"https://cdn.jsdelivr.net/npm/@gradio/client@{pinned_version()}/dist/index.min.js" in section
