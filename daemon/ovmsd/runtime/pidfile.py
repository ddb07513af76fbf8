"""One daemon per state directory: a lock held for the process's lifetime, and the pidfile written once it serves.

The lock is an ``flock`` on the state directory itself: the kernel drops it when the process dies, even by
``kill -9``, so a crashed daemon never blocks the next start and there is no lock file to go stale. The pidfile is
for people and scripts: created exclusively after start-up, removed at exit only if it still holds our pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from ovmsd.runtime.statedir import read_pid

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    """Another daemon holds the state directory."""


class StateDirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self, pidfile: Path) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_pid(pidfile)
            owner = f" (pid {pid})" if pid else " (still starting)"
            raise AlreadyRunning(f"ovmsd is already running for state dir {self.directory}{owner}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self) -> None:
        """Create the pidfile exclusively; a leftover one (its daemon died: we hold the lock) is replaced."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                log.warning("removing stale pidfile %s (pid %s)", self.path, read_pid(self.path))
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return
        raise FileExistsError(f"cannot create pidfile {self.path}: it keeps reappearing")

    def remove(self) -> None:
        """Remove the pidfile only if it is ours."""
        if read_pid(self.path) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
