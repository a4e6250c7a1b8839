"""What each endpoint and page event takes, read from Gradio's own description of the Blocks.

`blocks.fns` (the events by index, with their input components) and `blocks.get_api_info()` (the named
endpoints' parameters, defaults included) are Gradio internals; the request guard reads them through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.data_classes import ListFiles
from pydantic import BaseModel

__all__ = ["ApiShape", "EventShape", "api_shapes", "event_shapes"]


@dataclass(frozen=True)
class ApiShape:
    """An endpoint's parameters, in order: (name, has_default, default); and, by position, the data model of each
    input whose value holds files (the shape Gradio itself validates such a value against)."""

    name: str
    parameters: tuple[tuple[str, bool, Any], ...]
    file_models: Mapping[int, type[BaseModel]] = field(default_factory=dict)

    @property
    def takes_files(self) -> bool:
        return bool(self.file_models)


@dataclass(frozen=True)
class EventShape:
    """What one event of the page (by index) takes: how many inputs, and the data model of each that holds files."""

    inputs: int
    file_models: Mapping[int, type[BaseModel]] = field(default_factory=dict)

    @property
    def takes_files(self) -> bool:
        return bool(self.file_models)


def _file_model(block: object) -> type[BaseModel] | None:
    """A component's data model when its value holds files: a file, a list of them, or a model with a field of
    either (the MultimodalTextbox's text and files); None otherwise."""
    model = getattr(block, "data_model", None)
    if not isinstance(model, type) or not issubclass(model, BaseModel):
        return None
    if issubclass(model, (gr.FileData, ListFiles)):
        return model
    fields = getattr(model, "model_fields", {})
    return model if any("FileData" in repr(f.annotation) for f in fields.values()) else None


def _file_models(inputs: Sequence[object]) -> dict[int, type[BaseModel]]:
    return {index: model for index, block in enumerate(inputs) if (model := _file_model(block)) is not None}


def api_shapes(blocks: gr.Blocks) -> Callable[[], Mapping[str, ApiShape]]:
    """The public endpoints' shapes by API name, read once on first use (the Blocks is complete by then)."""
    found: dict[str, ApiShape] = {}

    def shapes() -> Mapping[str, ApiShape]:
        if not found:
            files = {fn.api_name: _file_models(fn.inputs) for fn in blocks.fns.values()}
            for name, info in blocks.get_api_info()["named_endpoints"].items():
                parameters = tuple(
                    (p["parameter_name"], bool(p["parameter_has_default"]), p.get("parameter_default"))
                    for p in info["parameters"]
                )
                api_name = name.lstrip("/")
                found[api_name] = ApiShape(api_name, parameters, file_models=files.get(api_name, {}))
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
                    index: EventShape(len(fn.inputs), file_models=_file_models(fn.inputs))
                    for index, fn in blocks.fns.items()
                }
            )
        return found

    return events
