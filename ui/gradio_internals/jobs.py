"""Jobs whose client has left are cancelled at once (Gradio 6.31 only stops them at their next yield).

Applied by `ui.gradio_internals.apply`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gradio.queueing

__all__ = ["cancel_jobs_whose_client_left"]


def cancel_jobs_whose_client_left() -> None:
    """A job whose client has gone (its event stream closed: a tab closed, an API caller that hung up on
    `/call/<api>/<event_id>` or `/queue/data`) is cancelled at once, as `/cancel` would, so that its `finally`
    blocks run and the model server's request is closed within a second.

    Gradio 6.31 only marks such jobs not alive (`Queue.clean_events`, called from `queue_data_helper` when the
    stream's client disconnects) and stops them the next time they yield: a reply waiting on a silent model
    server (one sending only `: keep-alive` comments, or thinking for minutes) kept its upstream connection until
    the server spoke again. The running job is the task Gradio named `<session>_<fn>` + `<gradio-sep>` + the event
    id (`utils.set_task_name`), the name `/cancel` finds it by. The tasks are cancelled before Gradio's own method
    awaits anything: it runs while the stream's own task is being cancelled.

    Upstream: docs/upstream/gradio.md. Delete when a client's disconnect cancels its running jobs.
    """
    queue_class = gradio.queueing.Queue
    original = queue_class.clean_events
    if getattr(original, "cancels_running_jobs", False):
        return

    async def clean_events(self: Any, *, session_hash: str | None = None, event_id: str | None = None) -> None:
        names = {
            f"{event.session_hash}_{event.fn._id}<gradio-sep>{event._id}"
            for job in self.active_jobs
            if job
            for event in job
            if (session_hash is not None and event.session_hash == session_hash)
            or (event_id is not None and event._id == event_id)
        }
        if names:
            for task in asyncio.all_tasks():
                if task.get_name() in names:
                    task.cancel()
        await original(self, session_hash=session_hash, event_id=event_id)

    clean_events.cancels_running_jobs = True  # type: ignore[attr-defined]
    queue_class.clean_events = clean_events  # type: ignore[method-assign]
