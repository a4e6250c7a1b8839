"""Results nobody reads are bounded: per session in count and bytes, in total bytes, and in age.

Gradio's queue (queueing.py, 6.31) keeps each session's messages (every streamed update, every result) in
`Queue.pending_messages_per_session` until a client reads them from the session's event stream
(`/gradio_api/queue/data`, or `/gradio_api/call/<name>/<event_id>`). A caller that starts calls and never reads
them left every result in memory: 3,000 `/call/reverse` of 100 KB held hundreds of MB for as long as the process
lived. `UnreadResults` replaces that mapping (an LRU of 2,000 sessions there) with one whose queues count what they
hold: past `per_session_messages` or `per_session_bytes` unread, or `total_bytes` unread across all sessions
(oldest first), or unread for `ttl` seconds, a session's unread results are let go, its running events stop
sending, and its stream answers that the session is gone. A client that reads as results come never gets near.

A `/call` sent without a session hash is its own session in Gradio (named by the event's id), for that one call:
once its result is in, `on_session_end` callbacks are told (the app drops what it kept for it), and Gradio's
state for it is dropped, so that such calls, however many, never push other sessions out of a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from asyncio import Queue as AsyncQueue
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from gradio.server_messages import ProcessCompletedMessage
from gradio.utils import LRUCache

__all__ = ["UnreadResults", "install"]

logger = logging.getLogger(__name__)


def message_bytes(message: object) -> int:
    """About what a message holds in memory: its output's strings at their real size (an astral character takes
    four bytes), other values at a word each; without recursion (the output came from a handler, its size did not)."""
    output = getattr(message, "output", None)
    total = 64
    stack: list[object] = [output]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += sys.getsizeof(item)
        elif isinstance(item, dict):
            total += 64
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 56 + 8 * len(item)
            stack.extend(item)
        else:
            total += 16
    return total


class _SessionMessages(AsyncQueue[Any]):
    """One session's messages, counted as they come in and go out (asyncio.Queue's own `_put` and `_get`)."""

    def __init__(self, owner: UnreadResults, key: str) -> None:
        super().__init__()
        self._owner: UnreadResults | None = owner  # None once the session left the mapping
        self.key = key
        self.sizes: deque[tuple[float, int]] = deque()  # (when it came, its bytes), oldest first
        self.bytes = 0

    def _put(self, item: Any) -> None:
        super()._put(item)
        size = message_bytes(item)
        self.sizes.append((time.monotonic(), size))
        self.bytes += size
        if self._owner is not None:
            self._owner.added(self, size, item)

    def _get(self) -> Any:
        item = super()._get()
        _, size = self.sizes.popleft()
        self.bytes -= size
        if self._owner is not None:
            self._owner.taken(self, size)
        return item

    def detach(self) -> None:
        """Out of the mapping: what is left is no longer counted, and goes with the last reader's reference."""
        self._owner = None

    def oldest(self) -> float | None:
        return self.sizes[0][0] if self.sizes else None


class _Discarded(AsyncQueue[Any]):
    """Where the messages of a session already let go end up (a still-running event's last updates)."""

    def _put(self, item: Any) -> None:
        pass


class UnreadResults(LRUCache[str, AsyncQueue[Any]]):
    """Gradio's `pending_messages_per_session`, bounded as the module says."""

    def __init__(
        self,
        blocks: gr.Blocks,
        *,
        per_session_messages: int,
        per_session_bytes: int,
        total_bytes: int,
        ttl: float,
        capacity: int = 2000,
        on_session_end: Sequence[Callable[[str], None]] = (),
    ) -> None:
        super().__init__(capacity)
        self._blocks = blocks
        self.per_session_messages = per_session_messages
        self.per_session_bytes = per_session_bytes
        self.total_bytes = total_bytes
        self.ttl = ttl
        self._on_session_end = tuple(on_session_end)
        self.unread_bytes = 0
        self._unread: OrderedDict[str, _SessionMessages] = OrderedDict()  # sessions with unread messages
        self._sweeper: asyncio.Task[None] | None = None
        self.let_go = 0  # sessions whose unread results were let go, for the logs and the tests

    # The mapping, as Gradio uses it.

    def __setitem__(self, key: str, value: AsyncQueue[Any]) -> None:
        if not isinstance(value, _SessionMessages):
            value = _SessionMessages(self, key)  # the queue Gradio makes (empty) is replaced by a counting one
        if key not in self and len(self) >= self.max_size:
            self._let_go(next(iter(self)), "more sessions than the queue keeps")
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        queue = super().__getitem__(key)
        super().__delitem__(key)
        if isinstance(queue, _SessionMessages):
            self.unread_bytes -= queue.bytes
            self._unread.pop(key, None)
            queue.detach()

    def __missing__(self, key: str) -> AsyncQueue[Any]:
        return _Discarded()

    # Accounting, called by the queues.

    def added(self, queue: _SessionMessages, size: int, message: Any) -> None:
        self.unread_bytes += size
        if queue.key not in self._unread:
            self._unread[queue.key] = queue
        self._start_sweeper()
        if isinstance(message, ProcessCompletedMessage) and message.event_id == queue.key:
            self._ephemeral_ended(queue.key)
        if queue.qsize() > self.per_session_messages or queue.bytes > self.per_session_bytes:
            self._let_go(queue.key, "more unread results than a session may hold")
        while self.unread_bytes > self.total_bytes and self._unread:
            self._let_go(next(iter(self._unread)), "more unread results than the server holds")

    def taken(self, queue: _SessionMessages, size: int) -> None:
        self.unread_bytes -= size
        if not queue.sizes:
            self._unread.pop(queue.key, None)

    # Letting go.

    def _let_go(self, key: str, why: str) -> None:
        if key in self:
            del self[key]
        self._unread.pop(key, None)
        self.let_go += 1
        queue = self._blocks._queue
        for event_id in queue.pending_event_ids_session.pop(key, set()):
            event = queue.event_ids_to_events.get(event_id)
            if event is not None:
                event.alive = False
        logger.info("Unread results of a session let go: %s.", why)

    def _ephemeral_ended(self, key: str) -> None:
        """A /call without a session hash has its result: the session named by its event ends here."""
        self._blocks.state_holder.session_data.pop(key, None)
        self._blocks.state_holder.time_last_used.pop(key, None)
        for end in self._on_session_end:
            end(key)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            with contextlib.suppress(RuntimeError):  # no running loop: the next put starts it
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Let go of results unread for `ttl` seconds, oldest first, while there are any."""
        while self._unread:
            await asyncio.sleep(min(10.0, self.ttl / 4))
            now = time.monotonic()
            for key, queue in list(self._unread.items()):
                oldest = queue.oldest()
                if oldest is not None and now - oldest > self.ttl:
                    self._let_go(key, f"unread for {self.ttl:g} s")


def install(blocks: gr.Blocks, **bounds: Any) -> UnreadResults:
    """Put `UnreadResults(blocks, **bounds)` in place of the queue's mapping (after `blocks.queue()`)."""
    results = UnreadResults(blocks, **bounds)
    blocks._queue.pending_messages_per_session = results
    return results
