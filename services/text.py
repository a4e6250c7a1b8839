"""Text hygiene shared by every input: what arrives from a raw API call is not always valid Unicode."""

from __future__ import annotations

import re

__all__ = ["clean"]

# A lone UTF-16 surrogate is a valid JSON escape ("\ud800") but cannot be encoded as UTF-8: it would crash the
# HTTP client on the way to the model, or Gradio's JSON encoder on the way back.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean(value: str) -> str:
    """`value` without NUL characters, and with each lone surrogate replaced by U+FFFD (the replacement mark)."""
    return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", ""))
