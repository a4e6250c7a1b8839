"""Node and the npm packages the tests use (tests/js/package.json), installed once from the lockfile.

`npm ci` runs when tests/js/node_modules lacks a pinned version: from npm's cache when it has it
(`--prefer-offline`; `npm_config_cache` picks the cache, as npm reads it itself), else from the registry. Without
Node 20+ (or without npm, when it has to install) the caller's test fails: it never skips.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

from tests.support.apps import ROOT

__all__ = ["JS_DIR", "NODE_MAJOR", "NodeUnavailable", "installed_version", "node_modules", "pinned_version"]

JS_DIR = ROOT / "tests" / "js"
NODE_MAJOR = 20
NPM_CI_TIMEOUT = 600


class NodeUnavailable(RuntimeError):
    """Raised when Node, npm or the pinned packages cannot be had: the message says which and why."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeUnavailable(f"`{name}` is not on PATH: the JavaScript tests need Node {NODE_MAJOR}+ and npm")
    return path


def pinned_version(package: str) -> str:
    version: str = json.loads((JS_DIR / "package.json").read_text())["dependencies"][package]
    return version


def installed_version(package: str) -> str | None:
    manifest = JS_DIR / "node_modules" / package / "package.json"
    return str(json.loads(manifest.read_text())["version"]) if manifest.is_file() else None


def _all_pinned() -> bool:
    pins = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    return all(installed_version(package) == version for package, version in pins.items())


def node_modules() -> tuple[str, Path]:
    """Node's path, and tests/js/node_modules with every pinned package (`npm ci` first when one is missing)."""
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        raise NodeUnavailable(f"Node {version} is too old: the JavaScript tests need Node {NODE_MAJOR}+")
    if not _all_pinned():
        npm = _tool("npm")
        # One install at a time: pytest runs started together would each empty node_modules under the other.
        with (JS_DIR / "package-lock.json").open() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _all_pinned():
                command = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"]
                try:
                    done = subprocess.run(command, cwd=JS_DIR, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT)
                except subprocess.TimeoutExpired:
                    raise NodeUnavailable(f"`npm ci` in tests/js took over {NPM_CI_TIMEOUT} s") from None
                if done.returncode != 0:
                    raise NodeUnavailable(f"`npm ci` in tests/js failed:\n{done.stdout}\n{done.stderr}")
        if not _all_pinned():
            raise NodeUnavailable("`npm ci` in tests/js did not install the pinned packages")
    return node, JS_DIR / "node_modules"
