"""Tests for services/mcp_tools/results.py: a tool's answer as text for the model and the page, cut to its bound
with a notice, masked of the Space's secrets and the visitor's token, never fetched."""

from __future__ import annotations

import time

import pytest
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from pydantic import AnyUrl

from services.mcp_tools.results import ToolResult, masked_head, render
from services.redact import Scrubber

pytestmark = pytest.mark.unit

SECRET = "owner-key-123456"
SCRUBBER = Scrubber([SECRET])


def text(*parts: str, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=part) for part in parts], isError=error)


def shown(result: CallToolResult, limit: int = 1_000, *extra: str) -> str:
    return render(result, limit=limit, scrubber=SCRUBBER, extra=extra)[0]


class TestParts:
    def test_text_parts_as_they_are(self):
        """Text parts, one a line; markup stays text (the page renders it as text)."""
        assert shown(text("one", "<b>two</b>")) == "one\n<b>two</b>"

    def test_other_parts_are_described_not_fetched(self):
        """An image, audio, a link and a binary resource each become one line saying what they are; the text of
        an embedded text resource is part of the answer."""
        result = CallToolResult(
            content=[
                ImageContent(type="image", data="AAAA" * 30, mimeType="image/png"),
                AudioContent(type="audio", data="AAAA", mimeType="audio/wav"),
                ResourceLink(type="resource_link", name="report", uri=AnyUrl("https://files.example/r.pdf")),
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(uri=AnyUrl("file:///notes.txt"), text="the notes"),
                ),
                EmbeddedResource(
                    type="resource",
                    resource=BlobResourceContents(uri=AnyUrl("file:///a.bin"), blob="AAAAAAAA", mimeType=None),
                ),
            ]
        )
        assert shown(result).splitlines() == [
            "[image: image/png, 90 bytes, not shown]",
            "[audio: audio/wav, 3 bytes, not played]",
            "[resource link: report <https://files.example/r.pdf>, not fetched]",
            "[resource: file:///notes.txt]",
            "the notes",
            "[resource: file:///a.bin, binary, 6 bytes]",
        ]

    def test_a_hostile_line_is_one_short_line(self):
        """A name or type a server chose cannot stretch a description line or break it."""
        link = ResourceLink(type="resource_link", name="n\n" * 5_000, uri=AnyUrl("https://x.example/"))
        line = shown(CallToolResult(content=[link]))
        assert "\n" not in line
        assert len(line) < 450

    def test_structured_content_alone_is_shown_as_json(self):
        """A tool that answers only in structured form still gives the model its answer."""
        result = CallToolResult(content=[], structuredContent={"temperature": 14, "city": "Paris"})
        assert shown(result) == '{"temperature": 14, "city": "Paris"}'

    def test_an_error_says_so(self):
        """A tool's own error (`isError`) reaches the model as one, with its text."""
        assert shown(text("no such city", error=True)) == "The tool reported an error: no such city"
        assert shown(text(error=True)) == "The tool reported an error."

    def test_nul_and_lone_surrogates_are_cleaned(self):
        """Text that would break the JSON on its way to the model is cleaned."""
        assert shown(text("a\x00b\ud800c")) == "ab\ufffdc"


class TestCap:
    def test_a_long_answer_is_cut_with_a_notice(self):
        """Only `limit` characters are kept, and the notice says how many of how many."""
        result_text, cut = render(text("0123456789" * 500, "more"), limit=1_000, scrubber=SCRUBBER)
        assert cut is True
        assert result_text == "0123456789" * 100 + "\n\n[Result cut: the first 1,000 of 5,005 characters.]"

    def test_at_the_limit_nothing_is_cut(self):
        """An answer of exactly `limit` characters is whole, without a notice."""
        assert render(text("x" * 1_000), limit=1_000, scrubber=SCRUBBER) == ("x" * 1_000, False)

    def test_a_secret_at_the_cut_is_masked_whole(self):
        """Where the cut falls inside a secret, the secret is masked whole (the mask may be cut), never half
        shown."""
        for at in range(1, len(SECRET)):
            head, cut = masked_head("x" * (100 - at) + SECRET + "tail", limit=100, scrubber=SCRUBBER)
            assert cut is True
            assert head == ("x" * (100 - at) + "***tail")[:100]

    def test_a_secret_past_the_margin_is_held_back(self):
        """A secret longer than the margin read past the cut shows none of its start."""
        long_secret = "k" * 3_000
        head, cut = masked_head("x" * 90 + long_secret, limit=100, scrubber=Scrubber([long_secret]))
        assert (head, cut) == ("x" * 90, True)

    def test_a_megabyte_costs_milliseconds(self):
        """A 1 MB answer in 10,000 parts, or in one, is cut before any other work."""
        for result in (text(*(["y" * 100] * 10_000)), text("z" * 1_000_000)):
            started = time.perf_counter()
            result_text, cut = render(result, limit=20_000, scrubber=SCRUBBER)
            assert time.perf_counter() - started < 0.1
            assert cut is True
            assert len(result_text) < 20_100


class TestMasking:
    def test_the_spaces_secrets_and_the_visitors_token(self):
        """The Space's secret in any form the scrubber knows, and the visitor's token, are masked."""
        token = "hf_visitor_token_42"
        result = text(f"key={SECRET} upper={SECRET.upper()} token={token}")
        assert shown(result, 1_000, token) == "key=*** upper=*** token=***"

    def test_hashes_and_ids_stay(self):
        """A tool may rightly answer a commit hash or a long id: only known secrets are masked."""
        sha = "3f786850e387550fdab836ed7e6dc881de23001b"
        assert shown(text(f"commit {sha}")) == f"commit {sha}"

    def test_a_nul_cannot_hide_a_secret(self):
        """Cleaning comes first, so a NUL inside a secret does not keep it from being masked."""
        assert shown(text(SECRET[:5] + "\x00" + SECRET[5:])) == "***"


class TestToolResult:
    def test_message_for_the_model(self):
        """The `{"role": "tool"}` message that answers the model's call."""
        result = ToolResult("s__add", "3", "ok", 0.01, server="s")
        assert result.message("call_1") == {"role": "tool", "tool_call_id": "call_1", "content": "3"}
        assert result.failed is False
        assert ToolResult("s__add", "Error: ...", "timeout", 30.0).failed is True
