"""Watch model repositories and the config file; turn bursts of file events into one reconcile.

watchdog (inotify here) reports changes as they happen; a burst is debounced until events stop for ``debounce_s``.
A periodic rescan every ``poll_interval_s`` is the safety net for file systems whose events go missing (NFS, bind
mounts, a base path created after start-up). One thread does all the triggering, so callbacks never run concurrently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

Callback = Callable[[], object]  # must return soon: the work it starts runs elsewhere


class _Events(FileSystemEventHandler):
    def __init__(
        self, notify: Callable[[str], None], config_file: Path | None, files_changed: Callable[[set[Path]], None]
    ) -> None:
        self._notify = notify
        self._config_file = config_file
        self._files_changed = files_changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = {Path(str(event.src_path)), Path(str(getattr(event, "dest_path", "") or event.src_path))}
        if self._config_file is not None and self._config_file in paths:
            self._notify("config")
        elif self._config_file is None or any(p.parent != self._config_file.parent for p in paths):
            self._files_changed(paths)
            self._notify("models")


class ChangeWatcher:
    def __init__(
        self,
        on_models_changed: Callback,
        on_config_changed: Callback,
        *,
        poll_interval_s: float = 1.0,
        debounce_s: float = 0.2,
        force_polling: bool = False,
        files_changed: Callable[[set[Path]], None] = lambda paths: None,
    ) -> None:
        self._files_changed = files_changed  # at once, on the observer's thread: must be cheap
        self._callbacks = {"models": on_models_changed, "config": on_config_changed}
        self._poll_interval = poll_interval_s
        self._debounce = debounce_s
        self._observer: BaseObserver = PollingObserver(timeout=poll_interval_s) if force_polling else Observer()
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._last_event = 0.0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._watched: tuple[tuple[Path, ...], Path | None] = ((), None)

    def start(self, model_dirs: Iterable[Path], config_file: Path | None) -> None:
        self.watch(model_dirs, config_file)
        self._observer.start()
        self._thread.start()
        how = "polling" if isinstance(self._observer, PollingObserver) else "file system events"
        log.info("watching for changes by %s, rescanning every %g s", how, self._poll_interval)

    def watch(self, model_dirs: Iterable[Path], config_file: Path | None) -> None:
        """(Re)point the watches: call after each config change."""
        wanted = (tuple(sorted(set(model_dirs))), config_file)
        if wanted == self._watched:
            return
        self._watched = wanted
        self._observer.unschedule_all()
        handler = _Events(self._notify, config_file, self._files_changed)
        if config_file is not None:  # the directory, so that editors' write-and-rename and delete-and-recreate show
            self._schedule(handler, config_file.parent, recursive=False)
        for directory in wanted[0]:
            self._schedule(handler, directory, recursive=True)

    def _schedule(self, handler: _Events, directory: Path, *, recursive: bool) -> None:
        try:
            self._observer.schedule(handler, str(directory), recursive=recursive)
        except OSError as exc:  # missing or unreadable: the periodic rescan still covers it
            log.debug("not watching %s (%s); the periodic rescan covers it", directory, exc)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._observer.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _notify(self, kind: str) -> None:
        with self._cond:
            self._pending.add(kind)
            self._last_event = time.monotonic()
            self._cond.notify_all()

    def _run(self) -> None:
        next_scan = time.monotonic() + self._poll_interval
        while True:
            with self._cond:
                due = self._wait_until_due(next_scan)
                if due is None:
                    return
                kinds = set(self._pending) if due == "events" else {"config", "models"}
                self._pending.clear()
            if due == "periodic":
                next_scan = time.monotonic() + self._poll_interval
            self._fire(kinds)

    def _wait_until_due(self, next_scan: float) -> str | None:
        """Sleep until a debounced burst or the periodic scan is due; None once stopped."""
        while not self._stopped:
            now = time.monotonic()
            deadlines = [next_scan]
            if self._pending:
                deadlines.append(self._last_event + self._debounce)
            wake = min(deadlines)
            if now >= wake:
                if self._pending and now >= self._last_event + self._debounce:
                    return "events"
                return "periodic"
            self._cond.wait(timeout=wake - now)
        return None

    def _fire(self, kinds: set[str]) -> None:
        for kind in ("config", "models"):  # a config change first: it may add or remove model directories
            if kind not in kinds:
                continue
            try:
                self._callbacks[kind]()
            except Exception:
                log.exception("handling a %s change failed", kind)
