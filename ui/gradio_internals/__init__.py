"""Everything the app knows of Gradio's private internals, in one package, for the pinned Gradio (6.31).

What lives here reads or changes what Gradio does not document: its request formats and routes, its sessions and
queue, its MCP server's dispatch, the Chatbot's wire format, and workarounds for its performance. Each module says
what it relies on and when to delete it. Outside the checked version range (`_version.py`) the patches are
skipped with a warning; on the pinned version, tests/test_ui_gradio_internals.py fails (it does not warn) when one
of them no longer takes.
"""

from __future__ import annotations

import gradio as gr

from ui.gradio_internals._version import CHECKED_FROM, CHECKED_UNTIL, PATCHED_VERSION, on_checked_version
from ui.gradio_internals.jobs import cancel_jobs_whose_client_left
from ui.gradio_internals.mcp import accept_lists_of_files, called_through_mcp, keep_out_of_mcp
from ui.gradio_internals.performance import (
    cache_init_signatures,
    keep_no_session_configs,
    skip_missing_matplotlib,
    wake_the_idle_queue_on_push,
)

__all__ = [
    "CHECKED_FROM",
    "CHECKED_UNTIL",
    "PATCHED_VERSION",
    "accept_lists_of_files",
    "apply",
    "called_through_mcp",
    "keep_out_of_mcp",
    "on_checked_version",
]


def apply(blocks: gr.Blocks) -> None:
    """The process-wide tuning, for this Blocks; on a Gradio outside the checked range, nothing (with a warning)."""
    if not on_checked_version("performance workarounds"):
        return
    skip_missing_matplotlib()
    cache_init_signatures(blocks)
    keep_no_session_configs()
    wake_the_idle_queue_on_push(blocks)
    cancel_jobs_whose_client_left()
    accept_lists_of_files()
    # LoginButton's page-load check is a public endpoint in 6.31, which made it an MCP tool with no description.
    keep_out_of_mcp(gr.LoginButton._check_login_status)
