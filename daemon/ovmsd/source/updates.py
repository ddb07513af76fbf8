"""Live updates: keep what is served in step with the model directories and the config file while serving."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ovmsd.config.models import ServerConfig
from ovmsd.serving.manager import ModelManager
from ovmsd.source.watch import ChangeWatcher


def config_digest(path: Path) -> str | None:
    """The config file's content hash (editors that save by rename change the inode, not necessarily the mtime)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class LiveUpdates:
    """Connects the watcher to the daemon: directory changes -> ``manager.reconcile()``; config edits -> reload."""

    def __init__(
        self,
        manager: ModelManager,
        reload_if_changed: Callable[[], object],
        config_path: Path | None,
        *,
        poll_interval_s: float,
        force_polling: bool,
        settle_s: float,
    ) -> None:
        self._manager = manager
        self._reload_if_changed = reload_if_changed
        self._config_path = config_path
        self._settle_s = settle_s
        self._watcher = ChangeWatcher(
            self._models_changed, self._config_changed, poll_interval_s=poll_interval_s, force_polling=force_polling
        )

    def start(self, config: ServerConfig) -> None:
        self._watcher.start(self._model_dirs(config), self._config_path)

    def config_applied(self, config: ServerConfig) -> None:
        self._watcher.watch(self._model_dirs(config), self._config_path)

    def stop(self) -> None:
        self._watcher.stop()

    def _models_changed(self) -> float | None:
        outcomes = self._manager.reconcile()
        return self._settle_s if any(o.settling for o in outcomes) else None

    def _config_changed(self) -> float | None:
        if self._config_path is not None:
            self._reload_if_changed()
        return None

    @staticmethod
    def _model_dirs(config: ServerConfig) -> list[Path]:
        return [m.base_path for m in config.models]
