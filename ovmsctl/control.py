"""Talks to a running daemon through its control socket (see ``ovmsd.runtime.control`` for the protocol).

Every failure is a :class:`ControlError` carrying the exit status the command should end with; a daemon that is
not there is :class:`NotRunning` (exit status 3, as LSB ``status`` has it), one that is there but does not answer
exits 4 (LSB's "status unknown").
"""

from __future__ import annotations

import json
import socket
from typing import Any

import click

from ovmsd.runtime.statedir import StateDir, is_daemon_process, read_pid

# The exit statuses of every command (docs/operations.md lists them per command). Each means one thing only.
EXIT_FAILED = 1  # the command did not do what it was asked (start failed, config rejected, kill failed, invalid)
EXIT_USAGE = 2  # bad options or arguments (click's own), or validate's CONFIG cannot be read
EXIT_NOT_RUNNING = 3  # no daemon runs for the state dir
EXIT_NOT_ANSWERING = 4  # a daemon runs (or its socket exists) but does not answer: its state is unknown
EXIT_APPLIED_WITH_ERRORS = 5  # reload: the config was applied, but some model versions failed to load
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class ControlError(click.ClickException):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotRunning(ControlError):
    def __init__(self, state_dir: StateDir, stale_pid: int | None = None) -> None:
        message = f"ovmsd is not running (state dir {state_dir.path})"
        if stale_pid is not None:
            message += f"; its pidfile names pid {stale_pid}, which is gone (stale)"
        super().__init__(message, EXIT_NOT_RUNNING)
        self.stale_pid = stale_pid


def call(state_dir: StateDir, command: str, timeout: float | None = 10.0) -> Any:
    """Send one command, return the daemon's result. Raises NotRunning or ControlError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(state_dir.socket))
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            answer = _read_line(sock)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        raise _not_answering(state_dir) from None
    except TimeoutError:
        raise ControlError(f"ovmsd did not answer {command!r} within {timeout:g} s", EXIT_NOT_ANSWERING) from None
    except PermissionError:
        raise ControlError(
            f"no permission to use {state_dir.socket} (it belongs to another user)", EXIT_NOT_ANSWERING
        ) from None
    except OSError as exc:
        raise ControlError(f"cannot talk to ovmsd through {state_dir.socket}: {exc}", EXIT_NOT_ANSWERING) from None
    try:
        reply = json.loads(answer)
    except ValueError:
        raise ControlError(f"ovmsd answered {command!r} with something that is not JSON", EXIT_NOT_ANSWERING) from None
    if not reply.get("ok"):
        raise ControlError(f"ovmsd refused {command!r}: {reply.get('error', 'no reason given')}")
    return reply["result"]


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while size < MAX_ANSWER_BYTES:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def _not_answering(state_dir: StateDir) -> ControlError:
    """No control socket answers: not running (maybe a stale pidfile), or a daemon that cannot answer."""
    pid = read_pid(state_dir.pidfile)
    if pid is not None and is_daemon_process(pid):
        return ControlError(f"ovmsd (pid {pid}) runs but does not answer on {state_dir.socket}", EXIT_NOT_ANSWERING)
    return NotRunning(state_dir, stale_pid=pid)


def stale_pid(state_dir: StateDir) -> int | None:
    """The pid of a pidfile whose process is gone (after a crash or ``kill -9``), or None."""
    pid = read_pid(state_dir.pidfile)
    return pid if pid is not None and not is_daemon_process(pid) else None


def remove_stale_files(state_dir: StateDir) -> int | None:
    """Remove a stale pidfile and the dead daemon's control socket; returns the stale pid, if there was one."""
    pid = stale_pid(state_dir)
    if pid is not None:
        state_dir.pidfile.unlink(missing_ok=True)
        state_dir.socket.unlink(missing_ok=True)
    return pid
