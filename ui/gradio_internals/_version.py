"""The Gradio versions this package was checked against: a range, since a patch release rarely moves internals."""

from __future__ import annotations

import warnings

import gradio as gr
from packaging.version import InvalidVersion, Version

__all__ = ["CHECKED_FROM", "CHECKED_UNTIL", "PATCHED_VERSION", "on_checked_version"]

# The pin in requirements.txt; tests/test_ui_gradio_internals.py checks that the installed Gradio is this one.
PATCHED_VERSION = "6.31.0"
# From this version (included) up to that one (excluded): a new minor release may move what the patches rely on.
CHECKED_FROM = Version("6.31.0")
CHECKED_UNTIL = Version("6.32.0")


def on_checked_version(what: str) -> bool:
    """True on a Gradio within the checked range; otherwise a warning that says `what` is skipped, and False.

    Outside the range, re-run tests/test_ui_gradio_internals.py (it fails where a patch no longer takes), then move
    the range or delete what the new release made needless.
    """
    try:
        version = Version(gr.__version__)
    except InvalidVersion:
        version = None
    if version is not None and CHECKED_FROM <= version < CHECKED_UNTIL:
        return True
    warnings.warn(
        f"ui/gradio_internals was written for gradio {PATCHED_VERSION} (checked from {CHECKED_FROM} up to "
        f"{CHECKED_UNTIL}), not {gr.__version__}: {what} skipped.",
        stacklevel=3,
    )
    return False
