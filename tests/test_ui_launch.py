"""SpaceBlocks' lifespan, run as the server runs it: what happens when the server starts and when it stops."""

from __future__ import annotations

import asyncio
import gc

import pytest

from services.config import load_settings
from ui.launch import SpaceBlocks

pytestmark = pytest.mark.unit


def test_the_start_freezes_what_exists_and_the_stop_runs_the_closers():
    """What exists when the server starts is out of the collector's full passes; the start hooks run without
    holding up the start, the stop hooks when it stops."""
    ran: list[str] = []

    async def start() -> None:
        ran.append("started")

    async def stop() -> None:
        ran.append("stopped")

    demo = SpaceBlocks(load_settings({"HISTORY_SECRET": "x" * 40}), on_startup=[start], on_shutdown=[stop])
    before = ["made before the start"]
    assert any(tracked is before for tracked in gc.get_objects())

    async def serve() -> None:
        async with demo._lifespan(None)(None):
            await asyncio.sleep(0)  # the start hooks run once the server is serving
            assert ran == ["started"]
            assert not any(tracked is before for tracked in gc.get_objects())
            after = ["made while serving"]
            assert any(tracked is after for tracked in gc.get_objects())

    asyncio.run(serve())
    assert ran == ["started", "stopped"]
