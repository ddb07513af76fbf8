"""A bounded LRU of compiled shape variants with single-flight creation.

Requests for a cached key never wait for anything. The first request for a new key builds it in its own thread while
requests for other keys go on; concurrent requests for the same new key wait on that one build. Eviction only drops the
cache's reference: a request still using an evicted variant keeps it alive until it finishes.

The cache is bounded by count (``capacity``) and, with ``max_bytes`` and ``size_of``, by the bytes its values hold:
least recently used values go first, pinned ones never, and the value just built stays even when it alone is over
the budget (the request that asked for it is using it); the next build then evicts it like any other.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BuildTimeout(Exception):
    """A waiter gave up on a build that is still running."""


@dataclass
class CacheStats:
    compiles: int = 0
    hits: int = 0
    evictions: int = 0
    failures: int = 0
    waiting: int = 0  # requests now waiting for another request's compile of the same shape
    last_compile_ms: float = 0.0
    bytes: int = 0  # what the cached values hold (by ``size_of``; 0 without it)


class ShapeCache(Generic[K, V]):
    def __init__(
        self,
        capacity: int,
        pinned: set[K] | None = None,
        *,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes if size_of is not None else None
        self._size_of = size_of
        self._pinned = set(pinned or ())
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._building: dict[K, Future[V]] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()
        self.last_built: K | None = None

    def put(self, key: K, value: V, *, pin: bool = False) -> None:
        with self._lock:
            self._store(key, value)
            if pin:
                self._pinned.add(key)
            self._evict_over_capacity(key)

    def get(self, key: K) -> V | None:
        """The cached value for ``key`` (a hit, most recently used now), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
            return value

    def get_or_build(self, key: K, build: Callable[[K], V], timeout: float) -> V:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return self._entries[key]
            future = self._building.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._building[key] = future
        assert future is not None
        if owner:
            return self._build(key, build, future)
        with self._lock:
            self.stats.waiting += 1
        try:
            return future.result(timeout=timeout)
        except FutureTimeout as exc:
            raise BuildTimeout(f"waited {timeout:g} s for a compile that is still running") from exc
        finally:
            with self._lock:
                self.stats.waiting -= 1

    def _build(self, key: K, build: Callable[[K], V], future: Future[V]) -> V:
        started = time.perf_counter()
        try:
            value = build(key)
        except BaseException as exc:
            with self._lock:
                self.stats.failures += 1
                del self._building[key]
            future.set_exception(exc)
            raise
        with self._lock:
            self.stats.compiles += 1
            self.stats.last_compile_ms = (time.perf_counter() - started) * 1000
            self._store(key, value)
            self.last_built = key
            del self._building[key]
            self._evict_over_capacity(key)
        future.set_result(value)
        return value

    def _store(self, key: K, value: V) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = value
        self._entries.move_to_end(key)
        self.stats.bytes += self._size(value)

    def _size(self, value: V) -> int:
        return self._size_of(value) if self._size_of is not None else 0

    def _drop(self, key: K) -> None:
        self.stats.bytes -= self._size(self._entries.pop(key))

    def _over(self) -> bool:
        return len(self._entries) > self.capacity or (self.max_bytes is not None and self.stats.bytes > self.max_bytes)

    def _evict_over_capacity(self, newest: K) -> None:
        while self._over():
            victim = next((k for k in self._entries if k not in self._pinned and k != newest), None)
            if victim is None:
                return
            self._drop(victim)
            self.stats.evictions += 1

    def peek(self, key: K) -> V | None:
        """The cached value for ``key`` without counting a hit or touching the LRU order."""
        with self._lock:
            return self._entries.get(key)

    def cached_keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> list[V]:
        with self._lock:
            values = list(self._entries.values())
            self._entries.clear()
            self.stats.bytes = 0
            return values
