"""Per-model concurrency: one model's slow requests cannot take every request thread.

Two parts work together:

* :class:`ModelSlots`: each model lets at most ``max_concurrent_requests`` requests inside it at once (decoding images,
  waiting for a compile or an infer request, inferring, writing the answer). The others wait for a place, in order
  of arrival, for at most the reshape timeout (then OVERLOADED: UNAVAILABLE / 503, "Model is busy"). A request on
  an event loop (REST binary inference) waits in the same queue without a thread (:meth:`ModelSlots.entered`).
* :class:`TurnPool`: the executor of the gRPC and REST request threads. Like ``ThreadPoolExecutor(workers)`` it runs
  at most ``workers`` requests at once, but a request waiting for a model's place (longer than ``PARK_AFTER_S``) or
  for a compile is *parked*: it gives its turn to the next request, on another thread, and runs on when its wait is
  over. So requests for other models are answered at once while one model's requests queue, and requests for one
  busy model are never refused for being many, as long as fewer than ``max_parked`` wait in the whole pool; past
  that, a request that would wait is refused at once with TOO_MANY_REQUESTS (RESOURCE_EXHAUSTED / 429), which
  bounds the threads a flood can create. A stream waiting for its next message parks the same way
  (:func:`lending_turns`), so streams left open hold no turn.

Outside a :class:`TurnPool` thread (in-process callers, tests) a wait for a place simply blocks.

The default limit, half the gRPC workers (at least 1), leaves the other half to the other models whatever one model
does; with the default workers (2 per core) it is one request per core, which keeps every OpenVINO stream busy
(the THROUGHPUT hint makes at most one stream per core).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from ovmsd.errors import ErrorKind, ServingError, short

MAX_PARKED = 256  # requests waiting for a model's place, per pool; each holds a thread (about 64 KiB resident)
PARK_AFTER_S = 0.01  # a wait for a place shorter than this keeps its turn (parking costs two thread switches)

_current = threading.local()  # .pool: the TurnPool whose thread this is
T = TypeVar("T")


class TurnPool(Executor):
    """At most ``workers`` tasks run at once; a task waiting inside :meth:`park` lends its turn to the next one.

    Built like ``ThreadPoolExecutor`` (a queue of tasks, threads started as tasks come while none is idle), with
    ``workers`` turns as tokens in a queue: a thread takes one to run a task and gives it back after; a parked task
    gives it back when it parks and runs on without one once its wait is over. Threads are started while fewer than
    ``workers`` are not parked, so the pool grows only by the threads parked at once (at most ``max_parked``);
    every primitive on the path of a task is one of C (``queue.SimpleQueue``), so a task costs what it costs in
    ``ThreadPoolExecutor`` (measured with 32 clients of a tiny model on 2 cores: 274-283 µs of daemon CPU per
    Predict, against 276-314 µs with ``ThreadPoolExecutor``).
    """

    def __init__(self, workers: int, name: str, max_parked: int = MAX_PARKED) -> None:
        self.workers = max(1, workers)
        self.max_parked = max_parked
        self._name = name
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._turns: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._turns.put(None)
        self._idle = threading.Semaphore(0)  # threads waiting for a task (as ThreadPoolExecutor counts them)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._parked = 0
        self._shutdown = False

    @property
    def parked(self) -> int:
        return self._parked

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new tasks after shutdown")
        future: Future[Any] = Future()
        self._tasks.put(_Task(future, fn, args, kwargs))
        self._add_thread()
        return future

    def _add_thread(self) -> None:
        """A thread for a queued task: an idle one, else a new one while fewer than ``workers`` are not parked
        (parked threads do not count: that is how a parked task lends its turn)."""
        if self._idle.acquire(timeout=0):
            return
        with self._lock:
            if len(self._threads) - self._parked < self.workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        _current.pool = self
        while True:
            task = self._tasks.get()
            if task is None:
                self._tasks.put(None)  # the next thread stops too
                return
            self._turns.get()
            _current.unturned = False
            try:
                task.run()
            finally:
                if _current.unturned:
                    _current.unturned = False  # it parked: it ran on without a turn, and has none to give back
                else:
                    self._turns.put(None)
            del task
            self._idle.release()

    def park(self) -> bool:
        """Give up this thread's turn while it waits (called from a task of this pool); False (nothing changed)
        when ``max_parked`` already wait."""
        with self._lock:
            if self._parked >= self.max_parked:
                return False
            self._parked += 1
        if not getattr(_current, "unturned", True):  # a task that parked before has no turn left to give
            _current.unturned = True
            self._turns.put(None)
        if not self._tasks.empty():
            self._add_thread()
        return True

    def unpark(self) -> None:
        """Back from waiting: the task runs on at once, without a turn (one may be free only later, and a model
        place handed over must not stay idle meanwhile); so the running tasks can exceed ``workers`` by the number
        just unparked, which the models' limits bound."""
        with self._lock:
            self._parked -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task.future.cancel()
        self._tasks.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


class _Task:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


def current_pool() -> TurnPool | None:
    """The TurnPool whose thread runs the caller, if any."""
    return getattr(_current, "pool", None)


class TooManyWaiting(Exception):
    """A wait that could not lend its turn: ``max_parked`` tasks already wait in the pool."""


def lending_turns(items: Iterator[T]) -> Iterator[T]:
    """``items``, with this thread's turn lent to other tasks while it waits for the next one.

    For a stream's messages: the next one may come in a second or never, and a stream that kept its turn meanwhile
    would hold a request thread; ``workers`` idle streams would stop every other request of the server. Outside a
    :class:`TurnPool` it simply waits; raises :class:`TooManyWaiting` when ``max_parked`` tasks already wait.
    """
    pool = current_pool()
    while True:
        if pool is not None and not pool.park():
            raise TooManyWaiting(f"{pool.max_parked} requests and streams already wait in the server")
        try:
            item = next(items, _END)
        finally:
            if pool is not None:
                pool.unpark()
        if item is _END:
            return
        yield item  # type: ignore[misc]


_END = object()


class ModelSlots:
    """At most ``limit`` requests of one model inside it; the others wait for a place in order of arrival."""

    def __init__(self, model: str, limit: int) -> None:
        self.model = model
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._inside = 0
        # one turn per waiting request, first come first served: an Event for a thread, a _LoopTurn for an event loop
        self._waiting: deque[threading.Event | _LoopTurn] = deque()

    @property
    def inside(self) -> int:
        return self._inside

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextmanager
    def enter(self, timeout: float) -> Iterator[None]:
        """Inside the model for the ``with`` block. Raises OVERLOADED after ``timeout`` seconds of waiting, or
        TOO_MANY_REQUESTS when the request would wait and its pool has no room left for waiting requests."""
        self._acquire(timeout)
        try:
            yield
        finally:
            self._release()

    @asynccontextmanager
    async def entered(self, timeout: float) -> AsyncIterator[None]:
        """:meth:`enter` for a request on an event loop: it waits for its place on the loop, holding no thread, in
        the same order of arrival as the requests of the request threads."""
        await self._acquire_on_loop(timeout)
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def outside(self, timeout: float) -> Iterator[None]:
        """Out of the model for the ``with`` block (a request waiting for a compile), parked, then back in.

        So a compile that takes a minute holds neither a place (requests for shapes already compiled go on) nor
        a turn of the request threads; coming back in waits for a place like :meth:`enter`.
        """
        self._release()
        pool = current_pool()
        parked = pool is not None and pool.park()
        try:
            yield
        finally:
            if parked and pool is not None:
                pool.unpark()
            self._acquire(timeout)

    def _acquire(self, timeout: float) -> None:
        with self._lock:
            if self._inside < self.limit and not self._waiting:
                self._inside += 1
                return
            turn = threading.Event()
            self._waiting.append(turn)
        deadline = time.monotonic() + timeout
        # A place usually frees within a fraction of a millisecond (fast models): wait that out holding the turn,
        # which costs nothing; park only when the wait goes on, as it does behind slow requests.
        if turn.wait(min(PARK_AFTER_S, timeout)):
            return
        pool = current_pool()
        if pool is not None and not pool.park():
            if not self._leave_queue(turn):
                return  # handed a place just now: take it
            raise ServingError(
                ErrorKind.TOO_MANY_REQUESTS,
                message=f"{ErrorKind.TOO_MANY_REQUESTS.value} - Expected: at most {self.limit} inside the model "
                f"(max_concurrent_requests) and {pool.max_parked} waiting in the server; Actual: {self._inside} "
                f"inside, {pool.parked} waiting; model name: {short(self.model)}",
            )
        try:
            if turn.wait(max(0.0, deadline - time.monotonic())) or not self._leave_queue(turn):
                return  # _release handed its place over: _inside already counts this request
        finally:
            if pool is not None:
                pool.unpark()
        raise self._overloaded(timeout)

    async def _acquire_on_loop(self, timeout: float) -> None:
        with self._lock:
            if self._inside < self.limit and not self._waiting:
                self._inside += 1
                return
            turn = _LoopTurn(asyncio.get_running_loop())
            self._waiting.append(turn)
        try:
            await asyncio.wait_for(turn.future, timeout)
        except asyncio.TimeoutError:
            if self._leave_queue(turn):
                raise self._overloaded(timeout) from None
            # handed a place as the wait ran out: take it
        except asyncio.CancelledError:
            if not self._leave_queue(turn):
                self._release()  # handed a place nobody will use: pass it on
            raise

    def _overloaded(self, timeout: float) -> ServingError:
        return ServingError(
            ErrorKind.OVERLOADED,
            f"waited {timeout:g} s for one of the {self.limit} places of model {short(self.model)} "
            "(max_concurrent_requests)",
        )

    def _leave_queue(self, turn: threading.Event | _LoopTurn) -> bool:
        """Stop waiting: True when done, False when a place was handed over meanwhile (the caller then has it)."""
        with self._lock:
            if turn.is_set():
                return False
            self._waiting.remove(turn)
            return True

    def set_limit(self, limit: int) -> None:
        """A reloaded config's limit: requests already inside finish as they are; a higher one lets waiters in."""
        with self._lock:
            self.limit = max(1, limit)
            while self._waiting and self._inside < self.limit:
                self._inside += 1
                self._waiting.popleft().set()

    def _release(self) -> None:
        with self._lock:
            if self._waiting and self._inside <= self.limit:
                self._waiting.popleft().set()  # the place passes to the first waiting request as it is
            else:
                self._inside -= 1


class _LoopTurn:
    """A place handed to a request that waits on an event loop: :meth:`set` (from any thread, with the slots'
    lock held) resolves its future on the loop."""

    __slots__ = ("_handed", "_loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handed = False
        self.future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        self._handed = True
        wake_soon(self._loop, self.future)

    def is_set(self) -> bool:
        return self._handed


def wake_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Resolve ``future`` on its event loop, from any thread; nothing once the loop closed (the daemon stops) or
    when its waiter gave up on it (timed out, cancelled)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SlotTable:
    """The :class:`ModelSlots` of every model, by name; a model's limit follows the instance that serves it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, ModelSlots] = {}

    def for_model(self, model: str, limit: int) -> ModelSlots:
        with self._lock:
            slots = self._slots.get(model)
            if slots is None:
                slots = self._slots[model] = ModelSlots(model, limit)
            elif slots.limit != limit:
                slots.set_limit(limit)
            return slots
