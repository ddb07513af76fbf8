"""The control socket: a Unix stream socket (mode 0600, in a 0700 state dir) that ``ovmsctl`` talks to.

Protocol: the client sends one JSON object on one line, ``{"command": "status"}``; the daemon answers one line,
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "sentence"}``, and closes the connection. Each
connection runs in its own thread, so a long ``reload`` does not hold up ``status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
READ_TIMEOUT_S = 10.0

Handler = Callable[[], Any]


class CommandError(Exception):
    """A command that cannot be carried out now; its message goes back to the client."""


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    commands: Mapping[str, Handler]


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.connection.settimeout(READ_TIMEOUT_S)
        try:
            line = self.rfile.readline(MAX_REQUEST_BYTES)
            answer = self._answer(line)
        except OSError:
            return  # the client went away or sent nothing
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer).encode() + b"\n")

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'expected one JSON line like {"command": "status"}'}
        handler = self.server.commands.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}; known: {', '.join(self.server.commands)}"}
        try:
            return {"ok": True, "result": handler()}
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control command %s failed", command)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}


class ControlServer:
    def __init__(self, path: Path, commands: Mapping[str, Handler]) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a daemon that died: the caller holds the state dir lock
        previous_umask = os.umask(0o177)
        try:
            self._server = _Server(str(path), _Connection)
        finally:
            os.umask(previous_umask)
        os.chmod(path, 0o600)
        self._inode = path.stat().st_ino
        self._server.commands = commands
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
