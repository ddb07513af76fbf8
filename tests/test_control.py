"""The pieces under ``ovmsctl start/stop/status``: control socket, pidfile and lock, stop escalation, rendering."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovmsctl import output
from ovmsctl.control import EXIT_NOT_RUNNING, ControlError, NotRunning, call
from ovmsd.runtime.control import CommandError, ControlServer
from ovmsd.runtime.pidfile import AlreadyRunning, PidFile, StateDirLock
from ovmsd.runtime.statedir import StateDir, pid_alive
from tests.support.ctl import Ctl, wait_until


@pytest.fixture
def state_dir(tmp_path: Path) -> StateDir:
    directory = StateDir(tmp_path / "state")
    directory.create()
    return directory


@pytest.fixture
def server(state_dir: StateDir) -> Iterator[ControlServer]:
    def refuse() -> None:
        raise CommandError("not now")

    control = ControlServer(state_dir.socket, {"status": lambda: {"pid": 42}, "reload": refuse})
    control.start()
    yield control
    control.close()


def raw(path: Path, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        return json.loads(sock.makefile("rb").readline())


def test_control_socket_answers_and_is_private(server: ControlServer, state_dir: StateDir) -> None:
    assert state_dir.socket.stat().st_mode & 0o777 == 0o600
    assert state_dir.path.stat().st_mode & 0o777 == 0o700
    assert call(state_dir, "status") == {"pid": 42}
    with pytest.raises(ControlError, match="refused 'reload': not now") as refused:
        call(state_dir, "reload")
    assert refused.value.exit_code == 1
    assert "unknown command 'nope'" in raw(state_dir.socket, b'{"command": "nope"}\n')["error"]
    assert raw(state_dir.socket, b"garbage\n") == {
        "ok": False,
        "error": 'expected one JSON line like {"command": "status"}',
    }


def test_closing_removes_the_socket_and_callers_learn_it_is_not_running(state_dir: StateDir) -> None:
    control = ControlServer(state_dir.socket, {})
    control.start()
    control.close()
    assert not state_dir.socket.exists()
    with pytest.raises(NotRunning) as stopped:
        call(state_dir, "status")
    assert stopped.value.exit_code == EXIT_NOT_RUNNING and stopped.value.stale_pid is None


def test_a_socket_left_by_a_dead_daemon_is_replaced(state_dir: StateDir) -> None:
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(state_dir.socket))
    leftover.close()  # the file stays, nobody listens
    with pytest.raises(NotRunning):
        call(state_dir, "status")
    control = ControlServer(state_dir.socket, {"status": lambda: "fresh"})
    control.start()
    try:
        assert call(state_dir, "status") == "fresh"
    finally:
        control.close()


def test_pidfile_is_exclusive_and_removed_only_when_ours(state_dir: StateDir) -> None:
    pidfile = PidFile(state_dir.pidfile)
    state_dir.pidfile.write_text("999999\n")  # a leftover: replaced
    pidfile.write()
    assert state_dir.pidfile.read_text() == f"{os.getpid()}\n"
    state_dir.pidfile.write_text("12345\n")  # someone else's now
    pidfile.remove()
    assert state_dir.pidfile.exists(), "not ours: left alone"
    state_dir.pidfile.write_text(f"{os.getpid()}\n")
    pidfile.remove()
    assert not state_dir.pidfile.exists()


def test_state_dir_lock_is_held_until_released_and_dies_with_the_process(state_dir: StateDir) -> None:
    first = StateDirLock(state_dir.path)
    first.acquire(state_dir.pidfile)
    state_dir.pidfile.write_text("4242\n")
    with pytest.raises(AlreadyRunning, match=r"already running for state dir .* \(pid 4242\)"):
        StateDirLock(state_dir.path).acquire(state_dir.pidfile)
    first.release()
    second = StateDirLock(state_dir.path)
    second.acquire(state_dir.pidfile)
    second.release()

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from ovmsd.runtime.pidfile import StateDirLock\n"
            "StateDirLock(Path(sys.argv[1])).acquire(Path(sys.argv[1]) / 'x'); print('held', flush=True); "
            "time.sleep(60)",
            str(state_dir.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning):
            StateDirLock(state_dir.path).acquire(state_dir.pidfile)
    finally:
        holder.kill()
        holder.wait()
    StateDirLock(state_dir.path).acquire(state_dir.pidfile)  # kill -9 freed it


STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write(f"{os.getpid()}\\n")
time.sleep(120)
"""


def test_stop_escalates_to_sigkill_after_the_timeout(tmp_path: Path) -> None:
    """A daemon that ignores SIGTERM and does not answer its socket: found by its pidfile, then killed."""
    ctl = Ctl(tmp_path / "state")
    ctl.state_dir.create()
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN, str(ctl.state_dir.pidfile), "ovmsd"])
    try:
        wait_until(ctl.state_dir.pidfile.exists, 30, "pidfile written")
        status = ctl.run("status")
        assert status.returncode == 4 and "does not answer" in status.stderr
        done = ctl.run("stop", "--timeout", "0.5")
        assert done.returncode == 0, done.stderr
        assert f"ovmsd (pid {stubborn.pid}) did not stop within 0.5 s: killed it (SIGKILL)" in done.stdout
        assert stubborn.wait(timeout=10) == -9
        assert not ctl.state_dir.pidfile.exists(), "the dead daemon's pidfile is cleaned up"
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
    assert not pid_alive(stubborn.pid)


def test_status_rendering() -> None:
    version = {
        "version": 2,
        "state": "AVAILABLE",
        "error": "",
        "in_flight": 3,
        "load_seconds": 0.25,
        "compiled_shapes": [{"a": "(1,3)", "b": "(1,2)"}, {"a": "(8,3)", "b": "(8,2)"}],
    }
    failed = {**version, "version": 3, "state": "LOADING", "error": "broken file", "compiled_shapes": []}
    model = {"name": "m", "configured": True, "problem": "", "versions": [version, failed]}
    assert output.model_line(model) == "m: AVAILABLE (version 2): version 3: broken file"
    assert output.shapes_text(version["compiled_shapes"]) == "a(1,3) b(1,2), a(8,3) b(8,2)"
    rows = output.table(["A", "B"], [["x", "long cell"], ["longer", "y"]])
    assert rows == ["A       B", "x       long cell", "longer  y"]
    assert output.duration(3725) == "1h 2m 5s" and output.duration(59) == "59s"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_a_state_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o777)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(PermissionError, match="belongs to uid 65534"):
        StateDir(foreign).create()
    done = Ctl(foreign).run("start", "--model-name", "m", "--model-path", str(tmp_path))
    assert done.returncode == 1 and "cannot use state dir" in done.stderr


def test_an_open_state_dir_of_ours_is_closed_down(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir(mode=0o755)
    StateDir(tmp_path / "open").create()
    assert (tmp_path / "open").stat().st_mode & 0o777 == 0o700
