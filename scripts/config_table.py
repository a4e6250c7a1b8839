"""README.md's Configuration table, written from `services.config.VARIABLES` (tests/test_docs.py compares them).

python scripts/config_table.py          # print the table
python scripts/config_table.py --write  # write it into README.md's Configuration section, in place
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.config import VARIABLES, Settings, Variable

__all__ = ["SECTIONS", "default_of", "render"]

SECTIONS = {
    "backend": "Backend",
    "sign-in": "Sign in with Hugging Face",
    "chat": "Chat",
    "tools": "Tools of MCP servers",
    "limits": "Limits",
    "history": "Saved conversations",
    "access": "Access",
    "platform": "Platform",
}


def default_of(variable: Variable) -> str:
    """How the table shows a variable's default: the row's own words, else the field's default value."""
    if variable.default is not None:
        return variable.default
    if variable.field is None:
        return "unset"
    value = next(f.default for f in dataclasses.fields(Settings) if f.name == variable.field)
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def render() -> str:
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for key, title in SECTIONS.items():
        lines.append(f"| **{title}** | | |")
        for variable in (v for v in VARIABLES if v.section == key):
            meaning = ("**Secret.** " if variable.secret else "") + variable.meaning
            lines.append(f"| `{variable.name}` | {default_of(variable)} | {meaning} |")
    return "\n".join(lines)


def write(readme: Path) -> None:
    """Replace the table of README's Configuration section (its lines that start with "|") with `render()`."""
    head, rest = readme.read_text().split("\n## Configuration\n", 1)
    section, tail = rest.split("\n## ", 1)
    lines = section.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    last = max(i for i, line in enumerate(lines) if line.startswith("|"))
    section = "\n".join([*lines[:first], render(), *lines[last + 1 :]])
    readme.write_text(f"{head}\n## Configuration\n{section}\n## {tail}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write(Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(render())
