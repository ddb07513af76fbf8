"""A bounded pool of daemon threads for model loads.

Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter exit, so a stop would wait for
a compile that may take minutes. These threads are daemon threads, and a stop abandons what they run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, size: int, name: str) -> None:
        self.size = max(1, size)
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy = 0
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(self.size)]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    @property
    def busy(self) -> int:
        """Tasks running now."""
        return self._busy

    def close(self) -> None:
        """Let idle threads exit; running tasks go on (their threads are daemon threads)."""
        for _ in self._threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            with self._lock:
                self._busy += 1
            try:
                task()
            except Exception:  # a task's own errors are its business; the pool must survive them
                log.exception("%s: a task failed", self._name)
            finally:
                with self._lock:
                    self._busy -= 1
