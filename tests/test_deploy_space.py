"""Tests for scripts/deploy_space.py against a recording HfApi double, plus the dry run on the real tree."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from huggingface_hub import SpaceRuntime
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from scripts import deploy_space
from scripts.deploy_space import (
    InvalidConfigError,
    InvalidSpaceIdError,
    MissingTokenError,
    SmokeTestError,
    SpaceFailedError,
    SpaceTimeoutError,
    UnsafeVariableError,
    WaitPolicy,
    deploy,
    gradio_smoke,
    main,
    plan_files,
    space_settings,
)
from services.config import VARIABLES, Variable

ROOT = Path(__file__).resolve().parent.parent
SPACE = "someone/space-chat"
URL = f"https://huggingface.co/spaces/{SPACE}"
SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_deploy_token_never_printed"
NEW = "<the commit of the latest upload>"  # stands for the fake's newest commit id in a scripted runtime

# What the Space runs: the fake's remote file set must end up exactly this (plus .gitattributes).
RUNTIME_FILES = (
    "app.py",
    "requirements.txt",
    "README.md",
    "services/__init__.py",
    "services/chat.py",
    "services/llm/__init__.py",
    "services/llm/openai_backend.py",
    "ui/__init__.py",
    "ui/chat.py",
    "ui/saved_chats.js",
    "assets/logo.svg",
    "docs/screenshot.png",
)
# Files the repository holds that must never reach the Space, each with the reason.
EXCLUDED_FILES = (
    "tests/__init__.py",  # tests
    "tests/test_app.py",
    "services/tests/test_inner.py",  # tests, even inside an uploaded package
    "bench/bench_chat.py",  # benchmarks
    ".ci/run",  # CI tooling
    ".github/workflows/ci.yml",
    "scripts/deploy_space.py",  # this deploy tooling
    "pyproject.toml",  # tool settings only
    "requirements-dev.txt",  # test requirements
    "services/__pycache__/chat.cpython-311.pyc",  # caches
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/0.17.6/123",
    ".gradio/flagged/log.csv",
    ".env",  # local secrets
    ".env.local",
    "services/.env",
    "deploy-key.pem",
    "services/llm/id_rsa",
    ".venv/lib/python3.11/site.py",  # a virtual environment
    "docs/notes.md",  # docs text: only README's images go
    "notes.py",  # a root module the allow-list does not name
    "app.log",  # logs
    ".git/config",  # git itself
)


def hub_error(status: int, message: str) -> HfHubHTTPError:
    """An HfHubHTTPError as huggingface_hub raises it, with a response attached."""
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeHub:
    """Records every HfApi call and models the Space: its files, variables, secrets and a scripted runtime.

    `upload_folder` applies the patterns with huggingface_hub's own filter and the same rules as the real method:
    defaults appended to the ignore list, remote files matching `delete_patterns` deleted unless re-uploaded,
    `.gitattributes` never deleted.
    """

    def __init__(self, *, remote: set[str] | None = None, runtimes: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.exists = remote is not None
        self.remote: set[str] = set(remote or ())
        self.variables: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.commits: list[str] = []
        self.runtimes = list(runtimes or [{"stage": "BUILDING"}, {"stage": "RUNNING", "sha": NEW}])
        self.fail: dict[str, Exception] = {}
        self.deleted: set[str] = set()

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self._record("create_repo", repo_id=repo_id, **kwargs)
        if not self.exists:
            self.exists = True
            self.remote = {".gitattributes"}
        return f"https://huggingface.co/spaces/{repo_id}"

    def add_space_variable(self, repo_id: str, key: str, value: str, **kwargs: Any) -> dict[str, Any]:
        self._record("add_space_variable", repo_id=repo_id, key=key, value=value, **kwargs)
        self.variables[key] = value
        return {}

    def add_space_secret(self, repo_id: str, key: str, value: str, **kwargs: Any) -> None:
        self._record("add_space_secret", repo_id=repo_id, key=key, value=value, **kwargs)
        self.secrets[key] = value

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
        delete_patterns: list[str] | None = None,
        **kwargs: Any,
    ) -> SimpleNamespace:
        self._record(
            "upload_folder",
            repo_id=repo_id,
            folder_path=folder_path,
            allow_patterns=list(allow_patterns or []),
            ignore_patterns=list(ignore_patterns or []),
            delete_patterns=list(delete_patterns or []),
            **kwargs,
        )
        assert self.exists, "upload_folder assumes that the repo already exists"
        ignore = ignore_patterns if ignore_patterns is not None else []
        ignore += DEFAULT_IGNORE_PATTERNS  # in place, like HfApi.upload_folder
        root = Path(folder_path)
        local = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
        added = set(filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore))
        deleted = set()
        if delete_patterns is not None:
            deleted = set(filter_repo_objects(self.remote, allow_patterns=delete_patterns))
            deleted -= {".gitattributes"} | added
        self.remote = (self.remote - deleted) | added
        self.deleted = deleted
        self.commits.append(f"{len(self.commits) + 1:040x}")
        return SimpleNamespace(oid=self.commits[-1], added=added, deleted=deleted)

    def get_space_runtime(self, repo_id: str, **kwargs: Any) -> SpaceRuntime:
        self._record("get_space_runtime", repo_id=repo_id, **kwargs)
        raw = self.runtimes.pop(0) if len(self.runtimes) > 1 else self.runtimes[0]
        if raw.get("sha") == NEW:
            raw = {**raw, "sha": self.commits[-1]}
        return SpaceRuntime(raw)


class FakeSmoke:
    """Stands in for the gradio_client call: records the Space it was asked about, answers or raises."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    def __call__(self, space_id: str) -> str:
        self.calls.append(space_id)
        if self.error is not None:
            raise self.error
        return "Hello, deploy!"


def write(root: Path, relative: str, text: str = "x\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository tree with the real README.md and requirements.txt, the runtime files and every exclusion."""
    root = tmp_path / "repo"
    for name in (*RUNTIME_FILES, *EXCLUDED_FILES):
        write(root, name)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copy(ROOT / "requirements.txt", root / "requirements.txt")
    return root


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def run(hub: FakeHub, root: Path, clock: FakeClock, **overrides: Any) -> str | None:
    """deploy() with test defaults: a token, a fake clock and a smoke test that answers."""
    kwargs: dict[str, Any] = {
        "space_id": SPACE,
        "root": root,
        "token": TOKEN,
        "sha": SHA,
        "env": {},
        "wait": WaitPolicy(timeout=600, poll_interval=5, settle=30, clock=clock, sleep=clock.sleep),
        "smoke": FakeSmoke(),
        "say": lambda line: None,
    }
    kwargs.update(overrides)
    return deploy(hub, **kwargs)


@pytest.mark.unit
class TestFirstDeploy:
    def test_steps_in_order(self, project, clock):
        """create_repo, then upload_folder, then runtime polls until RUNNING, then the smoke test."""
        hub, smoke = FakeHub(), FakeSmoke()
        commit = run(hub, project, clock, smoke=smoke)
        assert hub.names() == ["create_repo", "upload_folder", "get_space_runtime", "get_space_runtime"]
        assert smoke.calls == [SPACE]
        assert commit == hub.commits[-1]

    def test_creates_a_gradio_space_idempotently(self, project, clock):
        """create_repo(repo_type="space", space_sdk="gradio", exist_ok=True)."""
        hub = FakeHub()
        run(hub, project, clock)
        assert hub.calls[0] == (
            "create_repo",
            {"repo_id": SPACE, "repo_type": "space", "space_sdk": "gradio", "exist_ok": True},
        )

    def test_hardware_is_passed_on_creation(self, project, clock):
        """--hardware / SPACE_HARDWARE reaches create_repo (free accounts may only create ZeroGPU Spaces)."""
        hub = FakeHub()
        run(hub, project, clock, hardware="zero-a10g")
        assert hub.calls[0][1]["space_hardware"] == "zero-a10g"

    def test_space_receives_exactly_the_runtime_files(self, project, clock):
        """The Space ends up with what it runs, and nothing from the exclusions."""
        hub = FakeHub()
        run(hub, project, clock)
        assert hub.remote == {*RUNTIME_FILES, ".gitattributes"}

    def test_upload_is_a_space_commit_carrying_the_sha(self, project, clock):
        """The commit message carries the git SHA; the upload targets the Space repo."""
        hub = FakeHub()
        run(hub, project, clock, env={"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r"})
        upload = dict(hub.calls)["upload_folder"]
        assert upload["repo_type"] == "space"
        assert SHA in upload["commit_message"]
        assert upload["commit_description"] == f"Source: https://github.com/o/r/commit/{SHA}"

    def test_ignore_patterns_are_a_second_net(self, project, clock, monkeypatch):
        """Even with an allow-all list, tests, tooling, caches and secrets stay out."""
        monkeypatch.setattr(deploy_space, "ALLOW_PATTERNS", ("*",))
        hub = FakeHub()
        run(hub, project, clock)
        leaked = hub.remote & set(EXCLUDED_FILES)
        assert leaked == {"docs/notes.md", "notes.py"}  # excluded by the allow-list alone, on purpose

    def test_patterns_are_fresh_lists(self, project, clock):
        """upload_folder extends ignore_patterns in place: the module's lists must not grow between deploys."""
        hub = FakeHub()
        run(hub, project, clock)
        run(hub, project, clock)
        first, second = (kwargs for name, kwargs in hub.calls if name == "upload_folder")
        assert first["ignore_patterns"] == second["ignore_patterns"] == list(deploy_space.IGNORE_PATTERNS)

    def test_dry_run_lists_what_the_upload_sends(self, project, clock):
        """plan_files (the dry run's list) is exactly the set upload_folder selects."""
        hub = FakeHub()
        run(hub, project, clock)
        assert plan_files(project) == sorted(RUNTIME_FILES)
        assert set(plan_files(project)) == hub.remote - {".gitattributes"}


@pytest.mark.unit
class TestRedeploy:
    def test_removed_file_leaves_the_space(self, project, clock):
        """A file deleted from the repo is deleted from the Space at the next deploy."""
        hub = FakeHub()
        run(hub, project, clock)
        (project / "services" / "chat.py").unlink()
        run(hub, project, clock)
        assert hub.remote == ({*RUNTIME_FILES} - {"services/chat.py"}) | {".gitattributes"}

    def test_removed_folder_leaves_the_space(self, project, clock):
        """A whole removed folder (assets/) goes too."""
        hub = FakeHub()
        run(hub, project, clock)
        shutil.rmtree(project / "assets")
        run(hub, project, clock)
        assert "assets/logo.svg" not in hub.remote

    def test_files_we_do_not_manage_stay(self, project, clock):
        """Files added in the Space's web editor outside our patterns, and .gitattributes, are kept."""
        hub = FakeHub(remote={".gitattributes", "LICENSE", "notes/owner.md", "README.md"})
        run(hub, project, clock)
        assert {".gitattributes", "LICENSE", "notes/owner.md"} <= hub.remote

    def test_stale_excluded_files_are_cleaned(self, project, clock):
        """Tests, tooling or an .env an older manual upload left on the Space are removed."""
        stale = {"tests/test_old.py", ".env", "bench/old.py", "services/__pycache__/x.pyc", "pyproject.toml"}
        hub = FakeHub(remote={".gitattributes", "app.py", *stale})
        run(hub, project, clock)
        assert not hub.remote & stale
        assert hub.remote == {*RUNTIME_FILES, ".gitattributes"}

    def test_readme_is_never_deleted(self, project, clock):
        """README.md matches the delete patterns but is re-uploaded, so the Space keeps its config."""
        hub = FakeHub(remote={".gitattributes", "README.md"})
        run(hub, project, clock)
        assert "README.md" not in hub.deleted
        assert "README.md" in hub.remote


@pytest.mark.unit
class TestWait:
    @pytest.mark.parametrize("stage", ["BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"])
    def test_failed_stage_stops_with_stage_and_url(self, project, clock, stage):
        """A failed stage raises with the stage, the Hub's reason and the Space URL; no smoke test."""
        hub = FakeHub(runtimes=[{"stage": "BUILDING"}, {"stage": stage, "sha": NEW, "errorMessage": "exit 1\nx"}])
        smoke = FakeSmoke()
        with pytest.raises(SpaceFailedError) as caught:
            run(hub, project, clock, smoke=smoke)
        assert caught.value.stage == stage
        assert stage in str(caught.value)
        assert URL in str(caught.value)
        assert "exit 1 x" in str(caught.value)
        assert smoke.calls == []

    def test_build_error_exits_non_zero_with_one_line(self, project, clock, capsys):
        """Through the CLI, a build error is exit 1 and one `error:` line naming the stage and the URL."""
        hub = FakeHub(runtimes=[{"stage": "BUILDING"}, {"stage": "BUILD_ERROR", "sha": NEW}])
        env = {"HF_TOKEN": TOKEN, "SPACE_ID": SPACE, "GITHUB_SHA": SHA}
        code = cli(hub, clock, project, env=env)
        err = capsys.readouterr().err.splitlines()
        assert code == 1
        assert len(err) == 1
        assert err[0].startswith("error: ")
        assert "BUILD_ERROR" in err[0]
        assert URL in err[0]

    def test_timeout(self, project, clock):
        """A Space that never leaves BUILDING fails at the timeout, naming the stage and the URL."""
        hub = FakeHub(runtimes=[{"stage": "BUILDING"}])
        with pytest.raises(SpaceTimeoutError) as caught:
            run(hub, project, clock, wait=WaitPolicy(timeout=60, poll_interval=5, clock=clock, sleep=clock.sleep))
        assert "timed out" in str(caught.value)
        assert "BUILDING" in str(caught.value)
        assert URL in str(caught.value)
        assert clock.now == 60

    def test_previous_build_running_is_not_success(self, project, clock):
        """The old build's RUNNING (other commit) right after the upload is not taken for the new one."""
        smoke = FakeSmoke()
        hub = FakeHub(
            runtimes=[{"stage": "RUNNING", "sha": "old"}, {"stage": "BUILDING"}, {"stage": "RUNNING", "sha": NEW}]
        )
        run(hub, project, clock, smoke=smoke)
        assert hub.names().count("get_space_runtime") == 3
        assert smoke.calls == [SPACE]

    def test_previous_runtime_error_is_not_failure(self, project, clock):
        """A RUNTIME_ERROR left by the previous deploy, before the Hub notices the upload, is not this deploy's."""
        hub = FakeHub(runtimes=[{"stage": "RUNTIME_ERROR", "sha": "old"}, {"stage": "BUILDING"}, {"stage": "RUNNING"}])
        run(hub, project, clock)
        assert hub.names().count("get_space_runtime") == 3

    def test_running_without_a_build_counts_after_settle(self, project, clock):
        """An upload that changed nothing does not rebuild: RUNNING counts once `settle` has passed."""
        hub = FakeHub(runtimes=[{"stage": "RUNNING"}])
        run(hub, project, clock)
        assert clock.now >= 30
        assert clock.now < 60

    def test_old_commit_forever_times_out_naming_it(self, project, clock):
        """If the Space keeps running another commit, the timeout says which."""
        hub = FakeHub(runtimes=[{"stage": "BUILDING"}, {"stage": "RUNNING", "sha": "old"}])
        with pytest.raises(SpaceTimeoutError, match="running commit old"):
            run(hub, project, clock, wait=WaitPolicy(timeout=60, poll_interval=5, clock=clock, sleep=clock.sleep))

    def test_no_wait_skips_waiting_and_smoke(self, project, clock):
        """wait=None returns after the upload, without polling or calling /greet."""
        hub, smoke = FakeHub(), FakeSmoke()
        run(hub, project, clock, wait=None, smoke=smoke)
        assert "get_space_runtime" not in hub.names()
        assert smoke.calls == []


@pytest.mark.e2e
class TestSmoke:
    @pytest.mark.unit
    def test_failing_smoke_fails_the_deploy(self, project, clock, capsys):
        """A Space that does not answer /greet makes the CLI exit 1 with the reason."""
        hub = FakeHub()
        smoke = FakeSmoke(SmokeTestError("/greet on someone/space-chat did not answer after 5 attempt(s): boom"))
        env = {"HF_TOKEN": TOKEN, "SPACE_ID": SPACE}
        code = cli(hub, clock, project, env=env, smoke=smoke)
        assert code == 1
        assert "did not answer" in capsys.readouterr().err

    @pytest.mark.unit
    def test_no_smoke_flag(self, project, clock):
        """--no-smoke deploys and waits without calling /greet."""
        hub, smoke = FakeHub(), FakeSmoke()
        env = {"HF_TOKEN": TOKEN, "SPACE_ID": SPACE}
        code = cli(hub, clock, project, "--no-smoke", env=env, smoke=smoke)
        assert code == 0
        assert smoke.calls == []
        assert "get_space_runtime" in hub.names()

    @pytest.mark.e2e
    def test_gradio_smoke_against_the_real_app(self, tmp_path):
        """The default smoke test calls the real app's /greet through gradio_client and gets the greeting."""
        from tests.support.apps import start_app, stop_app

        app = start_app(tmp_path)
        try:
            assert gradio_smoke(app.url, attempts=1) == "Hello, deploy!"
        finally:
            stop_app(app)

    @pytest.mark.e2e
    @pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas deprecations inside gradio, not ours
    def test_gradio_smoke_wrong_answer(self):
        """An app that answers /greet with something else fails the smoke test."""
        import gradio as gr

        with gr.Blocks(analytics_enabled=False) as demo:
            name, out = gr.Textbox(), gr.Textbox()
            name.submit(lambda text: "nope", name, out, api_name="greet")
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        try:
            with pytest.raises(SmokeTestError, match="answered 'nope'"):
                gradio_smoke(demo.local_url, attempts=1)
        finally:
            demo.close()

    @pytest.mark.unit
    def test_gradio_smoke_no_answer_retries_then_fails(self):
        """Nothing listening: every attempt fails, with a pause between, then SmokeTestError."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        sleeps: list[float] = []
        with pytest.raises(SmokeTestError, match="after 3 attempt"):
            gradio_smoke(f"http://127.0.0.1:{port}/", attempts=3, delay=2, sleep=sleeps.append)
        assert sleeps == [2, 2]


SECRETS = {
    "HF_TOKEN": TOKEN,
    "SPACE_OPENAI_API_KEY": "sk-openai-secret-value-1234",
    "SPACE_HF_TOKEN": "hf_space_read_token_5678",
    "OPENAI_API_KEY": "sk-local-chatting-key-9012",  # exported for local chatting: never pushed
}
# The rows of VARIABLES a Space may hold: not Gradio's (no field), not the platform's, not those Spaces sets.
SPACE_ROWS = [
    variable
    for variable in VARIABLES
    if variable.field is not None and variable.section != "platform" and variable.name != "OAUTH_CLIENT_SECRET"
]


def sample_value(variable: Variable) -> str:
    """A value the variable's own parser takes, from a few that between them suit every row."""
    samples = (
        "1",
        "60",
        "1048576",
        "auto",
        "owner",
        "system",
        "true",
        "admin:pw",
        "https://api.example.com/v1",
        "{}",
        "2000",
    )
    for value in samples:
        try:
            variable.parse(value)
        except ValueError:
            continue
        return value
    raise AssertionError(f"no sample value for {variable.name}")


def settings_lines(lines: list[str]) -> list[str]:
    """The plan's settings lines, as deploy() says them: those after "Space settings:", until "Set" or "Uploading"."""
    start = lines.index("Space settings:") + 1
    end = next(i for i, line in enumerate(lines) if i > start and not line.startswith("  "))
    return [line.strip() for line in lines[start:end]]


@pytest.mark.unit
class TestSettingsAndSecrets:
    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SPACE_ID": SPACE,
            "GITHUB_SHA": SHA,
            "SPACE_LLM_MODEL": "gpt-4o-mini",
            "SPACE_OPENAI_BASE_URL": "https://api.example.com/v1",
            "SPACE_LLM_BACKEND": "",  # an unset GitHub variable arrives empty
            "LLM_MODEL": "llama3.2",  # a local setting, never pushed
            **SECRETS,
            **extra,
        }

    def test_synced_before_the_upload(self, project, clock):
        """SPACE_ settings reach the Space under their own names, before the upload that triggers the build."""
        hub = FakeHub()
        assert cli(hub, clock, project, env=self.env()) == 0
        assert hub.variables == {"LLM_MODEL": "gpt-4o-mini", "OPENAI_BASE_URL": "https://api.example.com/v1"}
        assert hub.secrets == {"OPENAI_API_KEY": SECRETS["SPACE_OPENAI_API_KEY"], "HF_TOKEN": SECRETS["SPACE_HF_TOKEN"]}
        names = hub.names()
        assert names.index("upload_folder") > max(i for i, n in enumerate(names) if n.startswith("add_space_"))

    def test_plain_openai_api_key_is_not_pushed(self, project, clock):
        """An OPENAI_API_KEY exported for local chatting stays local: no SPACE_ name, no Space secret."""
        hub, lines = FakeHub(), []
        run(hub, project, clock, env={"OPENAI_API_KEY": SECRETS["OPENAI_API_KEY"]}, say=lines.append)
        assert hub.secrets == {}
        assert hub.variables == {}
        assert settings_lines(lines) == ["none set", "not pushed (set here without SPACE_): OPENAI_API_KEY"]

    def test_space_openai_api_key_is_the_openai_api_key_secret(self, project, clock):
        """SPACE_OPENAI_API_KEY becomes the Space's OPENAI_API_KEY secret, and nothing else."""
        hub = FakeHub()
        run(hub, project, clock, env={"SPACE_OPENAI_API_KEY": SECRETS["SPACE_OPENAI_API_KEY"]})
        assert hub.secrets == {"OPENAI_API_KEY": SECRETS["SPACE_OPENAI_API_KEY"]}
        assert hub.variables == {}

    def test_plan_names_each_setting_with_its_source(self, project, clock):
        """The real run's plan and log say what each setting is and where it came from; never its value."""
        hub, lines = FakeHub(), []
        env = {"SPACE_HF_TOKEN": SECRETS["SPACE_HF_TOKEN"], "SPACE_LLM_MODELS": "gpt-4o,gpt-4o-mini"}
        run(hub, project, clock, env=env, say=lines.append)
        expected = ["HF_TOKEN (secret, from SPACE_HF_TOKEN)", "LLM_MODELS (variable, from SPACE_LLM_MODELS)"]
        assert settings_lines(lines) == expected
        assert [line for line in lines if line.startswith("Set ")] == [f"Set {line}" for line in expected]
        assert not [line for line in lines if "gpt-4o" in line or SECRETS["SPACE_HF_TOKEN"] in line]

    def test_deploy_token_never_becomes_a_space_secret(self, project, clock, capsys):
        """The deploy's HF_TOKEN is not handed to the Space, and is named as not pushed."""
        hub = FakeHub()
        env = self.env()
        del env["SPACE_HF_TOKEN"]
        assert cli(hub, clock, project, env=env) == 0
        assert "HF_TOKEN" not in hub.secrets
        assert TOKEN not in hub.secrets.values()
        assert TOKEN not in hub.variables.values()
        out = capsys.readouterr().out
        assert "  not pushed (set here without SPACE_): OPENAI_API_KEY, LLM_MODEL, HF_TOKEN (the deploy's token)" in out

    def test_deploy_token_as_space_hf_token_is_refused(self, project, clock, capsys):
        """SPACE_HF_TOKEN set to the deploy's own write token stops the deploy before any call, without echoing it."""
        hub = FakeHub()
        code = cli(hub, clock, project, env=self.env(SPACE_HF_TOKEN=TOKEN))
        err = capsys.readouterr().err
        assert code == 1
        assert hub.calls == []
        assert err == (
            "error: 1 Space setting problem(s), nothing sent: SPACE_HF_TOKEN is the deploy's own HF_TOKEN: give the"
            " Space a token of its own\n"
        )

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("SPACE_SPACE_ID", "SPACE_ID is set by Spaces, never pushed"),
            (
                "SPACE_GRADIO_SERVER_PORT",
                "GRADIO_SERVER_PORT is the platform's own (Gradio or Spaces sets it), never pushed",
            ),
            (
                "SPACE_GRADIO_SERVER_NAME",
                "GRADIO_SERVER_NAME is the platform's own (Gradio or Spaces sets it), never pushed",
            ),
            ("SPACE_OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET is set by Spaces, never pushed"),
            ("SPACE_LLM_MODLE", "LLM_MODLE is not a variable the app reads (services/config.py)"),
        ],
    )
    def test_platform_and_unknown_names_are_ignored_with_a_warning(self, project, clock, name, reason):
        """A SPACE_ name that is not a Space setting is not pushed, and the plan warns about it by name."""
        hub, lines = FakeHub(), []
        run(hub, project, clock, env={name: "7861"}, say=lines.append)
        assert hub.variables == {}
        assert hub.secrets == {}
        assert settings_lines(lines) == ["none set", f"warning: {name} is ignored: {reason}"]

    def test_every_space_row_of_the_table_is_accepted(self):
        """The settings are VARIABLES' rows a Space may hold, each as SPACE_<name>, secret where the table says."""
        assert [(s.key, s.source, s.secret) for s in space_settings()] == [
            (v.name, f"SPACE_{v.name}", v.secret) for v in SPACE_ROWS
        ]
        assert space_settings() == deploy_space.SPACE_SETTINGS

    def test_every_space_row_of_the_table_is_pushed(self, project, clock):
        """Each accepted SPACE_ name, with a value its parser takes, reaches the Space under the plain name."""
        hub = FakeHub()
        run(hub, project, clock, env={f"SPACE_{v.name}": sample_value(v) for v in SPACE_ROWS})
        assert set(hub.secrets) == {v.name for v in SPACE_ROWS if v.secret}
        assert set(hub.variables) == {v.name for v in SPACE_ROWS if not v.secret}

    def test_a_row_added_to_the_table_is_picked_up(self, project, clock, monkeypatch):
        """The deploy keeps no list of its own: a new VARIABLES row is pushed from its SPACE_ name at once."""
        new = (
            Variable("NEW_KNOB", "new_knob", str, "A hypothetical setting.", "chat"),
            Variable("NEW_KEY", "new_key", str, "A hypothetical secret.", "backend", secret=True),
            Variable("NEW_PORT", None, str, "A hypothetical Gradio variable.", "platform"),
        )
        monkeypatch.setattr(deploy_space, "VARIABLES", (*VARIABLES, *new))
        hub = FakeHub()
        run(hub, project, clock, env={"SPACE_NEW_KNOB": "on", "SPACE_NEW_KEY": "k-1234", "SPACE_NEW_PORT": "1"})
        assert hub.variables == {"NEW_KNOB": "on"}
        assert hub.secrets == {"NEW_KEY": "k-1234"}

    def test_set_by_spaces_matches_the_table(self):
        """SET_BY_SPACES names rows of VARIABLES, and every row whose default is "set by Spaces" is in it."""
        assert {v.name for v in VARIABLES if v.default == "set by Spaces"} == deploy_space.SET_BY_SPACES

    def test_a_setting_may_not_take_a_deploy_name(self):
        """A row whose SPACE_ name is the deploy's own (SPACE_ID, SPACE_HARDWARE) fails loudly, not silently."""
        row = Variable("HARDWARE", "hardware", str, "A hypothetical clash.", "access")
        with pytest.raises(RuntimeError, match=r"deploy's own variables: \['SPACE_HARDWARE'\]"):
            space_settings([*VARIABLES, row])

    def test_values_never_printed(self, project, clock, capsys, caplog):
        """Names are printed; no secret value appears in stdout, stderr or logs, in the dry run either."""
        caplog.set_level(logging.DEBUG)
        hub = FakeHub()
        cli(hub, clock, project, env=self.env())
        main(["--root", str(project), "--dry-run"], env=self.env(), make_api=lambda t: hub)
        out, err = capsys.readouterr()
        text = out + err + caplog.text
        assert "OPENAI_API_KEY (secret, from SPACE_OPENAI_API_KEY)" in out
        for value in (*SECRETS.values(), "gpt-4o-mini", "llama3.2", "api.example.com"):
            assert value not in text

    def test_secret_in_an_error_is_scrubbed(self, project, clock, capsys):
        """If a Hub error ever quotes a secret, even a local one never pushed, the printed line shows ***."""
        hub = FakeHub()
        quoted = " / ".join(SECRETS.values())
        hub.fail["upload_folder"] = hub_error(401, f"401 bad credentials {quoted}")
        code = cli(hub, clock, project, env=self.env())
        out, err = capsys.readouterr()
        assert code == 1
        assert "upload_folder failed" in err
        assert "401 bad credentials *** / *** / *** / ***" in err
        for value in SECRETS.values():
            assert value not in out + err

    def test_credentials_in_a_public_variable_are_refused(self, project, clock, capsys):
        """A URL with user:password@ is not published as a variable; nothing is sent, the value is not echoed."""
        hub = FakeHub()
        env = self.env(SPACE_OPENAI_BASE_URL="https://user:pa55word@llm.example.com/v1")
        code = cli(hub, clock, project, env=env)
        err = capsys.readouterr().err
        assert code == 1
        assert hub.calls == []
        assert "SPACE_OPENAI_BASE_URL holds credentials in its URL" in err
        assert "pa55word" not in err
        with pytest.raises(UnsafeVariableError):
            run(hub, project, clock, env=env)

    def test_credentials_in_a_secret_url_are_pushed(self, project, clock):
        """The same URL in a secret is fine: secrets are private."""
        hub = FakeHub()
        run(hub, project, clock, env={"SPACE_OPENAI_API_KEY": "https://user:pa55word@llm.example.com/v1"})
        assert hub.secrets == {"OPENAI_API_KEY": "https://user:pa55word@llm.example.com/v1"}

    def test_a_value_the_app_would_refuse_stops_the_deploy(self, project, clock, capsys):
        """A value the Space would fail to start with is caught first, named with the reason but not the value."""
        hub = FakeHub()
        code = cli(hub, clock, project, env=self.env(SPACE_LLM_BACKEND="opneai", SPACE_APP_AUTH="no-colon-here"))
        err = capsys.readouterr().err
        assert code == 1
        assert hub.calls == []
        assert err == (
            "error: 2 Space setting problem(s), nothing sent: SPACE_LLM_BACKEND is not a valid LLM_BACKEND: must be"
            " one of auto, openai, local; SPACE_APP_AUTH is not a valid APP_AUTH\n"
        )

    def test_blank_values_are_not_synced(self, project, clock):
        """An unset (empty) GitHub variable leaves the Space's own setting alone."""
        hub = FakeHub()
        run(hub, project, clock, env={"SPACE_LLM_BACKEND": "", "SPACE_LLM_MODEL": "  ", "SPACE_APP_AUTH": ""})
        assert hub.variables == {}
        assert hub.secrets == {}


@pytest.mark.unit
class TestGuards:
    @pytest.mark.parametrize("token", [None, "", "   "])
    def test_missing_token_uploads_nothing(self, project, clock, token):
        """No HF_TOKEN: a clear error before any Hub call."""
        hub = FakeHub()
        with pytest.raises(MissingTokenError, match="HF_TOKEN"):
            run(hub, project, clock, token=(token or "").strip() or None)
        assert hub.calls == []

    def test_missing_token_cli(self, project, clock, capsys):
        """Through the CLI: exit 1, one line naming HF_TOKEN, no call."""
        hub = FakeHub()
        code = cli(hub, clock, project, "--space", SPACE, env={})
        err = capsys.readouterr().err.splitlines()
        assert code == 1
        assert len(err) == 1
        assert "HF_TOKEN is not set" in err[0]
        assert hub.calls == []

    @pytest.mark.parametrize("space_id", [None, "", "just-a-name", "bad//id", "owner/na me"])
    def test_bad_space_id_uploads_nothing(self, project, clock, space_id):
        """A missing or malformed Space id stops before any Hub call."""
        hub = FakeHub()
        with pytest.raises(InvalidSpaceIdError):
            run(hub, project, clock, space_id=space_id)
        assert hub.calls == []

    def test_space_flag_wins_over_environment(self, project, clock):
        """--space overrides SPACE_ID."""
        hub = FakeHub()
        env = {"HF_TOKEN": TOKEN, "SPACE_ID": "other/space"}
        cli(hub, clock, project, "--space", SPACE, env=env)
        assert hub.calls[0][1]["repo_id"] == SPACE

    def test_invalid_front_matter_uploads_nothing(self, project, clock):
        """A README that fails the config check stops the deploy before any Hub call."""
        readme = project / "README.md"
        readme.write_text(readme.read_text().replace("colorTo: blue", "colorTo: orange"))
        hub = FakeHub()
        with pytest.raises(InvalidConfigError, match="colorTo"):
            run(hub, project, clock)
        assert hub.calls == []

    def test_app_file_outside_the_allow_list_uploads_nothing(self, project, clock):
        """An app_file the allow-list would not upload is caught before the Space starts without it."""
        write(project, "main.py")
        readme = project / "README.md"
        readme.write_text(readme.read_text().replace("app_file: app.py", "app_file: main.py"))
        hub = FakeHub()
        with pytest.raises(InvalidConfigError, match="main.py would not be uploaded"):
            run(hub, project, clock)
        assert hub.calls == []

    def test_hub_error_names_the_step(self, project, clock):
        """A failing Hub request says which step failed and for which Space."""
        hub = FakeHub()
        hub.fail["create_repo"] = hub_error(402, "402 Payment Required: a Gradio Space needs a paid plan")
        with pytest.raises(deploy_space.HubRequestError, match=f"create_repo failed for {URL}: 402") as caught:
            run(hub, project, clock)
        assert caught.value.step == "create_repo"
        assert hub.names() == ["create_repo"]

    def test_connection_error_names_the_step(self, project, clock):
        """A network failure (no HTTP status at all) is reported the same way, not as a traceback."""
        hub = FakeHub()
        hub.fail["get_space_runtime"] = httpx2.ConnectError("connection reset")
        with pytest.raises(deploy_space.HubRequestError, match="get_space_runtime failed .*connection reset"):
            run(hub, project, clock)


def policy(clock: FakeClock) -> WaitPolicy:
    return WaitPolicy(timeout=600, poll_interval=5, settle=30, clock=clock, sleep=clock.sleep)


def cli(hub: FakeHub, clock: FakeClock, root: Path, *argv: str, env: dict[str, str], smoke: Any = None) -> int:
    """main() on `root` with the doubles: the fake Hub, a fake clock and, unless given, a smoke test that answers."""
    return main(
        ["--root", str(root), *argv],
        env=env,
        make_api=lambda token: hub,
        smoke=smoke if smoke is not None else FakeSmoke(),
        wait=policy(clock),
    )


def dry_run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """`python scripts/deploy_space.py --dry-run` as a person would run it: no token, any Hub call would fail."""
    settings = {name for s in space_settings() for name in (s.key, s.source)}
    clean = {k: v for k, v in os.environ.items() if k not in {"SPACE_ID", *settings} and not k.startswith("SPACE_")}
    # A closed port as the Hub: a request would raise instead of silently succeeding.
    clean.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_DISABLE_TELEMETRY="1", **env)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "deploy_space.py"), "--dry-run", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed_files(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Files to upload"))
    files = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        files.append(line.strip())
    return files


def plan_settings(stdout: str) -> list[str]:
    """The dry run's settings lines: those under step 2, before the list of accepted names."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  2. set Space settings"))
    end = next(i for i, line in enumerate(lines) if line.startswith("     X is one of: "))
    return [line.strip() for line in lines[start + 1 : end]]


def tracked(prefix: str) -> list[str]:
    result = subprocess.run(["git", "ls-files", prefix], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.e2e
class TestDryRunOnTheRealTree:
    def test_lists_what_the_space_runs(self):
        """The list has app.py, every other module beside it, README.md, requirements.txt, services/ and ui/."""
        result = dry_run()
        assert result.returncode == 0, result.stdout + result.stderr
        files = listed_files(result.stdout)
        assert {"app.py", "README.md", "requirements.txt"} <= set(files)
        assert {name for name in tracked(".") if "/" not in name and name.endswith(".py")} <= set(files)
        assert set(tracked("services")) <= set(files)
        assert set(tracked("ui")) <= set(files)
        # README's screenshot: the Space's card shows README.md, whose image links resolve in the Space repo.
        assert {name for name in tracked("docs") if name.endswith((".png", ".jpg", ".gif", ".webp"))} <= set(files)
        assert all((ROOT / name).is_file() for name in files)

    def test_lists_nothing_excluded(self):
        """No tests, bench, CI, workflows, scripts, tool settings, caches or secrets, though the tree has them."""
        files = listed_files(dry_run().stdout)
        forbidden_prefixes = ("tests/", "bench/", ".ci/", ".github/", "scripts/", ".venv/", ".git/")
        assert not [name for name in files if name.startswith(forbidden_prefixes)]
        assert not {"pyproject.toml", "requirements-dev.txt", ".env", ".gitignore"} & set(files)
        assert not [name for name in files if "__pycache__" in name or "_cache/" in name or name.endswith(".pyc")]

    def test_matches_plan_files(self):
        """The printed list is plan_files(ROOT), the list the upload uses."""
        assert listed_files(dry_run().stdout) == plan_files(ROOT)

    def test_works_from_any_directory(self, tmp_path):
        """Run from elsewhere, it still deploys the repository, not the current directory."""
        result = dry_run(cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "app.py" in listed_files(result.stdout)

    def test_prints_the_planned_steps(self):
        """The plan names each step, the Space and the commit, offline and without a token."""
        result = dry_run("--space", SPACE, GITHUB_SHA=SHA)
        out = result.stdout
        for step in ("create_repo(", "upload_folder(", "RUNNING", "/greet", f"Space: {SPACE}", f"Deploy {SHA}"):
            assert step in out
        assert "services/*" in out  # the delete patterns are shown

    def test_names_settings_never_values(self):
        """The plan names each setting with its source, and what it leaves out; never a value."""
        result = dry_run(
            SPACE_OPENAI_API_KEY="sk-dry-run-secret",
            SPACE_LLM_MODELS="visible-model-name",
            OPENAI_API_KEY="sk-local-only",
            SPACE_GRADIO_SERVER_PORT="7861",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert plan_settings(result.stdout) == [
            "OPENAI_API_KEY (secret, from SPACE_OPENAI_API_KEY)",
            "LLM_MODELS (variable, from SPACE_LLM_MODELS)",
            "not pushed (set here without SPACE_): OPENAI_API_KEY",
            "warning: SPACE_GRADIO_SERVER_PORT is ignored: GRADIO_SERVER_PORT is the platform's own (Gradio or"
            " Spaces sets it), never pushed",
        ]
        for value in ("sk-dry-run-secret", "visible-model-name", "sk-local-only", "7861"):
            assert value not in result.stdout + result.stderr

    def test_lists_every_accepted_setting(self):
        """The plan lists every name it would push from, secrets marked, so a typo can be checked against it."""
        text = " ".join(dry_run().stdout.split())
        accepted = ", ".join(f"{s.key}{' (secret)' if s.secret else ''}" for s in space_settings())
        assert f"X is one of: {accepted} 3. upload_folder(" in text

    def test_setting_problems_exit_one(self, project, capsys):
        """A setting the real deploy would refuse fails the dry run with the reason, instead of a traceback."""
        env = {"SPACE_OPENAI_BASE_URL": "https://user:pa55word@llm.example.com/v1"}
        assert main(["--dry-run", "--root", str(project)], env=env) == 1
        out = capsys.readouterr().out
        assert "Configuration: 1 problem(s)\n  SPACE_OPENAI_BASE_URL holds credentials in its URL" in out
        assert "pa55word" not in out

    def test_invalid_config_exits_one(self, project, capsys):
        """The dry run fails when the real deploy would, and says why."""
        readme = project / "README.md"
        readme.write_text(readme.read_text().replace("sdk: gradio", "sdk: docker"))
        assert main(["--dry-run", "--root", str(project)], env={}) == 1
        assert "README.md: sdk: must be 'gradio'" in capsys.readouterr().out

    def test_malformed_space_id_exits_one(self, project, capsys):
        """A malformed --space fails the dry run too; a missing one does not (a fresh clone has none)."""
        assert main(["--dry-run", "--root", str(project), "--space", "no-owner"], env={}) == 1
        assert "expected owner/name" in capsys.readouterr().out
        assert main(["--dry-run", "--root", str(project)], env={}) == 0
