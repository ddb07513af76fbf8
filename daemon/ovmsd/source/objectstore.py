"""Object-store base paths (``s3://bucket/prefix/model``) served through local mirrors.

A :class:`Mirror` keeps a copy of one remote repository in a local directory; the manager serves that directory
and the watcher watches it like any local base path, so nothing else in the server knows about object storage.

Cache layout, under the object-store cache root (``--object-store-cache-dir``)::

    <root>/<mirror name>/<N>/...                      one folder per base path (StoreUrl.mirror_name), versions in it
    <root>/<mirror name>/<N>/.ovmsd-objects.json      what version N was downloaded from (so a restart reuses it)
    <root>/.partial/<mirror name>.<N>.<random>/       a download in progress, renamed to <N> when complete

The stability rule: the mirror lists the store every poll interval and acts on a version (downloads it, downloads
it again, removes it) only once its objects (paths, sizes, ETags) are the same in two consecutive listings and
differ from the cached copy. A version uploaded object by object changes between listings and waits; a version
is only ever downloaded whole, then renamed into place in one step (a changed one is swapped in by an atomic
exchange of the two directories), so the manager never sees a half-written version directory. Each object is
fetched with ``If-Match`` on its listed ETag: an object replaced meanwhile abandons the download until the next
stable listing.

A store that cannot be reached, or refuses access, changes nothing in the cache (what is loaded keeps serving);
the error is kept for ``ovmsctl status`` and counted, logged when it changes and on recovery, and the listing is
retried with exponential backoff (capped).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ovmsd.config.models import ServerConfig, StoreUrl
from ovmsd.source.repository import MIRROR_MANIFEST
from ovmsd.source.s3 import (
    Listing,
    ObjectChanged,
    S3Repository,
    Signature,
    StoredObject,
    StoreError,
    endpoint_override,
    s3_client,
)

log = logging.getLogger(__name__)

MANIFEST = MIRROR_MANIFEST  # written last into a download: a version with it is whole
PARTIAL = ".partial"
FIRST_GAP_S = 1.0  # with live updates off, the two start-up listings are this far apart
BACKOFF_CAP_S = 30.0
UNKNOWN: Signature = ()  # a cached version without a readable manifest: replaced (or removed) once stable

RepositoryFactory = Callable[[StoreUrl], Any]  # -> an object with list() and download(), like S3Repository


def s3_repository(url: StoreUrl) -> S3Repository:
    return S3Repository(url, s3_client())


class Mirror:
    """Keeps ``local_dir`` a copy of the repository at ``url``, on its own daemon thread.

    ``interval_s`` is the poll interval (0: look once at start-up: two listings ``FIRST_GAP_S`` apart, then stop);
    ``on_change`` is called after versions were installed or removed (must return at once), ``on_error`` after
    each failed attempt.
    """

    def __init__(
        self,
        url: StoreUrl,
        local_dir: Path,
        partial_dir: Path,
        *,
        interval_s: float,
        repository: RepositoryFactory = s3_repository,
        on_change: Callable[[], object] = lambda: None,
        on_error: Callable[[], object] = lambda: None,
        backoff_cap_s: float = BACKOFF_CAP_S,
    ) -> None:
        self.url = url
        self.local_dir = local_dir
        self._partial = partial_dir
        self._interval = interval_s
        self._repository_factory = repository
        self._on_change = on_change
        self._on_error = on_error
        self._backoff_cap = backoff_cap_s
        self._endpoint = endpoint_override()
        self._stop = threading.Event()
        self.first_sync = threading.Event()  # set after the first complete sync, or the first failure
        self._lock = threading.Lock()  # guards what status() reads
        self._error: str | None = None
        self._error_since: float | None = None
        self._failures = 0  # consecutive failed attempts
        self._errors_total = 0
        self._last_sync_at: float | None = None
        self._changing: tuple[int, ...] = ()
        self._announced: set[int] = set()  # versions logged as changing
        self._skipped: tuple[str, ...] = ()
        local_dir.mkdir(parents=True, exist_ok=True)  # an empty repository until the first sync
        partial_dir.mkdir(parents=True, exist_ok=True)
        self._clear_partial()
        self._cached: dict[int, Signature] = self._read_cache()
        self._thread = threading.Thread(target=self._run, name=f"mirror {url}", daemon=True)

    # -- control ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread: a download in progress is abandoned and its temporary directory removed."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.first_sync.set()

    def wait_first_sync(self, timeout: float | None = None) -> bool:
        return self.first_sync.wait(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": str(self.url),
                "local_dir": str(self.local_dir),
                "endpoint": self._endpoint,
                "error": self._error,
                "error_since": self._error_since,
                "errors": self._errors_total,
                "last_sync_at": self._last_sync_at,
                "versions": sorted(self._cached),
                "changing": list(self._changing),
            }

    # -- the thread ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        repository: Any = None
        previous: Listing | None = None  # the last successful listing
        while not self._stop.is_set():
            try:
                repository = repository or self._connect()
                listing = repository.list()
                if previous is not None:
                    self._sync(repository, previous, listing)
                previous = listing
            except StoreError as exc:
                wait = self._failed(str(exc))
                self.first_sync.set()  # start-up goes on with the cache as it is
            else:
                self._recovered()
                if self._last_sync_at is None:  # one listing so far: the second comes soon, for start-up's sake
                    wait = min(self._interval, FIRST_GAP_S) if self._interval > 0 else FIRST_GAP_S
                else:
                    self.first_sync.set()
                    if self._interval <= 0:
                        return  # looked once
                    wait = self._interval
            self._stop.wait(wait)

    def _connect(self) -> Any:
        try:
            return self._repository_factory(self.url)
        except StoreError:
            raise
        except Exception as exc:  # e.g. botocore refusing a malformed endpoint URL
            raise StoreError(f"cannot connect to {self.url}: {exc}") from exc

    def _sync(self, repository: Any, previous: Listing, listing: Listing) -> None:
        """Act on the versions whose objects are the same in both listings and differ from the cache."""
        changing: list[int] = []
        changed = False
        for number in sorted({*previous.versions, *listing.versions, *self._cached}, reverse=True):  # newest first
            if self._stop.is_set():
                return
            wanted = listing.versions.get(number)
            if wanted != previous.versions.get(number):
                if wanted is not None:
                    changing.append(number)
                continue
            if wanted == self._cached.get(number):
                continue
            if wanted is None:
                self._remove(number)
                changed = True
            elif self._download(repository, number, wanted):
                changed = True
            elif not self._stop.is_set():
                changing.append(number)  # an object changed during the download
        self._note_changing(sorted(changing))
        if listing.skipped != self._skipped:
            new = sorted(set(listing.skipped) - set(self._skipped))
            if new:
                log.warning("object store %s: ignoring objects outside numbered version directories: %s", self.url, new)
            self._skipped = listing.skipped
        with self._lock:
            self._last_sync_at = time.time()
        if changed:
            self._on_change()

    def _note_changing(self, changing: list[int]) -> None:
        for number in changing:
            if number not in self._announced:
                log.info(
                    "object store %s version %d: objects still changing in the store; downloading it once two "
                    "listings agree",
                    self.url,
                    number,
                )
        self._announced = set(changing)
        with self._lock:
            self._changing = tuple(changing)

    # -- versions --------------------------------------------------------------------------------------------------

    def _download(self, repository: Any, number: int, objects: Signature) -> bool:
        """Download version ``number`` whole and rename it into place; False if abandoned (stop, object changed)."""
        work = self._partial / f"{self.local_dir.name}.{number}.{secrets.token_hex(4)}"
        work.mkdir()
        try:
            started = time.monotonic()
            for obj in objects:
                dest = work / obj.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not repository.download(number, obj, dest, self._stop.is_set):
                    log.info("object store %s version %d: download abandoned (stopping)", self.url, number)
                    return False
            (work / MANIFEST).write_text(json.dumps(self._manifest(objects)))
            replaced = number in self._cached
            self._install(work, self.local_dir / str(number))
        except ObjectChanged as exc:
            log.info("object store %s version %d: %s changed during the download; trying again", self.url, number, exc)
            return False
        except OSError as exc:
            raise StoreError(f"cannot write the mirror of {self.url} version {number}: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)  # after a swap, it holds the previous copy
        self._cached[number] = objects
        size = sum(o.size for o in objects)
        log.info(
            "object store %s version %d: %s (%d objects, %d bytes in %.1f s)",
            self.url,
            number,
            "downloaded again and swapped in" if replaced else "downloaded",
            len(objects),
            size,
            time.monotonic() - started,
        )
        return True

    def _install(self, work: Path, target: Path) -> None:
        """Put ``work`` at ``target`` in one step; an existing ``target`` ends up at ``work`` (removed by the
        caller), so the version directory never disappears, not even for a moment, while it is replaced."""
        if not target.exists():
            os.rename(work, target)
        elif not _exchange(work, target):  # no atomic exchange here: the shortest gap two renames allow
            aside = work.with_name(work.name + ".old")
            os.rename(target, aside)
            os.rename(work, target)
            os.rename(aside, work)

    def _remove(self, number: int) -> None:
        target = self.local_dir / str(number)
        aside = self._partial / f"{self.local_dir.name}.{number}.removed.{secrets.token_hex(4)}"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot remove version {number} from the mirror {self.local_dir}: {exc}") from exc
        shutil.rmtree(aside, ignore_errors=True)
        self._cached.pop(number, None)
        log.info("object store %s version %d: removed from the store; removed from the mirror", self.url, number)

    def _manifest(self, objects: Signature) -> dict[str, Any]:
        return {
            "url": str(self.url),
            "endpoint": self._endpoint,
            "objects": [[o.path, o.size, o.etag] for o in objects],
        }

    def _read_cache(self) -> dict[int, Signature]:
        """What a previous run left in ``local_dir``: versions whose manifest names this store are reused."""
        cached: dict[int, Signature] = {}
        for entry in self.local_dir.iterdir():
            if not (entry.name.isdigit() and not entry.name.startswith("0") and entry.is_dir()):
                continue
            try:
                manifest = json.loads((entry / MANIFEST).read_text())
                same_store = manifest["url"] == str(self.url) and manifest["endpoint"] == self._endpoint
                objects = tuple(StoredObject(p, int(s), str(e)) for p, s, e in manifest["objects"])
                cached[int(entry.name)] = objects if same_store else UNKNOWN
            except (OSError, ValueError, KeyError, TypeError):
                cached[int(entry.name)] = UNKNOWN
        if cached:
            log.info(
                "object store %s: reusing the mirror in %s (versions %s)", self.url, self.local_dir, sorted(cached)
            )
        return cached

    def _clear_partial(self) -> None:
        """Downloads a previous run left unfinished."""
        for entry in self._partial.glob(f"{self.local_dir.name}.*"):
            shutil.rmtree(entry, ignore_errors=True)

    # -- errors ----------------------------------------------------------------------------------------------------

    def _failed(self, error: str) -> float:
        """Record a failed attempt; returns how long to wait before the next (exponential backoff, capped)."""
        with self._lock:
            self._failures += 1
            self._errors_total += 1
            changed = error != self._error
            self._error = error
            if changed:
                self._error_since = time.time()
            failures = self._failures
        base = self._interval if self._interval > 0 else FIRST_GAP_S
        wait = min(self._backoff_cap, base * 2 ** (failures - 1))
        if changed:
            log.error("object store %s: %s; the cached copy keeps serving, retrying with backoff", self.url, error)
        else:
            log.debug("object store %s: still failing (%d attempts); next try in %g s", self.url, failures, wait)
        self._on_error()
        return wait

    def _recovered(self) -> None:
        with self._lock:
            error, failures = self._error, self._failures
            self._error = self._error_since = None
            self._failures = 0
        if error is not None:
            log.info("object store %s: reachable again after %d failed attempts", self.url, failures)


class MirrorSet:
    """The daemon's mirrors: one per object-store base path of the config, in one cache root.

    ``cache_root`` None: a temporary directory, made when the first remote model is configured and removed by
    :meth:`close`. ``on_error`` gets each model name whose store failed (for the errors metric).
    """

    def __init__(
        self,
        cache_root: Path | None,
        *,
        interval_s: float,
        on_change: Callable[[], object] = lambda: None,
        on_error: Callable[[str], object] = lambda name: None,
        repository: RepositoryFactory = s3_repository,
    ) -> None:
        self._root = cache_root
        self._temporary = False
        self._interval = interval_s
        self._on_change = on_change
        self._on_error = on_error
        self._repository = repository
        self._lock = threading.RLock()  # configure() makes the cache root while holding it
        self._mirrors: dict[Path, Mirror] = {}
        self._names: dict[Path, tuple[str, ...]] = {}

    def localize(self, config: ServerConfig) -> ServerConfig:
        """``config`` with each object-store model's base path in the cache root (the mirror's local directory)."""
        if not any(m.source_url is not None for m in config.models):
            return config
        root = self._cache_root()
        return replace(config, models=tuple(m.localized(root) for m in config.models))

    def configure(self, config: ServerConfig, timeout: float | None = None) -> list[Mirror]:
        """Start a mirror for each new object-store base path of (localized) ``config`` and wait for their first
        syncs; stop the mirrors no model uses any more and return them (:meth:`discard` removes their caches once
        the manager retired their versions)."""
        wanted: dict[Path, list[str]] = {}
        urls: dict[Path, StoreUrl] = {}
        for model in config.models:
            url = model.store_url
            if url is not None:
                wanted.setdefault(model.base_path, []).append(model.name)
                urls[model.base_path] = url
        started = []
        with self._lock:
            self._names = {path: tuple(names) for path, names in wanted.items()}
            stale = [m for path, m in self._mirrors.items() if path not in wanted]
            for mirror in stale:
                del self._mirrors[mirror.local_dir]
            for path in wanted:
                if path not in self._mirrors:
                    mirror = self._mirrors[path] = self._mirror(urls[path], path)
                    started.append(mirror)
        for mirror in started:
            mirror.start()
        for mirror in stale:
            mirror.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        for mirror in started:
            mirror.wait_first_sync(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return stale

    def discard(self, mirrors: Iterable[Mirror]) -> None:
        """Remove the caches of stopped mirrors (their models were removed from the config)."""
        for mirror in mirrors:
            shutil.rmtree(mirror.local_dir, ignore_errors=True)

    def status_by_model(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            mirrors = [(self._names.get(path, ()), mirror) for path, mirror in self._mirrors.items()]
        return {name: mirror.status() for names, mirror in mirrors for name in names}

    def stop(self) -> None:
        with self._lock:
            mirrors = list(self._mirrors.values())
        for mirror in mirrors:
            mirror._stop.set()  # all at once: none waits for another's download to end
        for mirror in mirrors:
            mirror.stop()

    def close(self) -> None:
        self.stop()
        if self._temporary and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _mirror(self, url: StoreUrl, local_dir: Path) -> Mirror:
        return Mirror(
            url,
            local_dir,
            self._cache_root() / PARTIAL,
            interval_s=self._interval,
            repository=self._repository,
            on_change=self._on_change,
            on_error=lambda: self._errored(local_dir),
        )

    def _errored(self, local_dir: Path) -> None:
        with self._lock:
            names = self._names.get(local_dir, ())
        for name in names:
            self._on_error(name)

    def _cache_root(self) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="ovmsd-object-store-"))
                self._temporary = True
                log.info("object-store cache in %s (temporary: give --object-store-cache-dir to keep it)", self._root)
            self._root.mkdir(parents=True, exist_ok=True)
            return self._root


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))
