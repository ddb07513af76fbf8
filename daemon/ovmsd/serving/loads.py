"""Times every model version load: wraps the manager's instance factory, so the manager need not know.

Status shows each version's last load duration; metrics observe every load through ``on_load``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ovmsd.config.models import ModelConfig
    from ovmsd.serving.instance import ModelInstance

log = logging.getLogger(__name__)

InstanceFactory = Callable[[Path, "ModelConfig", int], "ModelInstance"]
LoadObserver = Callable[[str, int, bool, float], None]  # model, version, succeeded, seconds


class TimedLoader:
    def __init__(self, load: InstanceFactory) -> None:
        self._load = load
        self._seconds: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self.observers: list[LoadObserver] = []

    def __call__(self, model_file: Path, config: ModelConfig, version: int) -> ModelInstance:
        started = time.perf_counter()
        try:
            instance = self._load(model_file, config, version)
        except Exception:
            self._done(config.name, version, False, time.perf_counter() - started)
            raise
        self._done(config.name, version, True, time.perf_counter() - started)
        return instance

    def _done(self, model: str, version: int, ok: bool, seconds: float) -> None:
        with self._lock:
            self._seconds[(model, version)] = seconds
        log.debug("model %s version %d: load %s after %.3f s", model, version, "done" if ok else "failed", seconds)
        for observe in self.observers:
            observe(model, version, ok, seconds)

    def last_seconds(self, model: str, version: int) -> float | None:
        """How long the last load of this version took (successful or not); None if it never loaded here."""
        with self._lock:
            return self._seconds.get((model, version))
