"""Mends to Gradio 6.31's page that only a script in the page can make (`page_fixes.js`, loaded in its head)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAGE_FIXES_JS"]

PAGE_FIXES_JS = (Path(__file__).with_name("page_fixes.js")).read_text(encoding="utf-8")
