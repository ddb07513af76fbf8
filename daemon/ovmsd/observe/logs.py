"""Logging setup: OVMS level names, stderr or a file, no timestamps when journald adds its own.

Under systemd, stderr is the journal: lines carry a ``<N>`` syslog priority prefix (so ``journalctl -p err`` works)
and no timestamp. ``JOURNAL_STREAM`` alone is not enough to tell: a daemon started from a shell inside a service
inherits it with stderr redirected to a file, so its ``device:inode`` must match stderr's.
"""

from __future__ import annotations

import logging
import os
import sys
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
