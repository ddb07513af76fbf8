"""One model version's lifecycle record: its state, its loaded instance, and the requests using it.

Only the manager changes states; requests take and give back *handles* through ``try_acquire``/``release``, and an
unload waits (``drain``) until none is left.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ovmsd.serving.states import ErrorCode, State, VersionSnapshot, VersionStatus

if TYPE_CHECKING:
    from ovmsd.serving.instance import ModelInstance

log = logging.getLogger(__name__)


class ModelVersion:
    def __init__(self, model: str, version: int, path: Path) -> None:
        self.model = model
        self.version = version
        self.path = path
        self._cond = threading.Condition()
        self._in_flight = 0
        self._status = VersionStatus(model, version, State.START)
        self.instance: ModelInstance | None = None
        self.fingerprint: object = None  # what the files looked like at the last load attempt

    @property
    def state(self) -> State:
        return self._status.state

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def status(self) -> VersionStatus:
        return self._status

    def snapshot(self) -> VersionSnapshot:
        with self._cond:
            status, in_flight, instance = self._status, self._in_flight, self.instance
        if instance is None:
            return VersionSnapshot(status, in_flight)
        info = instance.info()
        return VersionSnapshot(status, in_flight, tuple(info.compiled_shapes), info.nireq, replace(info.stats))

    def set_state(self, state: State, error_code: ErrorCode = ErrorCode.OK, message: str = "") -> None:
        with self._cond:
            previous = self._status
            self._status = VersionStatus(self.model, self.version, state, error_code, message)
        if previous.state != state or previous.error_message != message:
            level = logging.ERROR if message and state == State.LOADING else logging.INFO
            suffix = f": {message}" if message else ""
            log.log(level, "model %s version %d: %s%s", self.model, self.version, state.name, suffix)

    def make_available(self, instance: ModelInstance) -> ModelInstance | None:
        """Serve ``instance`` from now on; returns the instance it replaces (which in-flight requests may still use)."""
        with self._cond:
            previous, self.instance = self.instance, instance
        self.set_state(State.AVAILABLE)
        return previous

    def try_acquire(self) -> ModelInstance | None:
        with self._cond:
            if self._status.state != State.AVAILABLE or self.instance is None:
                return None
            self._in_flight += 1
            return self.instance

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def retire(self, timeout: float | None = None) -> None:
        """UNLOADING, wait for the requests in flight, drop the instance, END."""
        self.set_state(State.UNLOADING)
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout=timeout):
                log.warning(
                    "model %s version %d: %d requests still running after %.0f s; unloading anyway",
                    self.model,
                    self.version,
                    self._in_flight,
                    timeout or 0,
                )
            instance, self.instance = self.instance, None
        if instance is not None:
            instance.close()
        self.set_state(State.END)
