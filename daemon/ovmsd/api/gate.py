"""Admission of requests on every front end, for a stop that fails none mid-way.

A transport's own shutdown cancels calls that reached the server but not yet a handler (gRPC clients see CANCELLED).
So the daemon stops in two steps. First the gate closes: every front end's wrapper refuses each new request
(UNAVAILABLE / 503) before doing anything, the requests already admitted finish, and clients learn that the server
is going away. Once nothing runs and no request arrived for a short quiet spell, the transports shut down with
nothing left to cancel.
"""

from __future__ import annotations

import threading
import time

SHUTTING_DOWN = "Server is shutting down; retry on another instance"


class Gate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._running = 0
        self._quiet_since = 0.0  # the gate's closing, or the last refusal after it

    def enter(self) -> bool:
        """Admit one request (True), or refuse it once the gate is closed (False)."""
        with self._cond:
            if not self._open:
                self._quiet_since = time.monotonic()
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            if self._running == 0:
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._open = False
            self._quiet_since = time.monotonic()

    def drain(self, timeout: float, quiet_s: float) -> bool:
        """After ``close``: wait until no admitted request runs and none came for ``quiet_s`` seconds.

        Returns False when ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                quiet_at = self._quiet_since + quiet_s
                if self._running == 0 and now >= quiet_at:
                    return True
                if now >= deadline:
                    return False
                wake = deadline if self._running else min(deadline, quiet_at)
                self._cond.wait(timeout=wake - now)

    @property
    def running(self) -> int:
        return self._running
