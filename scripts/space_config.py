"""Check README.md's YAML front-matter against the Spaces config reference, one line per violation.

The Hub reads this header to build the Space, and it is forgiving in the wrong places: a misspelt key is dropped
silently, `python_version: 3.10` is the number 3.1, and an `sdk_version` that differs from requirements.txt's gradio
pin means the Space runs another Gradio than the tests did. Checking here fails a pull request instead of a build.
Reference: https://huggingface.co/docs/hub/spaces-config-reference

Usage: `python scripts/space_config.py [README.md]` prints the violations and exits 1 if there are any.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

__all__ = ["FrontMatterError", "check_front_matter", "check_readme", "gradio_pin", "main", "parse_front_matter"]

COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
HARDWARE = (
    "cpu-basic",
    "cpu-upgrade",
    "t4-small",
    "t4-medium",
    "l4x1",
    "l4x4",
    "l40sx1",
    "l40sx4",
    "l40sx8",
    "a10g-small",
    "a10g-large",
    "a10g-largex2",
    "a10g-largex4",
    "a100-large",
    "a100x4",
    "a100x8",
)
STORAGE = ("small", "medium", "large")
HEADERS = ("mini", "default")
MAX_SHORT_DESCRIPTION = 60
# Every key of the reference (plus `license`, which every Hub repo card accepts). An unknown key is reported because
# the Hub ignores it without a word: `sdkVersion` or `color_from` would quietly fall back to a default.
KNOWN_KEYS = frozenset(
    {
        "title",
        "emoji",
        "colorFrom",
        "colorTo",
        "sdk",
        "sdk_version",
        "python_version",
        "app_file",
        "app_port",
        "base_path",
        "fullWidth",
        "header",
        "short_description",
        "models",
        "datasets",
        "tags",
        "thumbnail",
        "pinned",
        "license",
        "hf_oauth",
        "hf_oauth_scopes",
        "hf_oauth_expiration_minutes",
        "hf_oauth_authorized_org",
        "disable_embedding",
        "startup_duration_timeout",
        "custom_headers",
        "preload_from_hub",
        "suggested_hardware",
        "suggested_storage",
    }
)
REQUIRED_KEYS = ("sdk", "sdk_version", "app_file")
BOOLEAN_KEYS = ("pinned", "fullWidth", "hf_oauth", "disable_embedding")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<yaml>.*?)^---[ \t\r]*$", re.DOTALL | re.MULTILINE)
_PYTHON_VERSION = re.compile(r"3\.\d+(\.\d+)?")
# A requirement line naming gradio itself (not gradio_client, gradio-pdf), with optional extras, then its specifier.
_GRADIO_REQUIREMENT = re.compile(r"^gradio(?![\w.-])\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)", re.IGNORECASE)
_EXACT_PIN = re.compile(r"==\s*(?P<version>[\w.+!-]+)")


class FrontMatterError(ValueError):
    """Raised when README.md has no front-matter block, or the block is not a readable YAML mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys: plain YAML keeps the last one and hides the first silently."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: YAML would keep only the last one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML mapping between the leading `---` lines; raises `FrontMatterError` with the README line number."""
    match = _FRONT_MATTER.match(text.removeprefix("\ufeff"))
    if match is None:
        raise FrontMatterError("no front-matter: README.md must start with a YAML block between two '---' lines")
    try:
        meta = yaml.load(match["yaml"], Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as error:
        # +2: the YAML block starts on the README's second line, and marks count from 0.
        line = f"line {error.problem_mark.line + 2}: " if error.problem_mark else ""
        raise FrontMatterError(f"front-matter {line}{error.problem or error}") from None
    except yaml.YAMLError as error:
        raise FrontMatterError(f"front-matter is not valid YAML: {error}") from None
    if not isinstance(meta, dict):
        raise FrontMatterError(f"front-matter must be a YAML mapping of keys, got {type(meta).__name__}")
    return meta


def gradio_pin(requirements: str) -> str | None:
    """The version in requirements.txt's `gradio==X` line, "" if gradio is listed but not pinned, None if absent."""
    for raw in requirements.splitlines():
        match = _GRADIO_REQUIREMENT.match(raw.split("#", 1)[0].strip())
        if match is None:
            continue
        exact = _EXACT_PIN.fullmatch(match["spec"].strip())
        return exact["version"] if exact else ""
    return None


def _is_emoji_run(text: str) -> int:
    """How many emoji `text` shows (a ZWJ sequence, flag or keycap counts once); 0 if any character is not emoji.

    Approximates Unicode's Extended_Pictographic property, which `unicodedata` does not expose.
    """
    points = [ord(char) for char in text]
    count, i, joined = 0, 0, False
    while i < len(points):
        point = points[i]
        if 0x1F1E6 <= point <= 0x1F1FF:  # a flag is two regional indicators
            if i + 1 >= len(points) or not 0x1F1E6 <= points[i + 1] <= 0x1F1FF:
                return 0
            i += 2
        elif chr(point) in "0123456789#*":  # keycap: base, optional VS16, U+20E3
            rest = points[i + 1 : i + 3]
            if rest[:1] == [0x20E3]:
                i += 2
            elif rest == [0xFE0F, 0x20E3]:
                i += 3
            else:
                return 0
        elif _is_pictographic(point):
            i += 1
        else:
            return 0
        # Presentation selector, skin tones and tag sequences (subdivision flags) belong to the emoji before them.
        while i < len(points) and (
            points[i] == 0xFE0F or 0x1F3FB <= points[i] <= 0x1F3FF or 0xE0020 <= points[i] <= 0xE007F
        ):
            i += 1
        count += 0 if joined else 1
        joined = i < len(points) and points[i] == 0x200D  # zero width joiner: the next emoji is part of this one
        if joined:
            i += 1
            if i >= len(points):
                return 0
    return count


_PICTOGRAPHIC = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x2199),
    (0x21A9, 0x21AA),
    (0x231A, 0x231B),
    (0x2328, 0x2328),
    (0x23CF, 0x23CF),
    (0x23E9, 0x23F3),
    (0x23F8, 0x23FA),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25AB),
    (0x25B6, 0x25B6),
    (0x25C0, 0x25C0),
    (0x25FB, 0x25FE),
    (0x2600, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
    (0x1F000, 0x1FFFD),
)


def _is_pictographic(point: int) -> bool:
    return any(low <= point <= high for low, high in _PICTOGRAPHIC)


def _repo_id_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    try:
        validate_repo_id(value)
    except HFValidationError as error:
        return f"{value!r} is not a repo id ({error})"
    return None


def _check_repo_ids(meta: Mapping[str, Any], key: str, *, first_word: bool = False) -> list[str]:
    if key not in meta:
        return []
    values = meta[key]
    if not isinstance(values, list):
        return [f"{key}: must be a list of repo ids like 'owner/name', got {values!r}"]
    problems = []
    for value in values:
        # preload_from_hub entries are "repo_id [file1,file2] [revision]": only the repo id is checked.
        candidate = value.split()[0] if first_word and isinstance(value, str) and value.strip() else value
        problem = _repo_id_problem(candidate)
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def _check_app_file(value: object, *, root: Path) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"app_file: must be a path relative to the repository root, got {value!r}"]
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        return [f"app_file: {value!r} must be relative to the repository root, without '..'"]
    if not (root / path).is_file():
        return [f"app_file: {value!r} does not exist in {root}"]
    return []


def check_front_matter(meta: Mapping[str, Any], *, root: Path) -> list[str]:
    """Every violation of the config reference in `meta`, as one line each; `root` holds app_file and requirements.txt.

    Returns an empty list when the header is valid.
    """
    problems = [f"{key}: required, missing" for key in REQUIRED_KEYS if key not in meta]
    problems += [
        f"unknown key {key!r}: not in the Spaces config reference (a typo? the Hub would ignore it)"
        for key in meta
        if key not in KNOWN_KEYS
    ]
    if "sdk" in meta and meta["sdk"] != "gradio":
        problems.append(f"sdk: must be 'gradio' (this Space is a Gradio app), got {meta['sdk']!r}")
    if "sdk_version" in meta:
        problems += _check_sdk_version(meta["sdk_version"], root=root)
    if "app_file" in meta:
        problems += _check_app_file(meta["app_file"], root=root)
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in COLORS:
            problems.append(f"{key}: {meta[key]!r} is not one of {', '.join(COLORS)}")
    if "short_description" in meta:
        description = meta["short_description"]
        if not isinstance(description, str):
            problems.append(f"short_description: must be a string, got {description!r}")
        elif len(description) > MAX_SHORT_DESCRIPTION:
            problems.append(
                f"short_description: {len(description)} characters, the Hub allows at most {MAX_SHORT_DESCRIPTION}"
            )
    if "emoji" in meta:
        emoji = meta["emoji"]
        if not isinstance(emoji, str) or _is_emoji_run(emoji.strip()) != 1:
            problems.append(f"emoji: must be exactly one emoji, got {emoji!r}")
    if "python_version" in meta:
        version = meta["python_version"]
        if isinstance(version, float | int):
            # YAML reads an unquoted 3.10 as the number 3.1, which is not the Python the author meant.
            problems.append(f'python_version: {version!r} is a number; quote it, like python_version: "3.12"')
        elif not isinstance(version, str) or not _PYTHON_VERSION.fullmatch(version):
            problems.append(f"python_version: must look like '3.x' or '3.x.y', got {version!r}")
    for key in BOOLEAN_KEYS:
        if key in meta and not isinstance(meta[key], bool):
            problems.append(f"{key}: must be true or false, got {meta[key]!r}")
    if "suggested_hardware" in meta and meta["suggested_hardware"] not in HARDWARE:
        problems.append(f"suggested_hardware: {meta['suggested_hardware']!r} is not one of {', '.join(HARDWARE)}")
    if "suggested_storage" in meta and meta["suggested_storage"] not in STORAGE:
        problems.append(f"suggested_storage: {meta['suggested_storage']!r} is not one of {', '.join(STORAGE)}")
    if "header" in meta and meta["header"] not in HEADERS:
        problems.append(f"header: {meta['header']!r} is not one of {', '.join(HEADERS)}")
    problems += _check_repo_ids(meta, "models")
    problems += _check_repo_ids(meta, "datasets")
    problems += _check_repo_ids(meta, "preload_from_hub", first_word=True)
    return problems


def _check_sdk_version(version: object, *, root: Path) -> list[str]:
    if not isinstance(version, str):
        return [f'sdk_version: {version!r} must be a quoted string like "6.31.0"']
    requirements = root / "requirements.txt"
    if not requirements.is_file():
        return [f"sdk_version: no requirements.txt in {root} to compare the gradio pin with"]
    pin = gradio_pin(requirements.read_text(encoding="utf-8"))
    if pin is None:
        return ["sdk_version: requirements.txt does not list gradio; pin it as gradio==<sdk_version>"]
    if not pin:
        return ["sdk_version: requirements.txt does not pin gradio with '=='; pin it as gradio==<sdk_version>"]
    if pin != version:
        return [f"sdk_version: {version!r} differs from requirements.txt's gradio=={pin}: the Space would run another"]
    return []


def check_readme(readme: Path) -> list[str]:
    """Violations of `readme`'s front-matter, resolving app_file and requirements.txt beside it."""
    try:
        meta = parse_front_matter(readme.read_text(encoding="utf-8"))
    except FrontMatterError as error:
        return [str(error)]
    except OSError as error:
        return [f"cannot read {readme}: {error.strerror}"]
    return check_front_matter(meta, root=readme.parent)


def main(argv: Sequence[str] | None = None) -> int:
    """Print `README.md: <violation>` lines; exit 1 if there are any."""
    args = list(sys.argv[1:] if argv is None else argv)
    readme = Path(args[0] if args else "README.md")
    problems = check_readme(readme)
    for problem in problems:
        print(f"{readme}: {problem}")
    if not problems:
        print(f"{readme}: front-matter OK")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
