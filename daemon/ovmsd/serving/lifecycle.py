"""The legal lifecycle of a model version, and the only code that changes a version's state.

    START -> LOADING -> AVAILABLE -> UNLOADING -> END
    LOADING -> LOADING        a load failed (the error is recorded), or a failed version is tried again
    AVAILABLE -> AVAILABLE    reloaded in place (its files changed): a new instance replaces the old one
    LOADING -> END            a version that never served is dropped (its directory went away, its model was
                              removed from the config, or the daemon stops)
    END -> LOADING            the version's directory came back

Anything else is a bug: it is logged with the version and both states, and the state does not change. Status,
health and metrics never call in here; they read ``ModelVersion.snapshot()``.

A retire never waits. It marks the version UNLOADING at once; the version ends (END, instance dropped) when its last
request releases it, or when the drain timeout passes, whichever comes first. An instance that is replaced or whose
version ends while requests still hold it stays alive (and usable: a held request may still compile a new shape)
until those requests finish; nothing closes it under them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ovmsd.serving.states import ErrorCode, State, VersionStatus
from ovmsd.serving.version import ModelVersion

if TYPE_CHECKING:
    from ovmsd.serving.instance import ModelInstance

log = logging.getLogger(__name__)

LEGAL: dict[State, frozenset[State]] = {
    State.START: frozenset({State.LOADING}),
    State.LOADING: frozenset({State.LOADING, State.AVAILABLE, State.END}),
    State.AVAILABLE: frozenset({State.AVAILABLE, State.UNLOADING}),
    State.UNLOADING: frozenset({State.END}),
    State.END: frozenset({State.LOADING}),
}


def is_legal(current: State, to: State) -> bool:
    return to in LEGAL[current]


class Lifecycle:
    def __init__(self, drain_timeout_s: float = 30.0) -> None:
        self.drain_timeout_s = drain_timeout_s
        self._cond = threading.Condition()
        self._unloading: dict[ModelVersion, threading.Timer] = {}  # each with its drain-timeout timer
        self.illegal_transitions = 0  # counted for tests and status; each is also logged as a bug
        # Told (model, version) when a version ends, with its lock held: quick, and never taking a version's lock.
        self.ended: list[Callable[[str, int], None]] = []

    # -- transitions -------------------------------------------------------------------------------------------------

    def start_loading(self, version: ModelVersion) -> bool:
        """START, END or a failed LOADING -> LOADING (no error)."""
        with version.lock:
            return self._move(version, State.LOADING)

    def load_failed(self, version: ModelVersion, message: str) -> bool:
        """LOADING -> LOADING with the error, as OVMS reports a version that failed to load."""
        with version.lock:
            return self._move(version, State.LOADING, ErrorCode.UNKNOWN, message)

    def make_available(self, version: ModelVersion, instance: ModelInstance) -> bool:
        """LOADING -> AVAILABLE, or AVAILABLE -> AVAILABLE with a new instance (in-place reload).

        The instance replaced is not closed: requests holding it finish with it, and it is freed after them.
        """
        with version.lock:
            if not self._move(version, State.AVAILABLE):
                return False
            version.instance = instance
            return True

    def retire(self, version: ModelVersion) -> None:
        """AVAILABLE -> UNLOADING (END once drained); a version that never served -> END at once."""
        with version.lock:
            state = version.state
            if state in (State.UNLOADING, State.END):
                return
            if state != State.AVAILABLE:
                self._move(version, State.END)
                version.instance = None
                return
            self._move(version, State.UNLOADING)
            if version.in_flight == 0:
                self._end(version, drained=True)
                return
            version.on_drained = self._drained
            timer = threading.Timer(self.drain_timeout_s, self._drain_timed_out, (version,))
            timer.daemon = True
            timer.name = f"drain-{version.model}-{version.version}"
            with self._cond:
                self._unloading[version] = timer
            timer.start()

    # -- drains ------------------------------------------------------------------------------------------------------

    def _drained(self, version: ModelVersion) -> None:
        with version.lock:
            if version.state == State.UNLOADING and version.in_flight == 0:
                self._end(version, drained=True)

    def _drain_timed_out(self, version: ModelVersion) -> None:
        with version.lock:
            if version.state != State.UNLOADING:
                return
            log.warning(
                "model %s version %d: %d requests still running after %g s; ending it (they finish with the "
                "instance they hold)",
                version.model,
                version.version,
                version.in_flight,
                self.drain_timeout_s,
            )
            self._end(version, drained=False)

    def _end(self, version: ModelVersion, *, drained: bool) -> None:
        """UNLOADING -> END; called with ``version.lock`` held."""
        self._move(version, State.END)
        instance, version.instance = version.instance, None
        version.on_drained = None
        if drained and instance is not None:
            instance.close()  # nobody holds it any more: free its compiled variants now
        with self._cond:
            timer = self._unloading.pop(version, None)
            self._cond.notify_all()
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def unloading(self) -> int:
        with self._cond:
            return len(self._unloading)

    def wait_drained(self, timeout: float | None) -> bool:
        """Wait until no version is UNLOADING; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._unloading, timeout=timeout)

    # -- the one place a state changes ------------------------------------------------------------------------------

    def _move(self, version: ModelVersion, to: State, code: ErrorCode = ErrorCode.OK, message: str = "") -> bool:
        """Change the state if the transition is legal; called with ``version.lock`` held."""
        previous = version.status
        if not is_legal(previous.state, to):
            self.illegal_transitions += 1
            log.error(
                "BUG: illegal lifecycle transition %s -> %s for model %s version %d (ignored)",
                previous.state.name,
                to.name,
                version.model,
                version.version,
            )
            return False
        version.status = VersionStatus(version.model, version.version, to, code, message)
        if previous.state != to or previous.error_message != message:
            level = logging.ERROR if message else logging.INFO
            suffix = f": {message}" if message else ""
            log.log(level, "model %s version %d: %s%s", version.model, version.version, to.name, suffix)
        if to == State.END and previous.state != State.END:
            for observer in self.ended:
                try:
                    observer(version.model, version.version)
                except Exception:  # an observer's bug must not stop a version from ending
                    log.exception("model %s version %d: an observer of its end failed", version.model, version.version)
        return True
