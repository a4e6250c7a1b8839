"""Imports run one way, app.py -> ui/ -> services/: the services never import gradio or the page."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.support.apps import ROOT

FORBIDDEN = ("gradio", "ui", "app")


def imported_names(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


SERVICES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "services").rglob("*.py"))


@pytest.mark.unit
@pytest.mark.parametrize("path", SERVICES)
def test_a_service_module_imports_neither_gradio_nor_the_page(path: str) -> None:
    """No `import gradio`, `import ui...` or `import app` anywhere in services/, functions included."""
    bad = {name for name in imported_names(path) if name.split(".")[0] in FORBIDDEN}
    assert bad == set(), f"{path} imports {sorted(bad)}"


@pytest.mark.e2e
def test_importing_every_service_loads_no_gradio() -> None:
    """What the services pull in transitively (spaces, transformers, huggingface_hub) loads no gradio either."""
    code = (
        "import importlib, pkgutil, sys, services\n"
        "for m in pkgutil.walk_packages(services.__path__, 'services.'): importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('gradio', 'ui', 'app')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
