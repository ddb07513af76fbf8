"""Signalling a daemon that is not our child, and waiting for it to exit.

A pidfd (Linux 5.3+) names the process itself rather than a number that could be reused, and becomes readable the
moment the process exits; without pidfds we poll ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ovmsd.runtime.statedir import pid_alive

POLL_S = 0.05


@dataclass(frozen=True)
class StopResult:
    pid: int
    seconds: float
    killed: bool  # True: it did not stop within the timeout and got SIGKILL
    exited: bool  # False: still there even after SIGKILL (unkillable, e.g. stuck in the kernel)


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _signal(pid: int, fd: int | None, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if fd is not None:
            signal.pidfd_send_signal(fd, signum)
        else:
            os.kill(pid, signum)


def wait_exit(pid: int, fd: int | None, timeout: float) -> bool:
    """True once the process is gone; False if it is still there after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    if fd is not None:
        readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(readable) or not pid_alive(pid)
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def terminate(pid: int, timeout: float, kill_timeout: float = 10.0) -> StopResult:
    """SIGTERM, wait up to ``timeout``; then SIGKILL and wait up to ``kill_timeout``."""
    started = time.monotonic()
    with _pidfd(pid) as fd:
        _signal(pid, fd, signal.SIGTERM)
        if wait_exit(pid, fd, timeout):
            return StopResult(pid, time.monotonic() - started, killed=False, exited=True)
        _signal(pid, fd, signal.SIGKILL)
        exited = wait_exit(pid, fd, kill_timeout)
        return StopResult(pid, time.monotonic() - started, killed=True, exited=exited)
