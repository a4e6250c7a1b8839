"""Deploy this repository to its Hugging Face Space, wait until the Space runs, and smoke-test it.

Run by .github/workflows/deploy.yml once the tests pass, and usable by hand:

    python scripts/deploy_space.py --dry-run                       # offline, no token: files and plan
    HF_TOKEN=hf_... python scripts/deploy_space.py --space user/space-name
    HF_TOKEN=hf_... SPACE_LLM_MODELS=gpt-4o SPACE_OPENAI_API_KEY=sk-... python scripts/deploy_space.py ...

Steps: check README.md's front-matter, create the Space if it does not exist, set its variables and secrets, upload
exactly the files it runs (and delete those removed here), wait for RUNNING, call /greet.

A Space setting X (any variable of services.config.VARIABLES a Space may hold) is pushed only from SPACE_X: a secret
where the table says so, else a public variable. Plain names are never pushed, so an OPENAI_API_KEY exported for
local chatting stays local, and HF_TOKEN here is the deploy's write token, which the Space never gets
(SPACE_HF_TOKEN becomes the Space's HF_TOKEN). This file is repository tooling: it is never uploaded, and the Space
never imports it.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi, SpaceRuntime, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python scripts/deploy_space.py`: only scripts/ itself is on sys.path
    sys.path.insert(0, str(ROOT))

# services.config is plain standard-library Python: the deploy job, which installs no gradio, can import it.
from scripts.space_config import check_readme, parse_front_matter  # noqa: E402
from services.config import VARIABLES, Variable  # noqa: E402

__all__ = [
    "ALLOW_PATTERNS",
    "DELETE_PATTERNS",
    "IGNORE_PATTERNS",
    "SET_BY_SPACES",
    "SPACE_PREFIX",
    "SPACE_SETTINGS",
    "DeployError",
    "WaitPolicy",
    "deploy",
    "gradio_smoke",
    "main",
    "plan_files",
    "space_settings",
]

# What the Space runs, as huggingface_hub's upload_folder matches it: fnmatch on repository-relative paths, where `*`
# also matches "/", so "services/*" is the whole package. Anything else stays here; a module added beside app.py must
# be added to this list, or the Space fails to start and the deploy reports it.
ALLOW_PATTERNS = (
    "app.py",
    "requirements.txt",
    "README.md",  # the Space's config (front-matter) and its card
    "packages.txt",  # Debian packages and pre-install pins the Space build reads, should the app ever need them
    "pre-requirements.txt",
    "services/*",
    "ui/*",
    "assets/*",
    # Images only, for README's screenshot: the Space shows README.md as its card, and relative image links resolve
    # against the Space repository, so without them the card has broken images. docs/ text stays here.
    "docs/*.png",
    "docs/*.jpg",
    "docs/*.jpeg",
    "docs/*.gif",
    "docs/*.webp",
    "docs/*.svg",
)
# A second net inside the allowed folders, and the list of what must never reach the Space even if the allow-list
# grows: tests and tooling, caches, local secrets and virtual environments.
IGNORE_PATTERNS = (
    "tests/*",
    "*/tests/*",
    "bench/*",
    ".ci/*",
    ".github/*",
    "scripts/*",
    "pyproject.toml",
    "requirements-dev.txt",
    "*__pycache__/*",
    "*.py[cod]",
    "*.pytest_cache/*",
    "*.ruff_cache/*",
    "*.mypy_cache/*",
    "*.hypothesis/*",
    "*.ipynb_checkpoints/*",
    "*.gradio/*",
    "flagged/*",
    "artifacts/*",
    ".env",
    ".env.*",
    "*/.env",
    "*/.env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*id_rsa*",
    "*id_ed25519*",
    ".venv/*",
    "venv/*",
    "*/.venv/*",
    "*.log",
    "*.DS_Store",
    "*.swp",
)
# Remote files these patterns match are deleted unless uploaded again: a file removed here leaves the Space, and a
# test or cache an older manual upload left there is cleaned. Files outside both lists (added in the Space's web
# editor) are not ours and stay; the Hub never deletes .gitattributes.
DELETE_PATTERNS = ALLOW_PATTERNS + IGNORE_PATTERNS

# Stages as huggingface_hub.SpaceStage spells them. Intermediate: the Space is on its way; failed: it will not get
# there without a new commit or the owner's action.
INTERMEDIATE_STAGES = frozenset({"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"})
FAILED_STAGES = frozenset({"BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "PAUSED", "DELETING"})
# Connection failures and timeouts raise the HTTP client's errors (huggingface_hub 2.x uses httpx2), and error
# statuses raise HfHubHTTPError; both become one HubRequestError line.
HUB_ERRORS: tuple[type[Exception], ...] = (HfHubHTTPError, httpx2.HTTPError)
SMOKE_NAME = "deploy"


# A Space setting X is pushed from SPACE_X only: an explicit name for what the Space gets, so that nothing exported
# here for another use (a local OPENAI_API_KEY, the deploy's own HF_TOKEN) ever reaches it.
SPACE_PREFIX = "SPACE_"
# Variables of the table that the Space itself sets, though the app reads them: pushing one would override the
# platform's (SPACE_ID tells the app it runs on a Space; with `hf_oauth: true` the Space sets OAUTH_CLIENT_SECRET).
# Rows of section "platform", and those with no field (Gradio's own), are never pushed either.
SET_BY_SPACES = frozenset({"SPACE_ID", "OAUTH_CLIENT_SECRET"})
# The deploy's own settings, read here and never pushed; no Space setting may take their names.
DEPLOY_OWN = frozenset({"HF_TOKEN", "SPACE_ID", "SPACE_HARDWARE"})


@dataclass(frozen=True)
class SpaceSetting:
    """A Space variable (public, copied on "Duplicate this Space") or secret, pushed when its source is set here."""

    key: str  # its name on the Space, as services/config.py reads it
    source: str  # the environment variable the deploy reads its value from: SPACE_<key>
    secret: bool
    parse: Callable[[str], Any] = field(default=str, repr=False, compare=False)  # the app's parser, to check it

    def describe(self) -> str:
        """How the plan and the log name it, e.g. `HF_TOKEN (secret, from SPACE_HF_TOKEN)`; never its value."""
        return f"{self.key} ({'secret' if self.secret else 'variable'}, from {self.source})"


def _pushable(variable: Variable) -> bool:
    return variable.field is not None and variable.section != "platform" and variable.name not in SET_BY_SPACES


def space_settings(variables: Sequence[Variable] | None = None) -> tuple[SpaceSetting, ...]:
    """The settings a Space may get, from `services.config.VARIABLES` (read at each call) unless given."""
    table = VARIABLES if variables is None else variables
    settings = tuple(
        SpaceSetting(v.name, SPACE_PREFIX + v.name, secret=v.secret, parse=v.parse) for v in table if _pushable(v)
    )
    clashes = sorted({s.source for s in settings} & DEPLOY_OWN)
    if clashes:
        raise RuntimeError(f"Space settings whose source is one of the deploy's own variables: {clashes}")
    return settings


SPACE_SETTINGS = space_settings()


class DeployError(Exception):
    """Raised when the deploy stops; its text is the one line the job prints."""


class MissingTokenError(DeployError, ValueError):
    """Raised when HF_TOKEN is not set for a real deploy."""


class InvalidSpaceIdError(DeployError, ValueError):
    """Raised when the Space id is missing or not of the form owner/name."""


class InvalidConfigError(DeployError, ValueError):
    """Raised when README.md's front-matter or the file selection would give a broken Space."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} configuration problem(s), nothing uploaded: {'; '.join(problems)}")


class UnsafeVariableError(DeployError, ValueError):
    """Raised when a Space setting here would leak a credential or break the Space; nothing is sent.

    Its problems name the variables, never their values.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} Space setting problem(s), nothing sent: {'; '.join(problems)}")


class HubRequestError(DeployError):
    """Raised when a Hub request fails; `step` names the deploy step."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(message)


class SpaceFailedError(DeployError):
    """Raised when the Space reaches a failed stage (BUILD_ERROR, RUNTIME_ERROR, ...) with the new commit."""

    def __init__(self, message: str, *, stage: str, url: str) -> None:
        self.stage = stage
        self.url = url
        super().__init__(message)


class SpaceTimeoutError(DeployError, TimeoutError):
    """Raised when the Space is not RUNNING the new commit within the timeout."""

    def __init__(self, message: str, *, stage: str, url: str) -> None:
        self.stage = stage
        self.url = url
        super().__init__(message)


class SmokeTestError(DeployError):
    """Raised when the live Space does not answer /greet as expected."""


class HubApi(Protocol):
    """The part of huggingface_hub.HfApi the deploy calls, so tests can pass a recording double instead."""

    def create_repo(
        self,
        repo_id: str,
        *,
        repo_type: str | None = ...,
        exist_ok: bool = ...,
        space_sdk: str | None = ...,
        space_hardware: Any = ...,
    ) -> Any: ...

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        commit_message: str | None = ...,
        commit_description: str | None = ...,
        repo_type: str | None = ...,
        allow_patterns: list[str] | str | None = ...,
        ignore_patterns: list[str] | str | None = ...,
        delete_patterns: list[str] | str | None = ...,
    ) -> Any: ...

    def add_space_variable(self, repo_id: str, key: str, value: str) -> Any: ...

    def add_space_secret(self, repo_id: str, key: str, value: str) -> None: ...

    def get_space_runtime(self, repo_id: str) -> SpaceRuntime: ...


@dataclass(frozen=True)
class WaitPolicy:
    """How long to wait for RUNNING: seconds overall, between two polls, and for the Hub to notice the commit."""

    timeout: float = 1200.0
    poll_interval: float = 10.0
    # A RUNNING or failed stage seen this soon after the upload, with no build stage before it, may still be the
    # previous build's. After it, the stage counts (an upload that changed nothing does not rebuild).
    settle: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def space_url(space_id: str) -> str:
    return f"{constants.ENDPOINT}/spaces/{space_id}"


def plan_files(root: Path) -> list[str]:
    """The repository-relative paths upload_folder sends, computed with huggingface_hub's own listing and filter."""
    root = root.resolve()
    # Same listing as HfApi._prepare_upload_folder_additions, so the dry run shows exactly what would be uploaded.
    files = [path.relative_to(root).as_posix() for path in sorted(root.glob("**/*")) if path.is_file()]
    ignore = [*IGNORE_PATTERNS, *DEFAULT_IGNORE_PATTERNS]
    return list(filter_repo_objects(files, allow_patterns=list(ALLOW_PATTERNS), ignore_patterns=ignore))


def _check_config(root: Path, files: Sequence[str]) -> list[str]:
    """Front-matter violations, then files the Space needs that the selection would leave out."""
    readme = root / "README.md"
    problems = [f"README.md: {problem}" for problem in check_readme(readme)]
    if problems:
        return problems
    app_file = parse_front_matter(readme.read_text(encoding="utf-8"))["app_file"]
    for needed in dict.fromkeys(("README.md", "requirements.txt", app_file)):
        if needed not in files:
            problems.append(f"{needed} would not be uploaded: add it to ALLOW_PATTERNS in scripts/deploy_space.py")
    return problems


@dataclass(frozen=True)
class SettingsPlan:
    """What this environment would set on the Space, what it refuses, and what it leaves out; names only."""

    chosen: list[tuple[SpaceSetting, str]]  # each setting to push, with its value
    problems: list[str]  # why the deploy must stop: a leaked credential or a value the app would refuse
    ignored: list[str]  # SPACE_ names set here that are not pushed, each with the reason
    unprefixed: list[str]  # plain names set here that are not pushed (local use, or the deploy's own HF_TOKEN)

    def lines(self) -> list[str]:
        """The plan's lines: each setting with its source, then what is left out and why; never a value."""
        lines = [setting.describe() for setting, _ in self.chosen] or ["none set"]
        if self.unprefixed:
            lines.append(f"not pushed (set here without {SPACE_PREFIX}): {', '.join(self.unprefixed)}")
        lines += [f"warning: {warning}" for warning in self.ignored]
        return lines


def _has_credentials(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return bool(parts.username or parts.password)
    except ValueError:  # not a URL at all (an unbalanced "[" reads as a broken IPv6 address)
        return False


def _invalid(setting: SpaceSetting, value: str) -> str | None:
    """Why the app would refuse `value` at start-up, without the value; None when it parses."""
    try:
        setting.parse(value)
    except ValueError as error:
        # The parsers end their reason with ", got <the value>": cut it, and say nothing more if it still shows.
        reason = str(error).split(", got ")[0].rstrip(".")
        detail = "" if setting.secret or value in reason else f": {reason}"
        return f"{setting.source} is not a valid {setting.key}{detail}"
    return None


def _settings_to_sync(env: Mapping[str, str], deploy_token: str | None = None) -> SettingsPlan:
    """Read SPACE_<name> for every Space setting (blank counts as unset: GitHub passes an unset `vars.X` as "")."""
    settings = space_settings()
    chosen: list[tuple[SpaceSetting, str]] = []
    problems: list[str] = []
    for setting in settings:
        value = env.get(setting.source, "").strip()
        if not value:
            continue
        if deploy_token and value == deploy_token:
            # The write token would let the Space's code, or anything it talks to, push to the owner's repos.
            problems.append(f"{setting.source} is the deploy's own HF_TOKEN: give the Space a token of its own")
        elif not setting.secret and _has_credentials(value):
            # Variables are public: a URL with user:password@ in it belongs in a secret. The value is not echoed.
            problems.append(f"{setting.source} holds credentials in its URL, and Space variables are public")
        elif (reason := _invalid(setting, value)) is not None:
            problems.append(reason)
        else:
            chosen.append((setting, value))
    sources = {setting.source for setting in settings}
    known = {variable.name for variable in VARIABLES}
    ignored = []
    for name in sorted(env):
        if not name.startswith(SPACE_PREFIX) or name in sources or name in DEPLOY_OWN or not env[name].strip():
            continue
        key = name.removeprefix(SPACE_PREFIX)
        if key in SET_BY_SPACES:
            reason = f"{key} is set by Spaces, never pushed"
        elif key in known:
            reason = f"{key} is the platform's own (Gradio or Spaces sets it), never pushed"
        else:
            reason = f"{key} is not a variable the app reads (services/config.py)"
        ignored.append(f"{name} is ignored: {reason}")
    unprefixed = [s.key for s in settings if s.key != "HF_TOKEN" and env.get(s.key, "").strip()]
    if env.get("HF_TOKEN", "").strip():
        unprefixed.append("HF_TOKEN (the deploy's token)")
    return SettingsPlan(chosen, problems, ignored, unprefixed)


def _check_space_id(space_id: str | None) -> str:
    if not space_id:
        raise InvalidSpaceIdError("no Space id: pass --space owner/name or set SPACE_ID")
    try:
        validate_repo_id(space_id)
    except HFValidationError as error:
        raise InvalidSpaceIdError(f"invalid Space id {space_id!r}: {error}") from None
    if "/" not in space_id:
        raise InvalidSpaceIdError(f"invalid Space id {space_id!r}: expected owner/name")
    return space_id


@contextmanager
def _hub_step(step: str, space_id: str) -> Iterator[None]:
    try:
        yield
    except HUB_ERRORS as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise HubRequestError(step, f"{step} failed for {space_url(space_id)}: {detail}") from error


def _stage(runtime: SpaceRuntime) -> str:
    return str(getattr(runtime.stage, "value", runtime.stage))


def wait_until_running(api: HubApi, space_id: str, *, commit: str | None, policy: WaitPolicy) -> None:
    """Poll until the Space runs `commit`; raise `SpaceFailedError` or `SpaceTimeoutError` with stage and URL.

    Not HfApi.wait_for_space: right after an upload it returns at once with the previous build's RUNNING (or its
    RUNTIME_ERROR), before the Hub has started building the new commit.
    """
    url = space_url(space_id)
    start = policy.clock()
    saw_build = False
    while True:
        with _hub_step("get_space_runtime", space_id):
            runtime = api.get_space_runtime(space_id)
        stage = _stage(runtime)
        elapsed = policy.clock() - start
        running_sha = runtime.raw.get("sha") if isinstance(runtime.raw, dict) else None
        # Until a build stage shows up (or `settle` passes) the stage may still be the previous build's: the Hub
        # takes a moment to notice a commit. When the runtime names the commit it runs, RUNNING must be ours too.
        saw_build = saw_build or stage in INTERMEDIATE_STAGES
        noticed = saw_build or elapsed >= policy.settle
        stale_commit = bool(running_sha and commit and running_sha != commit)
        if stage == "RUNNING" and noticed and not stale_commit:
            return
        if stage in FAILED_STAGES and noticed:
            reason = " ".join(str(runtime.raw.get("errorMessage") or "").split())[:300]
            detail = f": {reason}" if reason else ""
            raise SpaceFailedError(
                f"Space {space_id} is {stage} after {elapsed:.0f} s{detail}. Logs: {url}", stage=stage, url=url
            )
        if elapsed >= policy.timeout:
            running = f" (running commit {running_sha}, not {commit})" if stale_commit else ""
            raise SpaceTimeoutError(
                f"timed out after {policy.timeout:.0f} s: Space {space_id} is still {stage}{running}. See {url}",
                stage=stage,
                url=url,
            )
        policy.sleep(min(policy.poll_interval, max(policy.timeout - elapsed, 0.0)))


def gradio_smoke(
    src: str,
    *,
    token: str | None = None,
    attempts: int = 5,
    delay: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Call /greet through gradio_client, as an API user would; return the answer or raise `SmokeTestError`.

    `src` is a Space id or a URL. A few attempts: a Space reported RUNNING can take seconds more to serve.
    """
    # Imported here: the dry run, the plan and the tests of the deploy logic need no gradio_client.
    from gradio_client import Client

    expected = f"Hello, {SMOKE_NAME}!"
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            client = Client(src, token=token, verbose=False, download_files=False, analytics_enabled=False)
            answer = client.predict(SMOKE_NAME, api_name="/greet")
        except Exception as error:  # httpx errors, ValueError, AppError...: each one means "did not answer"
            problem = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        else:
            if answer == expected:
                return expected
            problem = f"answered {answer!r}, expected {expected!r}"
        if attempt < attempts:
            sleep(delay)
    raise SmokeTestError(f"/greet on {src} did not answer after {attempts} attempt(s): {problem}")


def deploy(
    api: HubApi,
    *,
    space_id: str | None,
    root: Path,
    token: str | None,
    sha: str,
    env: Mapping[str, str],
    hardware: str | None = None,
    wait: WaitPolicy | None = None,
    smoke: Callable[[str], object] | None = None,
    say: Callable[[str], None] = print,
) -> str | None:
    """Run every step against `api`; return the Space commit. `wait=None` skips waiting and the smoke test.

    Everything that can be checked offline is checked before the first request, so a bad config uploads nothing.
    """
    if not token:
        raise MissingTokenError(
            "HF_TOKEN is not set: add a Hugging Face token with write access as the repository secret HF_TOKEN"
        )
    space_id = _check_space_id(space_id)
    url = space_url(space_id)
    files = plan_files(root)
    problems = _check_config(root, files)
    for problem in problems:
        say(f"  {problem}")
    if problems:
        raise InvalidConfigError(problems)
    settings = _settings_to_sync(env, deploy_token=token)
    if settings.problems:
        raise UnsafeVariableError(settings.problems)

    say(f"Deploying {sha} to {url}")
    say("Space settings:")
    for line in settings.lines():
        say(f"  {line}")
    with _hub_step("create_repo", space_id):
        # space_hardware only applies when the Space is created (free accounts may create ZeroGPU Spaces only).
        extra = {"space_hardware": hardware} if hardware else {}
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", exist_ok=True, **extra)
    # Before the upload, so the build it triggers starts with them (each change also restarts the Space).
    for setting, value in settings.chosen:
        kind = "secret" if setting.secret else "variable"
        with _hub_step(f"add_space_{kind} {setting.key}", space_id):
            if setting.secret:
                api.add_space_secret(space_id, setting.key, value)
            else:
                api.add_space_variable(space_id, setting.key, value)
        say(f"Set {setting.describe()}")
    say(f"Uploading {len(files)} files")
    with _hub_step("upload_folder", space_id):
        # Fresh lists: upload_folder appends its defaults to ignore_patterns in place.
        info = api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=root,
            commit_message=f"Deploy {sha}",
            commit_description=_source_link(env, sha),
            allow_patterns=list(ALLOW_PATTERNS),
            ignore_patterns=list(IGNORE_PATTERNS),
            delete_patterns=list(DELETE_PATTERNS),
        )
    commit = getattr(info, "oid", None)
    say(f"Committed {commit or '(no commit id)'}")
    if wait is None:
        say(f"Not waiting for the build: {url}")
        return commit
    say(f"Waiting up to {wait.timeout:.0f} s for RUNNING")
    wait_until_running(api, space_id, commit=commit, policy=wait)
    say(f"RUNNING: {url}")
    if smoke is not None:
        answer = smoke(space_id)
        say(f"Smoke test /greet answered {answer!r}")
    return commit


def _source_link(env: Mapping[str, str], sha: str) -> str:
    server, repository = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    return f"Source: {server}/{repository}/commit/{sha}" if server and repository else f"Source commit: {sha}"


def git_sha(root: Path, env: Mapping[str, str]) -> str:
    """GITHUB_SHA in Actions, else `git rev-parse HEAD`, else "unknown" (not a git checkout)."""
    if env.get("GITHUB_SHA"):
        return env["GITHUB_SHA"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def dry_run(*, space_id: str | None, root: Path, sha: str, env: Mapping[str, str], hardware: str | None) -> int:
    """Print the file list and the planned steps, offline and without a token; 1 if the real deploy would stop."""
    files = plan_files(root)
    problems = _check_config(root, files)
    if space_id:  # a missing id is fine here (a fresh clone has none), a malformed one is not
        try:
            _check_space_id(space_id)
        except InvalidSpaceIdError as error:
            problems.append(str(error))
    target = space_id or "(not set: pass --space or set SPACE_ID)"
    print(f"Dry run: nothing is contacted, nothing is uploaded.\nSpace: {target}\nCommit: {sha}")
    print(f"Files to upload ({len(files)}):")
    for name in files:
        print(f"  {name}")
    settings = _settings_to_sync(env, deploy_token=env.get("HF_TOKEN", "").strip() or None)
    problems += settings.problems
    print("Configuration: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    for problem in problems:
        print(f"  {problem}")
    accepted = ", ".join(f"{s.key}{' (secret)' if s.secret else ''}" for s in space_settings())
    print("Planned steps:")
    created = f", space_hardware={hardware!r}" if hardware else ""
    print(f'  1. create_repo(repo_type="space", space_sdk="gradio", exist_ok=True{created})')
    print(f"  2. set Space settings, each X only from {SPACE_PREFIX}X here (values are never printed):")
    for line in settings.lines():
        print(f"       {line}")
    wrapped = textwrap.wrap(f"X is one of: {accepted}", width=114, break_on_hyphens=False)
    print("\n".join(f"     {line}" for line in wrapped))
    print(f'  3. upload_folder(commit_message="Deploy {sha}") with the files above;')
    print("     remote files matching these patterns and not uploaded are deleted:")
    print(f"     {' '.join(DELETE_PATTERNS)}")
    print("  4. wait until the Space is RUNNING the new commit (fail on BUILD_ERROR, RUNTIME_ERROR or timeout)")
    print(f'  5. smoke test: gradio_client predict("{SMOKE_NAME}", api_name="/greet")')
    return 1 if problems else 0


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _make_hf_api(token: str | None) -> HubApi:
    return HfApi(token=token)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", help="Space id owner/name (default: the SPACE_ID environment variable)")
    parser.add_argument("--dry-run", action="store_true", help="print the files and steps; offline, no token")
    parser.add_argument("--timeout", type=float, default=WaitPolicy.timeout, help="seconds to wait for RUNNING")
    parser.add_argument("--no-wait", action="store_true", help="return after the upload (implies --no-smoke)")
    parser.add_argument("--no-smoke", action="store_true", help="skip the /greet call on the live Space")
    parser.add_argument(
        "--hardware", help="hardware if the Space is created, e.g. zero-a10g (default: SPACE_HARDWARE, else Hub's)"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    make_api: Callable[[str | None], HubApi] | None = None,
    smoke: Callable[[str], object] | None = None,
    wait: WaitPolicy | None = None,
) -> int:
    """The CLI; returns the exit code. Tests pass `env`, `make_api`, `smoke` and `wait` instead of the real ones."""
    args = _parse_args(argv)
    env = os.environ if env is None else env
    space_id = args.space or env.get("SPACE_ID", "").strip() or None
    hardware = args.hardware or env.get("SPACE_HARDWARE", "").strip() or None
    sha = git_sha(args.root, env)
    if args.dry_run:
        return dry_run(space_id=space_id, root=args.root, sha=sha, env=env, hardware=hardware)
    token = env.get("HF_TOKEN", "").strip() or None
    # Scrubbed from the error line, in case a Hub or client message ever quotes one.
    secret_names = [name for s in space_settings() if s.secret for name in (s.source, s.key)]
    secrets = [token or "", *(env.get(name, "").strip() for name in secret_names)]
    api = (make_api or _make_hf_api)(token)
    policy = None if args.no_wait else (wait or WaitPolicy(timeout=args.timeout))
    check = None if args.no_smoke else (smoke or functools.partial(gradio_smoke, token=token))
    try:
        deploy(
            api,
            space_id=space_id,
            root=args.root,
            token=token,
            sha=sha,
            env=env,
            hardware=hardware,
            wait=policy,
            smoke=check,
            say=lambda line: print(line, flush=True),
        )
    except DeployError as error:
        message = _scrub(str(error), secrets)
        print(f"error: {message}", file=sys.stderr, flush=True)
        if env.get("GITHUB_ACTIONS") == "true":
            print(f"::error title=Deploy failed::{message}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
