"""A controllable model loader for component tests of the manager: loads block until the test releases them, or fail.

Everything else is real: the version directories on disk, the manager, the lifecycle and its threads. The instances
are stand-ins that carry the version they came from (the manager only hands them to requests and asks for ``info``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from ovmsd.config.models import ModelConfig
from ovmsd.errors import ModelLoadError
from ovmsd.serving.instance import InstanceInfo
from ovmsd.serving.shape_cache import CacheStats

WAIT_S = 10.0  # how long a test waits for something that should happen at once; reached only when it is broken


@dataclass
class FakeInstance:
    model: str
    version: int
    load: int  # the n-th load of this version
    closed: bool = False

    def info(self) -> InstanceInfo:
        return InstanceInfo(compiled_shapes=[], nireq=1, stats=CacheStats())

    def close(self) -> None:
        self.closed = True


@dataclass
class _Hold:
    release: threading.Event = field(default_factory=threading.Event)


class HeldLoader:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holds: dict[tuple[str, int], _Hold] = {}
        self._failures: dict[tuple[str, int], str] = {}
        self.started: list[tuple[str, int]] = []
        self.finished: list[tuple[str, int]] = []
        self.running = 0
        self.most_running = 0
        self.running_per_model: dict[str, int] = {}
        self.most_running_per_model: dict[str, int] = {}

    def hold(self, model: str, version: int) -> threading.Event:
        """The next loads of this version block until the returned event is set."""
        hold = _Hold()
        with self._cond:
            self._holds[(model, version)] = hold
        return hold.release

    def fail(self, model: str, version: int, message: str = "injected failure") -> None:
        with self._cond:
            self._failures[(model, version)] = message

    def heal(self, model: str, version: int) -> None:
        with self._cond:
            self._failures.pop((model, version), None)

    def wait_started(self, model: str, version: int, count: int = 1, timeout: float = WAIT_S) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.started.count((model, version)) >= count, timeout=timeout):
                raise AssertionError(f"load {count} of {model} v{version} never started; started: {self.started}")

    def wait_finished(self, model: str, version: int, count: int = 1, timeout: float = WAIT_S) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.finished.count((model, version)) >= count, timeout=timeout):
                raise AssertionError(f"load {count} of {model} v{version} never finished; finished: {self.finished}")

    def __call__(self, model_file: Path, config: ModelConfig, version: int) -> FakeInstance:
        key = (config.name, version)
        with self._cond:
            self.started.append(key)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            per_model = self.running_per_model.get(config.name, 0) + 1
            self.running_per_model[config.name] = per_model
            self.most_running_per_model[config.name] = max(self.most_running_per_model.get(config.name, 0), per_model)
            hold = self._holds.get(key)
            self._cond.notify_all()
        try:
            if hold is not None and not hold.release.wait(timeout=60):
                raise ModelLoadError("the test never released this load")
            with self._cond:
                failure = self._failures.get(key)
            if failure is not None:
                raise ModelLoadError(failure)
            return FakeInstance(config.name, version, self.started.count(key))
        finally:
            with self._cond:
                self.running -= 1
                self.running_per_model[config.name] -= 1
                self.finished.append(key)
                self._cond.notify_all()


def make_version(base: Path, version: int) -> Path:
    """A version directory with a model file the repository recognises (its content is never read here)."""
    directory = base / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(f"version {version}".encode())
    return directory
