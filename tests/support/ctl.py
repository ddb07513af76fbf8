"""``ovmsctl`` as a user runs it: subprocesses against one state dir, with every daemon they start cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovmsd.runtime.statedir import StateDir, is_daemon_process, pid_alive, read_pid
from tests.support.daemon import REPO


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Ctl:
    """Runs ``python -m ovmsctl ... --state-dir DIR``. ``cleanup()`` SIGKILLs any daemon it saw and is still there."""

    def __init__(self, state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.state_dir = StateDir(state_dir)
        self.env = {**os.environ, **(env or {})}
        self.pids: set[int] = set()

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ovmsctl", *args, "--state-dir", str(self.state_dir.path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=self.env)
        self._remember()
        return done

    def start(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run("start", *args)
        assert done.returncode == 0, f"start failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def status(self) -> dict[str, Any]:
        done = self.run("status", "--json")
        assert done.returncode in (0, 3), done.stderr
        report = json.loads(done.stdout)
        if report.get("pid"):
            self.pids.add(report["pid"])
        return report

    def _remember(self) -> None:
        pid = read_pid(self.state_dir.pidfile)
        if pid is not None:
            self.pids.add(pid)

    def log(self) -> str:
        try:
            return self.state_dir.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self._remember()
        for pid in self.pids:
            if is_daemon_process(pid):
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda p=pid: not pid_alive(p), 10, f"pid {pid} gone")
