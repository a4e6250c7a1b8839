"""The message shape gr.Chatbot's page expects (gradio 6.31), for values sent ready-made (`postprocess=False`).

The place for everything the app knows of the Chatbot's wire format: `ui/render.py` builds its messages with
`text_message`, so that a Gradio release that changes the shape changes one function, and
tests/test_ui_gradio_internals.py compares it with what `Chatbot.postprocess` itself gives.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatMessage", "image_block", "text_message"]

ChatMessage = dict[str, Any]


def text_message(role: str, text: str, metadata: dict[str, Any] | None = None) -> ChatMessage:
    """One message of `text`: content as a list of text blocks, which the page shows as written (a plain string
    would go through inspect.cleandoc, which strips pasted code's indentation)."""
    return {"role": role, "metadata": metadata, "content": [{"type": "text", "text": text}], "options": None}


def image_block(path: str, name: str) -> dict[str, Any]:
    """A block that shows an image file Gradio serves (one in its upload folder), after a message's text."""
    file = {"path": path, "mime_type": "image/webp", "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    return {"type": "file", "file": file, "alt_text": name}
