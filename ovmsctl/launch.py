"""Starting the daemon in the background and waiting until it serves, or learning why it did not.

The daemon runs detached: a new session, stdin from /dev/null, stdout and stderr appended to the state dir's
``ovmsd.log``, working directory ``/``. It reports through a pipe (``--ready-fd``, see ``ovmsd.runtime.readyfd``):
``READY`` once every model's first load finished, ``FAILED`` and a reason, or nothing at all when it crashed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ovmsd.runtime.readyfd import FAILED, READY
from ovmsd.runtime.statedir import StateDir

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Launch:
    pid: int
    outcome: str  # "ready", "failed", "crashed" or "timeout"
    reason: str = ""  # FAILED's reason, or the log tail of a crash
    exit_code: int | None = None


# A daemon in the background is nobody's service: it must not talk to the service manager of whoever started it.
NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def launch(argv: list[str], state_dir: StateDir, timeout: float) -> Launch:
    """Run ``python -m ovmsd ARGV --state-dir DIR`` (an existing dir) detached and wait for its start-up outcome."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "ovmsd", *argv, "--state-dir", str(state_dir.path), "--ready-fd", str(write_end)]
    try:
        with open(state_dir.logfile, "ab") as log:
            log_start = log.tell()  # a crash shows only this run's lines
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env=env,
                pass_fds=(write_end,),
                start_new_session=True,
            )
    finally:
        os.close(write_end)  # the daemon holds the only write end now: its exit closes the pipe
    try:
        message, complete = _read_until_eof(read_end, timeout)
    finally:
        os.close(read_end)
    return _outcome(process, message, complete, state_dir.logfile, log_start)


def _read_until_eof(fd: int, timeout: float) -> tuple[str, bool]:
    """Everything written before the pipe closed; (text, False) if it was still open at the deadline."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data.decode(errors="replace"), False
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return data.decode(errors="replace"), True
        data += chunk


def _outcome(process: subprocess.Popen[bytes], message: str, complete: bool, log: Path, log_start: int) -> Launch:
    first, _, rest = message.partition("\n")
    if first == READY:
        return Launch(process.pid, "ready")
    if not complete:
        return Launch(process.pid, "timeout")
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    if first == FAILED:
        return Launch(process.pid, "failed", rest.strip(), code)
    return Launch(process.pid, "crashed", log_tail(log, log_start), code)


def log_tail(path: Path, start: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of ``path`` after byte offset ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            tail = deque(f, maxlen=lines)
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror or exc})"
    return b"".join(tail).decode(errors="replace").rstrip()
