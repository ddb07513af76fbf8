"""Start-up outcome for ``ovmsctl start``: a pipe the daemon writes once, then closes.

``ovmsctl start`` passes the write end as ``--ready-fd N``. The daemon writes ``READY`` when it serves, or
``FAILED`` and the reason on the following lines; the end of the pipe without either means it died on the way.
"""

from __future__ import annotations

import contextlib
import os

READY = "READY"
FAILED = "FAILED"
MAX_REASON_CHARS = 8 * 1024  # well within a pipe's buffer: one write, never blocks


class ReadyPipe:
    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        if fd is not None:
            os.set_inheritable(fd, False)

    def ready(self) -> None:
        self._send(READY + "\n")

    def failed(self, reason: str) -> None:
        self._send(f"{FAILED}\n{reason[:MAX_REASON_CHARS]}\n")

    def _send(self, text: str) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # the CLI gave up waiting: nobody reads any more
            os.write(fd, text.encode())
        with contextlib.suppress(OSError):
            os.close(fd)
