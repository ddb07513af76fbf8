"""Reloads asked for by signals and the config watcher, run on one thread of their own.

The main loop must answer SIGTERM at once, so it never reloads itself: it asks, and returns to waiting. Asks that
arrive during a reload are merged into one more reload afterwards (the config is read whole each time, so one
more read covers them all).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Reloader:
    def __init__(self, reload: Callable[[str], object]) -> None:
        self._reload = reload
        self._cond = threading.Condition()
        self._pending: list[str] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="reloader", daemon=True)
        self._thread.start()

    def request(self, trigger: str) -> None:
        with self._cond:
            if trigger not in self._pending:
                self._pending.append(trigger)
            self._cond.notify()

    def close(self) -> None:
        """No reload starts after this; one running goes on (a stop abandons what it waits for)."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                trigger = " + ".join(self._pending)
                self._pending.clear()
            try:
                self._reload(trigger)
            except Exception:  # a reload must never take the daemon down: it is rejected, the old config serves
                log.exception("config reload (%s) failed", trigger)
