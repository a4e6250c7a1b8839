"""Debian's Chromium (never a downloaded one), driven by Playwright, as the browser tests launch it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

__all__ = ["CHROMIUM", "chromium"]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@contextmanager
def chromium() -> Iterator[Browser]:
    # Playwright gives every launch a fresh, empty profile of its own (it refuses --user-data-dir here).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()
