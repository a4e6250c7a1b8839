"""The Space's requirements resolve where it runs: on ZeroGPU (a free account's only hardware) and in CI."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.apps import ROOT

pytestmark = pytest.mark.unit

# The PyTorch versions ZeroGPU supports, as Hugging Face's hub-docs list them (spaces-zerogpu.md, August 2026),
# and the Python versions it runs. A requirement that admits no listed torch fails the Space's build with
# "No candidate PyTorch version found for ZeroGPU".
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
ZEROGPU_PYTHON = ("3.10", "3.12")


def requirement(name: str) -> Requirement:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def ci_torch() -> Version:
    """The torch version .ci/run installs (the CPU build) before the requirements."""
    found = re.search(r'"torch==([0-9.]+)"', (ROOT / ".ci" / "run").read_text())
    assert found, ".ci/run installs no pinned torch"
    return Version(found.group(1))


class TestTorch:
    def test_zerogpu_finds_a_supported_torch(self):
        """The torch requirement admits at least one version ZeroGPU supports."""
        spec = requirement("torch").specifier
        assert [v for v in ZEROGPU_TORCH if spec.contains(v)], f"torch{spec} admits none of {ZEROGPU_TORCH}"

    def test_ci_tests_a_torch_the_requirement_admits(self):
        """The CPU build CI installs first satisfies the same requirement, so pip installs nothing over it."""
        assert requirement("torch").specifier.contains(ci_torch())


class TestPython:
    def test_the_space_runs_a_python_zerogpu_has(self):
        """README's front-matter python_version is one ZeroGPU runs."""
        front = (ROOT / "README.md").read_text().split("---", 2)[1]
        version = re.search(r'^python_version:\s*"?([0-9.]+)"?', front, re.M)
        assert version, "README.md's front-matter sets no python_version"
        assert version.group(1) in ZEROGPU_PYTHON


class TestExtras:
    def test_gradio_has_the_mcp_and_oauth_extras(self):
        """Without the extras, the MCP server is off and a LoginButton app fails at launch."""
        assert {"mcp", "oauth"} <= requirement("gradio").extras

    def test_the_mcp_server_pins_resolve_together(self):
        """Gradio's MCP server needs mcp<2 and pydantic<=2.12.5 (with mcp 2.x it is silently off)."""
        assert Version(next(iter(requirement("mcp").specifier)).version) < Version("2")
        assert requirement("pydantic").specifier.contains("2.12.5")
