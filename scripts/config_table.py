"""README.md's Configuration table, written from `services.config.VARIABLES` (tests/test_docs.py compares them).

python scripts/config_table.py    # print the table, to paste into README.md after a change to VARIABLES
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


if __name__ == "__main__":
    print(render())
