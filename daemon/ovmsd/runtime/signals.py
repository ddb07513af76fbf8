"""Signals as events: handlers only record the signal (``signal.set_wakeup_fd``); the main loop reads and acts."""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable


class SignalInbox:
    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, _record_only)

    def wait(self, timeout: float | None = None) -> list[signal.Signals]:
        """Block until at least one signal arrived (returns them in order) or ``timeout`` passed (returns [])."""
        readable, _, _ = select.select([self._reader], [], [], timeout)
        if not readable:
            return []
        return [signal.Signals(n) for n in self._reader.recv(64)]


def _record_only(signum: int, frame: object) -> None:
    """The wakeup fd already carries the signal number to the main loop."""
