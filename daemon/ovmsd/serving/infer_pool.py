"""A fixed pool of infer requests of one compiled model, shared by the request threads."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

R = TypeVar("R")


class PoolTimeout(Exception):
    """No infer request became free in time."""


class InferPool(Generic[R]):
    def __init__(self, requests: list[R]) -> None:
        self.size = len(requests)
        self._free: queue.SimpleQueue[R] = queue.SimpleQueue()
        for request in requests:
            self._free.put(request)

    @contextmanager
    def acquire(self, timeout: float) -> Iterator[R]:
        try:
            request = self._free.get(timeout=timeout)
        except queue.Empty as exc:
            raise PoolTimeout(f"no infer request became free within {timeout:g} s") from exc
        try:
            yield request
        finally:
            self._free.put(request)

    def try_take(self) -> R | None:
        """A free request at once, or None; hand it back with :meth:`give_back`."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return None

    def give_back(self, request: R) -> None:
        self._free.put(request)
