"""Debian's Chromium (never a downloaded one), driven by Playwright, as the browser tests launch it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

__all__ = ["CHROMIUM", "chromium", "chromium_profile"]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
# Playwright's assertions wait 5 s by default; the app, its fake model server and Chromium share two cores here.
expect.set_options(timeout=20_000)


@contextmanager
def chromium(*, extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    """Chromium with the flags every test needs, plus `extra_args` (host name mappings, a test certificate)."""
    # Playwright gives every launch a fresh, empty profile of its own (it refuses --user-data-dir here).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_profile(directory: str, *, extra_args: Sequence[str] = ()) -> Iterator[BrowserContext]:
    """Chromium with a profile of its own in `directory`, as a person's browser is: unlike the contexts of
    `chromium()` (incognito-like, which block third-party cookies), it sends a site's `SameSite=None` cookies with
    another site's requests, as a browser with third-party cookies allowed does."""
    # The profile's own setting, as chrome://settings/cookies writes it: "Allow third-party cookies".
    preferences = Path(directory) / "Default" / "Preferences"
    preferences.parent.mkdir(parents=True, exist_ok=True)
    preferences.write_text(json.dumps({"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            directory, executable_path=CHROMIUM, args=[*FLAGS, *extra_args], ignore_https_errors=True
        )
        try:
            yield context
        finally:
            context.close()
