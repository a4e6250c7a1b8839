"""Tests for scripts/space_config.py: the real README passes, each broken variant gives one clear line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.space_config import FrontMatterError, check_readme, gradio_pin, main, parse_front_matter
from services.config import DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def space(tmp_path: Path) -> Path:
    """Copies of the real README.md and requirements.txt beside an app.py, to break one key at a time."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    (tmp_path / "app.py").write_text("import gradio\n")
    return tmp_path


def set_key(space: Path, key: str, raw: str | None) -> None:
    """Replace `key` (and its indented list items) in the README's front-matter by `key: raw`; None removes it."""
    readme = space / "README.md"
    lines = readme.read_text(encoding="utf-8").split("\n")
    end = lines.index("---", 1)
    header = lines[1:end]
    kept: list[str] = []
    skipping = False
    for line in header:
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and line.startswith((" ", "-")):
            continue
        skipping = False
        kept.append(line)
    if raw is not None:
        kept.append(f"{key}: {raw}")
    readme.write_text("\n".join([lines[0], *kept, *lines[end:]]), encoding="utf-8")


@pytest.mark.e2e
class TestRealReadme:
    @pytest.mark.unit
    def test_has_no_violation(self):
        """The README.md the Space is deployed with passes every check."""
        assert check_readme(ROOT / "README.md") == []

    @pytest.mark.unit
    def test_cli_exits_zero(self, capsys):
        """`python scripts/space_config.py README.md` says OK and exits 0."""
        assert main([str(ROOT / "README.md")]) == 0
        assert capsys.readouterr().out.strip().endswith("front-matter OK")

    @pytest.mark.e2e
    def test_runs_as_a_script(self):
        """The file runs directly, as the docs and the deploy workflow call it."""
        result = subprocess.run(
            [sys.executable, "scripts/space_config.py", "README.md"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == "README.md: front-matter OK\n"

    @pytest.mark.unit
    def test_lists_and_preloads_both_default_local_models(self):
        """The GPU default and the CPU default are in `models:` and preloaded whole, so a cold start on either
        hardware downloads nothing."""
        meta = parse_front_matter((ROOT / "README.md").read_text(encoding="utf-8"))
        for model in (DEFAULT_GPU_LOCAL_MODEL, DEFAULT_LOCAL_MODEL):
            assert model in meta["models"]
            assert model in meta["preload_from_hub"]


NOT_VALID_VALUES = (
    ("sdk", "streamlit"),  # this Space is a Gradio app
    ("sdk_version", '"6.30.0"'),  # not requirements.txt's gradio pin
    ("sdk_version", "6.0"),  # a number, not a version string
    ("app_file", "main.py"),  # no such file
    ("app_file", "../app.py"),  # outside the repository
    ("app_file", "/etc/passwd"),  # absolute
    ("colorFrom", "orange"),  # not a thumbnail colour
    ("colorTo", "Blue"),  # colours are lower case
    ("short_description", "x" * 61),  # over 60 characters
    ("short_description", "42"),  # not a string
    ("emoji", "💬💬"),  # two emoji
    ("emoji", "ab"),  # letters
    ("emoji", '"💬 chat"'),  # an emoji and a word
    ("emoji", '""'),  # empty
    ("python_version", "3.10"),  # unquoted: YAML reads the number 3.1
    ("python_version", '"2.7"'),  # not Python 3
    ("python_version", '"3"'),  # no minor version
    ("python_version", '"3.12-slim"'),  # not a version
    ("hf_oauth", '"true"'),  # a string, not a boolean
    ("pinned", "yes please"),  # not a boolean
    ("suggested_hardware", "t4-large"),  # not a hardware flavour
    ("suggested_storage", "huge"),  # not a storage tier
    ("header", "tiny"),  # mini or default
    ("models", "HuggingFaceTB/SmolLM2-360M-Instruct"),  # a string, not a list
    ("models", '["not a repo id"]'),  # spaces in a repo id
    ("models", '["org/name/extra"]'),  # too many slashes
    ("models", '["org--x/model"]'),  # "--" is not allowed
    ("datasets", "[42]"),  # not a string
    ("preload_from_hub", '["bad//repo config.json"]'),  # the repo id part is invalid
    ("sdkVersion", '"6.31.0"'),  # a typo the Hub would ignore
)


@pytest.mark.unit
class TestBrokenVariants:
    @pytest.mark.parametrize(("key", "raw"), NOT_VALID_VALUES)
    def test_one_line_naming_the_key(self, space, key, raw):
        """Each broken value gives exactly one violation, which names the key."""
        set_key(space, key, raw)
        problems = check_readme(space / "README.md")
        assert len(problems) == 1, problems
        assert key in problems[0]

    @pytest.mark.parametrize("key", ["sdk", "sdk_version", "app_file"])
    def test_required_keys(self, space, key):
        """sdk, sdk_version and app_file must be there."""
        set_key(space, key, None)
        assert check_readme(space / "README.md") == [f"{key}: required, missing"]

    def test_several_violations_are_several_lines(self, space):
        """Every problem is reported, one per line, not just the first."""
        set_key(space, "colorFrom", "orange")
        set_key(space, "emoji", "no")
        problems = check_readme(space / "README.md")
        assert [p.split(":")[0] for p in problems] == ["colorFrom", "emoji"]

    def test_cli_prints_each_violation_and_exits_one(self, space, capsys):
        """The CLI prints `README.md: <violation>` per line and exits 1."""
        set_key(space, "colorFrom", "orange")
        set_key(space, "short_description", "x" * 70)
        readme = space / "README.md"
        assert main([str(readme)]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2
        assert all(line.startswith(f"{readme}: ") for line in lines)

    def test_unquoted_python_version_says_to_quote_it(self, space):
        """`python_version: 3.10` is the number 3.1: the line says so and how to fix it."""
        set_key(space, "python_version", "3.10")
        (problem,) = check_readme(space / "README.md")
        assert "3.1 is a number; quote it" in problem

    def test_sdk_version_message_names_both_versions(self, space):
        """The mismatch says which version each file has."""
        set_key(space, "sdk_version", '"6.30.0"')
        (problem,) = check_readme(space / "README.md")
        assert "'6.30.0'" in problem
        assert f"gradio=={gradio_pin((ROOT / 'requirements.txt').read_text())}" in problem


VALID_VALUES = (
    ("emoji", "❤️"),  # with a variation selector
    ("emoji", "👨‍👩‍👧"),  # a ZWJ family is one emoji
    ("emoji", "🇫🇷"),  # a flag: two regional indicators
    ("emoji", "1️⃣"),  # keycap
    ("emoji", "👍🏽"),  # skin tone
    ("emoji", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"),  # subdivision flag with tag characters
    ("emoji", "⚡"),  # a BMP symbol
    ("python_version", '"3.10"'),
    ("python_version", '"3.12.4"'),
    ("hf_oauth", "true"),
    ("suggested_hardware", "t4-small"),
    ("suggested_hardware", "a100x8"),
    ("suggested_storage", "small"),
    ("colorTo", "gray"),
    ("models", '["gpt2", "org/name.v2", "HuggingFaceTB/SmolLM2-360M-Instruct"]'),
    ("short_description", "x" * 60),
    ("preload_from_hub", '["org/model config.json,model.safetensors abc123"]'),
    ("license", "mit"),
    ("startup_duration_timeout", "1h"),
)


@pytest.mark.unit
class TestValidVariants:
    @pytest.mark.parametrize(("key", "raw"), VALID_VALUES)
    def test_accepted(self, space, key, raw):
        """Values the reference allows pass."""
        set_key(space, key, raw)
        assert check_readme(space / "README.md") == []


@pytest.mark.unit
class TestParsing:
    def test_no_front_matter(self, space):
        """A README without the leading --- block is one line, not a traceback."""
        (space / "README.md").write_text("# Space Chat\n")
        (problem,) = check_readme(space / "README.md")
        assert problem.startswith("no front-matter")

    def test_missing_file(self, tmp_path):
        """A missing README.md is one line."""
        (problem,) = check_readme(tmp_path / "README.md")
        assert problem.startswith("cannot read")

    def test_invalid_yaml_names_the_line(self, space):
        """A YAML error reports the README line it is on."""
        readme = space / "README.md"
        lines = readme.read_text(encoding="utf-8").split("\n")
        lines[3] = "colorFrom: [indigo"
        readme.write_text("\n".join(lines), encoding="utf-8")
        (problem,) = check_readme(readme)
        assert "line" in problem

    def test_duplicate_key(self, space):
        """A key given twice is refused: YAML would silently keep only the last one."""
        readme = space / "README.md"
        readme.write_text(readme.read_text(encoding="utf-8").replace("sdk: gradio\n", "sdk: gradio\nsdk: docker\n"))
        (problem,) = check_readme(readme)
        assert "duplicate key 'sdk'" in problem
        assert "line 7" in problem

    def test_not_a_mapping(self):
        """A front-matter that is a list is refused."""
        with pytest.raises(FrontMatterError, match="mapping"):
            parse_front_matter("---\n- a\n- b\n---\n")

    def test_bom_and_crlf(self):
        """A byte-order mark and Windows line ends do not hide the header."""
        assert parse_front_matter("\ufeff---\r\nsdk: gradio\r\n---\r\n# x\r\n") == {"sdk": "gradio"}


@pytest.mark.unit
class TestGradioPin:
    @pytest.mark.parametrize(
        ("requirements", "pin"),
        [
            ("gradio==6.31.0\n", "6.31.0"),
            ("gradio[oauth]==6.31.0\n", "6.31.0"),  # extras
            ("Gradio == 6.31.0 ; python_version > '3.9'\n", "6.31.0"),  # case, spaces, marker
            ("gradio==6.31.0  # must equal sdk_version\n", "6.31.0"),  # trailing comment
            ("gradio_client==2.7.2\ngradio-pdf==0.1\n", None),  # other packages only
            ("# gradio==6.0.0\n", None),  # commented out
            ("gradio>=6\n", ""),  # listed, not pinned
            ("gradio\n", ""),  # listed, no version at all
        ],
    )
    def test_reads_the_pin(self, requirements, pin):
        """Only an exact `gradio==X` pin counts; gradio_client and comments are not gradio."""
        assert gradio_pin(requirements) == pin

    @pytest.mark.parametrize(("requirements", "word"), [("gradio>=6.0\n", "pin"), ("openai==3.57.0\n", "list")])
    def test_unpinned_or_absent_gradio_is_a_violation(self, space, requirements, word):
        """sdk_version cannot be compared with a range or a missing line: that is a violation too."""
        (space / "requirements.txt").write_text(requirements)
        (problem,) = check_readme(space / "README.md")
        assert problem.startswith("sdk_version:")
        assert word in problem
