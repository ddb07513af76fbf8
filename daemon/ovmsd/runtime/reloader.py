"""Every config reload runs on one thread of its own, whoever asks for it.

The main loop must answer SIGTERM at once, so it never reloads itself: it asks (:meth:`Reloader.request`) and
returns to waiting. The control socket and the front ends ask and wait for the outcome (:meth:`Reloader.reload`).
Asks that arrive during a reload are merged into one more reload afterwards (the config is read whole each time, so
one more read covers them all).

A stop always wins: :meth:`Reloader.close` answers every caller still waiting at once ("the daemon is stopping"),
while the reload in progress, if any, goes on unobserved on its daemon thread (a config parse cannot be
interrupted; nothing waits for it). And no exception from a reload ever leaves this thread: it becomes the
reload's outcome, a rejected reload, logged once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
STOPPING = "the daemon is stopping"


class Reloader(Generic[R]):
    """Runs ``reload(trigger)``; ``failed(trigger, reason)`` makes the outcome of one that raised or never ran."""

    def __init__(self, reload: Callable[[str], R], failed: Callable[[str, str], R]) -> None:
        self._reload = reload
        self._failed = failed
        self._cond = threading.Condition()
        self._pending: list[str] = []
        # (trigger, outcome) of the callers of reload() whose reload has not started, and of those in progress
        self._waiting: list[tuple[str, Future[R]]] = []
        self._running: list[tuple[str, Future[R]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="reloader", daemon=True)
        self._thread.start()

    def request(self, trigger: str) -> None:
        """Ask for a reload and return at once (signals, the config watcher)."""
        with self._cond:
            self._ask(trigger)

    def reload(self, trigger: str) -> R:
        """Ask for a reload and wait for its outcome: the first reload that starts after this call (so it reads
        the config as it is now), or "the daemon is stopping" as soon as a stop begins."""
        outcome: Future[R] = Future()
        with self._cond:
            if self._closed:
                return self._failed(trigger, STOPPING)
            self._waiting.append((trigger, outcome))
            self._ask(trigger)
        return outcome.result()

    def close(self) -> None:
        """No reload starts after this; waiting callers are answered now. One running goes on, unobserved."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            abandoned = [*self._waiting, *self._running]
            self._waiting, self._running = [], []
            self._cond.notify()
        for trigger, outcome in abandoned:
            _settle(outcome, lambda t=trigger: self._failed(t, STOPPING))

    def _ask(self, trigger: str) -> None:
        if trigger not in self._pending:
            self._pending.append(trigger)
        self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                trigger = " + ".join(self._pending)
                self._pending.clear()
                self._running, self._waiting = self._waiting, []
            outcome = self._attempt(trigger)
            with self._cond:
                waiters, self._running = self._running, []
            for _, waiter in waiters:
                _settle(waiter, outcome)

    def _attempt(self, trigger: str) -> Callable[[], R]:
        """How each waiter gets the reload's outcome: the result, or a rejection made of the exception."""
        try:
            result = self._reload(trigger)
        except Exception as exc:  # a reload never takes the daemon down: it is rejected, the old config serves
            log.exception("config reload (%s) failed, the config in use stays: %s", trigger, _describe(exc))
            reason = f"reload failed: {_describe(exc)}"
            return lambda: self._failed(trigger, reason)
        return lambda: result


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _settle(outcome: Future[R], make: Callable[[], R]) -> None:
    """Answer a waiting caller, unless it was answered already (a stop came first)."""
    if outcome.done():
        return
    try:
        try:
            result = make()
        except Exception as exc:  # even the failure cannot be described: the caller gets the exception
            outcome.set_exception(exc)
        else:
            outcome.set_result(result)
    except InvalidStateError:  # answered meanwhile
        pass
