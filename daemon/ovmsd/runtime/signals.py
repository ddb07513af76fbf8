"""Signals as events: handlers only record the signal (``signal.set_wakeup_fd``); the main loop reads and acts.

Other threads wake the main loop through the same pipe (``wake``), so it waits on one thing and never polls.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from collections.abc import Iterable

WAKE = None  # what ``wait`` yields for a ``wake()`` from another thread


class SignalInbox:
    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, _record_only)

    def wait(self, timeout: float | None = None) -> list[signal.Signals | None]:
        """Block until at least one signal or wake-up arrived (returns them in order) or ``timeout`` passed ([])."""
        readable, _, _ = select.select([self._reader], [], [], timeout)
        if not readable:
            return []
        return [WAKE if n == 0 else signal.Signals(n) for n in self._reader.recv(64)]

    def wake(self) -> None:
        """Wake the main loop from another thread (byte 0: no signal has that number)."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full of unread wake-ups: the main loop wakes anyway
            self._writer.send(b"\0")


def _record_only(signum: int, frame: object) -> None:
    """The wakeup fd already carries the signal number to the main loop."""
