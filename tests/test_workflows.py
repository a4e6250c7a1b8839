"""Tests for .github/workflows: valid against GitHub's workflow schema, and wired the way the deploy needs."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.deploy_space import DEPLOY_OWN, SPACE_PREFIX, space_settings

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored GitHub workflow schema: offline, no binary to download."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(path: Path) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def pin(requirements: str, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}(?:\[[^\]]*\])?==(\S+)", requirements, re.MULTILINE | re.IGNORECASE)
    assert match, f"{package} is not pinned"
    return match.group(1)


@pytest.mark.e2e
class TestSchema:
    def test_workflows_are_valid(self):
        """Both workflows pass GitHub's workflow schema."""
        result = check_jsonschema(CI, DEPLOY)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_minimal_workflow_passes(self, tmp_path):
        """A minimal valid workflow passes, so the rejections below are about their one defect."""
        path = tmp_path / "minimal.yml"
        path.write_text(MINIMAL)
        result = check_jsonschema(path)
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize(
        ("old", "new", "reported"),
        [
            ("    runs-on: ubuntu-latest\n", "", "'runs-on' is a required property"),  # a job without runs-on
            ("on: push", "on: pushed", "'pushed'"),  # an event that does not exist
            ("      - run: echo hi", "      - uses: actions/checkout@v4\n        run: echo hi", "$.jobs.t"),  # both
            ("cancel-in-progress", "cancel_in_progress", "$.concurrency"),  # a misspelt key
        ],
        ids=["no-runs-on", "unknown-event", "uses-and-run", "misspelt-key"],
    )
    def test_broken_workflow_is_rejected(self, tmp_path, old, new, reported):
        """The check really fails on an invalid workflow, and points at the defect."""
        assert old in MINIMAL
        path = tmp_path / "broken.yml"
        path.write_text(MINIMAL.replace(old, new))
        result = check_jsonschema(path)
        assert result.returncode != 0, result.stdout
        assert reported in result.stdout


MINIMAL = """\
on: push
concurrency:
  group: g
  cancel-in-progress: false
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
"""


@pytest.mark.unit
class TestCI:
    def test_runs_on_push_and_pull_request(self):
        """CI runs on every push and pull request, and can be called by deploy.yml."""
        assert {"push", "pull_request", "workflow_call"} <= set(load(CI)["on"])

    def test_python_matrix(self):
        """Python 3.11 and 3.12, as strings (an unquoted 3.10 would be 3.1)."""
        (job,) = load(CI)["jobs"].values()
        assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]

    def test_runs_the_project_checks(self):
        """The job runs `bash .ci/run`."""
        assert "bash .ci/run" in [step.get("run") for step in steps(load(CI))]


@pytest.mark.unit
class TestDeploy:
    def test_triggers(self):
        """Push to main and manual dispatch, nothing else."""
        on = load(DEPLOY)["on"]
        assert set(on) == {"push", "workflow_dispatch"}
        assert on["push"] == {"branches": ["main"]}

    def test_deploys_only_after_the_tests(self):
        """The deploy job needs the test job, which is the CI workflow itself."""
        jobs = load(DEPLOY)["jobs"]
        assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
        assert jobs["deploy"]["needs"] in ("test", ["test"])

    def test_deploys_main_only(self):
        """A manual run from another branch does not push it to the Space."""
        assert load(DEPLOY)["jobs"]["deploy"]["if"] == "github.ref == 'refs/heads/main'"

    def test_two_deploys_never_race(self):
        """A concurrency group per Space, and a running deploy is never cancelled half-way."""
        concurrency = load(DEPLOY)["jobs"]["deploy"]["concurrency"]
        assert "vars.SPACE_ID" in concurrency["group"]
        assert concurrency["cancel-in-progress"] is False

    def test_token_and_space_id(self):
        """HF_TOKEN comes from the repository's secrets, SPACE_ID from its variables."""
        env = self.deploy_step()["env"]
        assert env["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
        assert env["SPACE_ID"] == "${{ vars.SPACE_ID }}"

    def test_space_settings_are_names_the_script_accepts(self):
        """Every SPACE_ name passed to the deploy, besides its own SPACE_ID and SPACE_HARDWARE, is a Space setting."""
        passed = {name for name in self.deploy_step()["env"] if name.startswith(SPACE_PREFIX)}
        accepted = {setting.source for setting in space_settings()}
        assert passed - accepted == {"SPACE_ID", "SPACE_HARDWARE"}

    def test_space_settings_come_from_the_right_store(self):
        """A Space secret comes from the repository's secrets, a Space variable from its variables, same name."""
        env = self.deploy_step()["env"]
        settings = [setting for setting in space_settings() if setting.source in env]
        for setting in settings:
            store = "secrets" if setting.secret else "vars"
            assert env[setting.source] == f"${{{{ {store}.{setting.source} }}}}", setting.source
        assert {s.key for s in settings if s.secret} == {"OPENAI_API_KEY", "HF_TOKEN", "HISTORY_SECRET", "APP_AUTH"}

    def test_passes_the_main_space_settings(self):
        """The settings a Space owner most often sets are wired, each under its SPACE_ name."""
        env = self.deploy_step()["env"]
        wanted = {
            "LLM_BACKEND",
            "LLM_MODELS",
            "LLM_MODEL",
            "OPENAI_BASE_URL",
            "HF_ROUTER_MODELS",
            "ANONYMOUS_CHAT",
            "SIGN_IN",
            "SYSTEM_PROMPT",
            "OPENAI_API_KEY",
            "HF_TOKEN",
            "HISTORY_SECRET",
            "APP_AUTH",
        }
        assert {SPACE_PREFIX + name for name in wanted} <= set(env)

    def test_no_plain_space_setting_names(self):
        """No setting is passed under its plain name: the script would not push it, and HF_TOKEN is the deploy's."""
        env = self.deploy_step()["env"]
        plain = {setting.key for setting in space_settings()} & set(env)
        assert plain == {"HF_TOKEN"}
        assert set(env) - {s.source for s in space_settings()} == DEPLOY_OWN

    def test_secrets_never_interpolated_into_commands(self):
        """Secrets reach the script through env only: `${{ secrets.X }}` in a run line would land in the log."""
        for workflow in (CI, DEPLOY):
            for step in steps(load(workflow)):
                assert "secrets." not in step.get("run", ""), step

    def test_hub_pins_match_the_space(self):
        """The deploy installs requirements.txt's huggingface_hub and the gradio_client that gradio's pin needs."""
        install = next(step["run"] for step in steps(load(DEPLOY)) if "pip install" in step.get("run", ""))
        requirements = (ROOT / "requirements.txt").read_text()
        assert f'"huggingface_hub=={pin(requirements, "huggingface_hub")}"' in install
        assert importlib.metadata.version("gradio") == pin(requirements, "gradio")
        client = next(r for r in importlib.metadata.requires("gradio") or [] if r.startswith("gradio-client"))
        assert f'"gradio_client=={client.split("==")[1]}"' in install

    def test_runs_the_deploy_script(self):
        """The deploy step runs scripts/deploy_space.py, which exists."""
        assert self.deploy_step()["run"].startswith("python scripts/deploy_space.py")
        assert (ROOT / "scripts" / "deploy_space.py").is_file()

    def deploy_step(self) -> dict[str, Any]:
        (step,) = [step for step in steps(load(DEPLOY)) if "HF_TOKEN" in step.get("env", {})]
        return step


@pytest.mark.unit
class TestActions:
    @pytest.mark.parametrize("path", [CI, DEPLOY], ids=["ci", "deploy"])
    def test_actions_are_pinned(self, path):
        """Actions are GitHub's own, and name a release (or a commit), never a moving branch."""
        for step in steps(load(path)):
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref), step["uses"]
                assert action in {"actions/checkout", "actions/setup-python", "actions/setup-node"}, step["uses"]

    def test_read_only_token(self):
        """Both workflows give the GitHub token read access only; the Hub token is a separate secret."""
        for path in (CI, DEPLOY):
            assert load(path)["permissions"] == {"contents": "read"}
