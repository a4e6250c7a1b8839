"""README.md tells the truth: the variables, the quickstart CI runs, the layout of the tree, the API's shapes."""

from __future__ import annotations

import re
import subprocess

import pytest

from app import build_demo
from scripts.config_table import render
from services.access import Access
from services.config import VARIABLES, load_settings
from tests.support.apps import ROOT
from tests.support.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.unit

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def quickstart_commands() -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section("Quickstart"), flags=re.S)]


class TestConfiguration:
    def test_the_table_is_the_variable_table(self):
        """README's Configuration table is exactly what scripts/config_table.py writes from VARIABLES."""
        table = "\n".join(line for line in section("Configuration").splitlines() if line.startswith("|"))
        assert table == render()

    def test_every_variable_is_in_it(self):
        """Each variable the app reads (the table in services/config.py) has its row, Gradio's own included."""
        for variable in VARIABLES:
            assert f"| `{variable.name}` |" in README


def slug(heading: str) -> str:
    """The anchor GitHub and the Hub give a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


class TestLinks:
    def test_every_link_within_the_readme_reaches_a_heading(self):
        """`[text](#anchor)` links, those of the Configuration table's rows included, name headings that exist."""
        headings = {slug(title) for title in re.findall(r"^#{1,6} (.+)$", README, flags=re.M)}
        anchors = set(re.findall(r"\]\(#([^)]+)\)", README))
        assert "the-owners-bill" in anchors
        assert anchors - headings == set()

    def test_the_slug_rule(self):
        assert slug("The owner's bill") == "the-owners-bill"
        assert slug("gr.load") == "grload"
        assert slug("HTTP (curl)") == "http-curl"


class TestQuickstart:
    def test_a_virtual_environment_then_the_cpu_build_first(self):
        """A newcomer on Debian makes a virtual environment (its pip refuses a system install), then installs the
        CPU build of torch before the requirements (which would pull PyPI's CUDA build), at the version CI tests,
        failing fast where PyTorch's index cannot be reached."""
        run, _, _ = quickstart_commands()
        venv, torch, serve = run.splitlines()
        assert venv == "python3 -m venv .venv && . .venv/bin/activate"
        assert torch.startswith("pip install --retries 1 --timeout 30 torch==2.13.0 --index-url ")
        assert torch.endswith("https://download.pytorch.org/whl/cpu")
        assert serve == "pip install -r requirements.txt && python app.py"
        assert '"torch==2.13.0"' in (ROOT / ".ci" / "run").read_text()

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run ends with exactly the test command README.md gives."""
        _, _, test = quickstart_commands()
        assert test.startswith("pip install -r requirements-dev.txt && ")
        lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
        assert lines[-1] == test


class TestLayout:
    def test_it_matches_the_tree(self):
        """One line per file of the app, the services, the UI, the scripts, the bench and CI; each exists."""
        listed = set(re.findall(r"^- `([^`]+)`", section("Layout"), flags=re.M))
        listed |= set(re.findall(r"; `([^`]+)` —", section("Layout")))
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
        files = set(tracked.stdout.split())
        folders = {name for name in listed if name.endswith("/")}
        for name in listed - folders:
            assert name in files, f"README's Layout lists {name}, which the tree does not have"
        # Every file but the tests (described by their folder), README itself and .gitignore.
        must = {name for name in files if not name.startswith(("tests/", ".gitignore", "README.md"))}
        assert must - listed == set(), "files without a line in README's Layout"
        assert "tests/" in folders


class TestApi:
    def test_the_table_matches_the_api(self):
        """Each row's endpoints, input names and types, and return types are what the API info says."""
        demo = build_demo(load_settings({"HISTORY_SECRET": "x" * 40}), Access(owner=ScriptedBackend()))
        info = demo.get_api_info()["named_endpoints"]
        table = section("API").split("| Endpoint | Inputs | Returns |", 1)[1].split("\n\n", 1)[0]
        documented: set[str] = set()
        for row in table.strip().splitlines()[1:]:
            endpoints, inputs, returns = (cell.strip() for cell in row.strip("|").split("|"))
            for endpoint in re.findall(r"`(/\w+)`", endpoints):
                documented.add(endpoint)
                parameters = [(p["parameter_name"], p["python_type"]["type"]) for p in info[endpoint]["parameters"]]
                assert re.findall(r"`(\w+): ([\w\[\]]+)`", inputs) == parameters, endpoint
                kinds = ", ".join(r["python_type"]["type"] for r in info[endpoint]["returns"])
                assert returns.startswith(f"`{kinds}`"), endpoint
        assert documented == set(info)
