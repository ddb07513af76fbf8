"""Version-directory fingerprints whose cost does not grow with the files once a directory has settled.

A full fingerprint (every file's relative path, size and mtime) is what says "these files changed: load again". The
rescan asks for it every second for every served version, which for a version of 5,000 files cost a fifth of a core
while idle. The cache answers from memory while the directory's own signature (the mtimes of the directory and of
its subdirectories: any file added, removed or renamed changes them) is the same, and no watcher event touched the
directory since. A file rewritten in place changes neither: the watcher's event says so, and as a safety net for
file systems whose events go missing a full fingerprint is taken anyway once ``max_age_s`` passed.

The cache answers only once ``enable`` was called (the daemon does when its watcher runs): without events it could
not see a rewrite in place, so a manager without a watcher fingerprints in full every time. ``clear`` forgets
everything (a config reload looks at every file again).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ovmsd.source.repository import Fingerprint, fingerprint

MAX_AGE_S = 60.0  # a missed in-place rewrite is noticed within this long

DirectorySignature = tuple[tuple[str, int, int], ...]


@dataclass
class _Entry:
    signature: DirectorySignature
    fingerprint: Fingerprint
    taken: float
    dirty: bool = False


class FingerprintCache:
    def __init__(self, max_age_s: float = MAX_AGE_S, *, enabled: bool = False) -> None:
        self._max_age = max_age_s
        self._enabled = enabled
        self._entries: dict[Path, _Entry] = {}
        self._lock = threading.Lock()
        self.full_scans = 0  # how many full fingerprints were taken (for tests and benchmarks)

    def enable(self) -> None:
        """Watcher events now reach ``changed``: answer from memory while nothing changed."""
        self._enabled = True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def fingerprint(self, version_dir: Path) -> Fingerprint:
        if not self._enabled:
            self.full_scans += 1
            return fingerprint(version_dir)
        signature = directory_signature(version_dir)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(version_dir)
            if (
                entry is not None
                and signature
                and entry.signature == signature
                and not entry.dirty
                and now - entry.taken < self._max_age
            ):
                return entry.fingerprint
        current = fingerprint(version_dir)
        with self._lock:
            self.full_scans += 1
            if signature:
                self._entries[version_dir] = _Entry(signature, current, now)
            else:
                self._entries.pop(version_dir, None)
        return current

    def changed(self, paths: Iterable[Path]) -> None:
        """Files changed (the watcher's events): the version directories that hold them are scanned again."""
        with self._lock:
            if not self._entries:
                return
            for path in paths:
                for directory in (path, *path.parents):
                    entry = self._entries.get(directory)
                    if entry is not None:
                        entry.dirty = True
                        break


def directory_signature(version_dir: Path) -> DirectorySignature:
    """The mtimes of a directory and of every directory below it; () when it cannot be read.

    A directory whose link count is 2 has no subdirectories (POSIX file systems count each child's ``..``), so it
    is never listed; where link counts are not kept (1, or btrfs) the subdirectories are found by listing.
    """
    found: list[tuple[str, int, int]] = []
    pending = [(version_dir, "")]
    try:
        while pending:
            directory, relative = pending.pop()
            st = os.stat(directory)
            found.append((relative, st.st_mtime_ns, st.st_ctime_ns))
            if st.st_nlink == 2:
                continue
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((Path(entry.path), f"{relative}/{entry.name}"))
    except OSError:
        return ()
    return tuple(sorted(found))
