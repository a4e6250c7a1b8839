"""Gradio Blocks built in-process by the tests, without the event loops Gradio would leave open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["built"]

T = TypeVar("T")


def built(build: Callable[[], T]) -> T:
    """`build()` run inside a running event loop, which `asyncio.run` then closes.

    Outside a running loop, Gradio makes a new event loop for each lock or event it creates (gradio/utils.py,
    `safe_get_lock`, `safe_get_stop_event`), sets it as the thread's loop and never closes it: each one was a
    ResourceWarning (an unclosed loop and its self-pipe sockets) when garbage-collected, in whatever test ran then.
    """

    async def inside() -> T:
        return build()

    return asyncio.run(inside())
