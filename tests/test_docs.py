"""README.md tells the truth: every variable documented, CI runs the README's own test command."""

from __future__ import annotations

import re

from tests.support.apps import ROOT

README = (ROOT / "README.md").read_text()


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


class TestReadme:
    def test_every_variable_is_documented(self):
        """Each variable services/config.py reads has a row in the Configuration table."""
        source = (ROOT / "services" / "config.py").read_text()
        variables = set(re.findall(r'env, "([A-Z][A-Z0-9_]+)"', source)) | set(
            re.findall(r'env\.get\("([A-Z][A-Z0-9_]+)"', source)
        )
        assert len(variables) > 15
        table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
        missing = sorted(v for v in variables if f"| `{v}` |" not in table)
        assert missing == []

    def test_gradio_server_variables_are_documented(self):
        """Gradio's own host and port variables are in the table too."""
        for variable in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
            assert f"| `{variable}` |" in README

    def test_quickstart_is_two_commands(self):
        """One command installs and runs the app, one installs and runs the tests."""
        run, test = quickstart_commands()
        assert run == "pip install -r requirements.txt && python app.py"
        assert test.startswith("pip install -r requirements-dev.txt && ")

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run ends with exactly the test command README.md gives."""
        _, test = quickstart_commands()
        lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
        assert lines[-1] == test
