"""Logging setup: OVMS level names, stderr or a file, no timestamps when journald adds its own."""

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


def configure(level: str, log_file: Path | None = None) -> None:
    logging.addLevelName(TRACE, "TRACE")
    if log_file is not None:
        handler: logging.Handler = logging.FileHandler(log_file)
        fmt = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        journald = bool(os.environ.get("JOURNAL_STREAM"))
        fmt = (
            "[%(levelname)s] %(name)s: %(message)s" if journald else "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
        )
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level.upper()])
