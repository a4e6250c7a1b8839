"""A time limit on the waits of a streamed reply, at the cost of one timer per reply rather than one per piece.

`asyncio.timeout_at` around each wait for a piece costs a timer, a heap push and a cancellation per piece, about
as much CPU as reading the piece itself. A reply's limits (its deadline, the longest silence between two pieces)
move at most once a piece, so one timer is enough: it is re-armed only when it rings early (the limit moved
since), and between two waits the stream only notes that it is waiting, or not.

A ring cancels the task only while it waits inside the stream (between `enter` and `leave`), never while the
stream is suspended at a `yield` and its consumer runs: the consumer's own awaits are not the stream's to cut.
A ring outside is kept (`rang`) for the stream to see on its next `enter`. Cancellation follows
`asyncio.Timeout`: the count of cancellation requests is restored, and a cancellation that someone else
requested too (Stop, a client that left) stays a cancellation.
"""

from __future__ import annotations

import asyncio

__all__ = ["Alarm"]


class Alarm:
    """Rings at `when` (event loop time); `restart` sets it again. Use from one stream:

    alarm.enter()                       # about to wait for the server; raise your error if alarm.rang
    try:
        piece = await ...
    except asyncio.CancelledError:
        if alarm.expired():             # this alarm's cancellation, and nobody else's
            raise YourTimeoutError(...) from None
        raise
    finally:
        alarm.leave()
    ...
    alarm.close()                       # when the stream ends, however it ends
    """

    __slots__ = ("_base", "_cancelled", "_handle", "_loop", "_task", "_when", "rang")

    def __init__(self, when: float, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._when = when
        self._task: asyncio.Task[object] | None = None
        self._base = 0  # the task's pending cancellation requests when it entered
        self._cancelled = False  # a cancellation this alarm requested and nobody has accounted for yet
        self.rang = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(when, self._ring)

    def restart(self, when: float) -> None:
        """Ring at `when` instead, as if it had not rung (a limit on silence starts again at each piece). The
        timer is not touched when it is still set: it finds the new time when it rings."""
        self._when = when
        self.rang = False
        if self._handle is None:
            self._handle = self._loop.call_at(when, self._ring)

    def enter(self) -> None:
        """The current task now waits inside the stream: a ring from here on cancels it."""
        task = asyncio.current_task(self._loop)
        self._task = task
        self._base = task.cancelling() if task is not None else 0

    def leave(self) -> None:
        """The wait is over. A cancellation requested but never delivered (a layer inside turned it into another
        error) is withdrawn, so that the count of the task's cancellation requests stays true."""
        if self._cancelled:
            self._cancelled = False
            if self._task is not None:
                self._task.uncancel()
        self._task = None

    def expired(self) -> bool:
        """Whether the `CancelledError` being handled is this alarm's alone; its request is withdrawn either way."""
        if not self._cancelled or self._task is None:
            return False
        self._cancelled = False
        return self._task.uncancel() <= self._base

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ring(self) -> None:
        if self._loop.time() < self._when:  # postponed since the timer was set
            self._handle = self._loop.call_at(self._when, self._ring)
            return
        self._handle = None
        self.rang = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()
