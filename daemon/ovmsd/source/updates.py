"""Live updates: keep what is served in step with the model directories and the config file while serving."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ovmsd.config.models import ServerConfig
from ovmsd.source.watch import ChangeWatcher


def config_digest(path: Path, max_bytes: int | None = None) -> str | None:
    """The config file's content hash (editors that save by rename change the inode, not necessarily the mtime).

    At most ``max_bytes`` + 1 bytes are read (in chunks): a file over the config size limit is refused by the
    loader anyway, and a huge one must not be read whole on every file event.
    """
    digest = hashlib.sha256()
    left = max_bytes + 1 if max_bytes is not None else None
    try:
        with path.open("rb") as file:
            while left is None or left > 0:
                chunk = file.read(1 << 20 if left is None else min(1 << 20, left))
                if not chunk:
                    break
                digest.update(chunk)
                if left is not None:
                    left -= len(chunk)
    except OSError:
        return None
    return digest.hexdigest()


class LiveUpdates:
    """Connects the watcher to the daemon: directory changes -> ``reconcile``; config edits -> ``reload_if_changed``.

    Both callbacks must return at once (the manager's passes and the daemon's reloads run on their own threads), so
    one model's long load never delays noticing another model's new version.
    """

    def __init__(
        self,
        reconcile: Callable[[], object],
        reload_if_changed: Callable[[], object],
        config_path: Path | None,
        *,
        poll_interval_s: float,
        force_polling: bool,
        files_changed: Callable[[set[Path]], None] = lambda paths: None,
    ) -> None:
        self._reconcile = reconcile
        self._reload_if_changed = reload_if_changed
        self._config_path = config_path
        self._watcher = ChangeWatcher(
            self._models_changed,
            self._config_changed,
            poll_interval_s=poll_interval_s,
            force_polling=force_polling,
            files_changed=files_changed,
        )

    def start(self, config: ServerConfig) -> None:
        self._watcher.start(self._model_dirs(config), self._config_path)

    def config_applied(self, config: ServerConfig) -> None:
        self._watcher.watch(self._model_dirs(config), self._config_path)

    def stop(self) -> None:
        self._watcher.stop()

    def _models_changed(self) -> float | None:
        self._reconcile()  # each model retries its own settling versions
        return None

    def _config_changed(self) -> float | None:
        if self._config_path is not None:
            self._reload_if_changed()
        return None

    @staticmethod
    def _model_dirs(config: ServerConfig) -> list[Path]:
        return [m.base_path for m in config.models]
