"""Logging setup: OVMS level names, stderr or a file, no timestamps when journald adds its own.

Under systemd, stderr is the journal: lines carry a ``<N>`` syslog priority prefix (so ``journalctl -p err`` works)
and no timestamp. ``JOURNAL_STREAM`` alone is not enough to tell: a daemon started from a shell inside a service
inherits it with stderr redirected to a file, so its ``device:inode`` must match stderr's.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

TRACE = 5
LEVELS = {
    "TRACE": TRACE,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
TIMESTAMPED = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
JOURNAL = "[%(levelname)s] %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority, which journald strips and stores."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{super().format(record)}"


def syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stderr_is_journal() -> bool:
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def configure(level: str, log_file: Path | None = None) -> None:
    logging.addLevelName(TRACE, "TRACE")
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(TIMESTAMPED))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter(JOURNAL) if stderr_is_journal() else logging.Formatter(TIMESTAMPED))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level.upper()])


class Throttle:
    """Logs each kind of message at most once per ``interval_s``, saying how many of that kind were left out.

    For what requests can cause again and again (a client sending garbage, a bug hit by every request): one line per
    kind and interval instead of one per request, so a flood of bad requests cannot fill the disk or bury the rest
    of the log. A kind is a small hashable key (the method and the exception type, say); at most ``max_kinds`` are
    remembered (the oldest is forgotten first), so unusual keys cannot grow memory either.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        *,
        max_kinds: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._max_kinds = max_kinds
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: OrderedDict[Hashable, list[float | int]] = OrderedDict()  # kind -> [last logged, left out]

    def log(self, level: int, kind: Hashable, message: str, *args: object, debug_traceback: bool = False) -> bool:
        """Log ``message % args`` unless this kind was logged less than ``interval_s`` ago; True when logged.

        With ``debug_traceback``, the traceback of the exception being handled follows at DEBUG level (never at the
        default levels: one line per kind is all an operator sees).
        """
        now = self._clock()
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is not None and now - entry[0] < self._interval:
                entry[1] += 1
                return False
            left_out = int(entry[1]) if entry is not None else 0
            self._kinds[kind] = [now, 0]
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self._max_kinds:
                self._kinds.popitem(last=False)
        if left_out:
            message += f" ({left_out} more like it since the last such line)"
        self._logger.log(level, message, *args)
        if debug_traceback and self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("the traceback of the error above", exc_info=True)
        return True
