"""One model version's record: its state, its loaded instance, and the requests using it.

The record holds data; it never decides. Only ``ovmsd.serving.lifecycle`` changes its state and its instance.
Requests take and give back *handles* through ``try_acquire``/``release``; the release of the last handle of an
UNLOADING version tells the lifecycle (``on_drained``), which ends it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ovmsd.serving.states import State, VersionSnapshot, VersionStatus

if TYPE_CHECKING:
    from ovmsd.serving.instance import ModelInstance


class ModelVersion:
    def __init__(self, model: str, version: int, path: Path) -> None:
        self.model = model
        self.version = version
        self.path = path
        # Guards the fields below; the lifecycle takes it to change them, so a state and its instance change together.
        self.lock = threading.Condition()
        self.in_flight = 0
        self.status = VersionStatus(model, version, State.START)
        self.instance: ModelInstance | None = None
        self.fingerprint: object = None  # what the files looked like at the last load attempt
        self.on_drained: Callable[[ModelVersion], None] | None = None  # set while UNLOADING

    @property
    def state(self) -> State:
        return self.status.state

    def snapshot(self) -> VersionSnapshot:
        with self.lock:
            status, in_flight, instance = self.status, self.in_flight, self.instance
        if instance is None:
            return VersionSnapshot(status, in_flight)
        info = instance.info()
        return VersionSnapshot(status, in_flight, tuple(info.compiled_shapes), info.nireq, replace(info.stats))

    def try_acquire(self) -> ModelInstance | None:
        """A handle on the instance while the version is AVAILABLE; None otherwise."""
        with self.lock:
            if self.status.state != State.AVAILABLE or self.instance is None:
                return None
            self.in_flight += 1
            return self.instance

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1
            drained = self.on_drained if self.in_flight == 0 else None
        if drained is not None:
            drained(self)
