"""The state directory of one daemon: its pidfile, control socket and start-up log. Shared by the daemon and the CLI.

Standard library only: ``ovmsctl`` imports this module and must never pull in the serving code.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

PIDFILE = "ovmsd.pid"
SOCKET = "control.sock"
LOGFILE = "ovmsd.log"  # stdout and stderr of a daemon started in the background
DIR_NAME = "ovmsctl"


def default_state_dir() -> Path:
    """``/run/ovmsctl`` for root, ``$XDG_RUNTIME_DIR/ovmsctl`` otherwise (``/tmp/ovmsctl-UID`` without it).

    These are the directories systemd creates for ``RuntimeDirectory=ovmsctl`` in system and user units.
    """
    if os.geteuid() == 0:
        return Path("/run") / DIR_NAME
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / DIR_NAME
    return Path(tempfile.gettempdir()) / f"{DIR_NAME}-{os.getuid()}"


@dataclass(frozen=True)
class StateDir:
    path: Path

    @property
    def pidfile(self) -> Path:
        return self.path / PIDFILE

    @property
    def socket(self) -> Path:
        return self.path / SOCKET

    @property
    def logfile(self) -> Path:
        return self.path / LOGFILE

    def create(self) -> None:
        """Create the directory, mode 0700: only its owner reaches the control socket.

        An existing directory must belong to us (a directory someone else made in /tmp is refused, not used).
        """
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.path.stat()
        if st.st_uid != os.geteuid():
            raise PermissionError(errno.EPERM, f"it belongs to uid {st.st_uid}, not to us", str(self.path))
        if st.st_mode & 0o077:
            self.path.chmod(0o700)


def read_pid(path: Path) -> int | None:
    """The pid in a pidfile; None when the file is missing or holds no pid."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process. A zombie (exited, not yet reaped by its parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def is_daemon_process(pid: int) -> bool:
    """Whether ``pid`` runs ``ovmsd`` (guards against a pid reused by an unrelated process)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)
    return any(arg.endswith(b"ovmsd") for arg in argv) and pid_alive(pid)
