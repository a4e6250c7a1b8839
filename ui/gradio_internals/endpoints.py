"""What each endpoint and page event takes, read from Gradio's own description of the Blocks.

`blocks.fns` (the events by index, with their input components) and `blocks.get_api_info()` (the named
endpoints' parameters, defaults included) are Gradio internals; the request guard reads them through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.data_classes import ListFiles

__all__ = ["ApiShape", "EventShape", "api_shapes", "event_shapes"]


@dataclass(frozen=True)
class ApiShape:
    """An endpoint's parameters, in order: (name, has_default, default); and whether any input is a file."""

    name: str
    parameters: tuple[tuple[str, bool, Any], ...]
    takes_files: bool = False


@dataclass(frozen=True)
class EventShape:
    """What one event of the page (by index) takes: how many inputs, and whether any is a file."""

    inputs: int
    takes_files: bool = False


def _takes_files(block: object) -> bool:
    """Whether a component's value holds files: a file, a list of them, or a model with a field of either (the
    MultimodalTextbox's text and files)."""
    model = getattr(block, "data_model", None)
    if not isinstance(model, type):
        return False
    if issubclass(model, (gr.FileData, ListFiles)):
        return True
    fields = getattr(model, "model_fields", {})
    return any("FileData" in repr(field.annotation) for field in fields.values())


def api_shapes(blocks: gr.Blocks) -> Callable[[], Mapping[str, ApiShape]]:
    """The public endpoints' shapes by API name, read once on first use (the Blocks is complete by then)."""
    found: dict[str, ApiShape] = {}

    def shapes() -> Mapping[str, ApiShape]:
        if not found:
            files = {fn.api_name: any(_takes_files(b) for b in fn.inputs) for fn in blocks.fns.values()}
            for name, info in blocks.get_api_info()["named_endpoints"].items():
                parameters = tuple(
                    (p["parameter_name"], bool(p["parameter_has_default"]), p.get("parameter_default"))
                    for p in info["parameters"]
                )
                api_name = name.lstrip("/")
                found[api_name] = ApiShape(api_name, parameters, takes_files=files.get(api_name, False))
        return found

    return shapes


def event_shapes(blocks: gr.Blocks) -> Callable[[], Mapping[int, EventShape]]:
    """What each event takes by its index, read once on first use."""
    # Every event the page can send is in blocks.fns: it has no gr.render, whose events exist per session only.
    found: dict[int, EventShape] = {}

    def events() -> Mapping[int, EventShape]:
        if not found:
            found.update(
                {
                    index: EventShape(len(fn.inputs), takes_files=any(_takes_files(b) for b in fn.inputs))
                    for index, fn in blocks.fns.items()
                }
            )
        return found

    return events
