"""The protocol-free data plane: what every front end (TF Serving and KServe, gRPC and REST) calls.

Front ends only translate their wire format to named numpy arrays and back; the data plane resolves the model and
version, validates and reshapes (through the instance), infers, and answers metadata, status and readiness. Errors
are ``ServingError`` kinds; each front end maps them through ``ovmsd.api.errors``.

Binary image inputs are decoded here, so every front end gets them by handing over what its wire format carries: a
1-D numpy object array of encoded JPEG/PNG ``bytes`` (TF Serving ``DT_STRING``, KServe ``BYTES``, REST ``b64``). For
a rank-4 numeric input it becomes the NHWC batch the input takes (``ovmsd.serving.images``), before the shape checks
and any reshape; a string tensor to another numeric input is refused with OVMS's precision message.

Requests are bounded here, for every front end alike, before any work: each input's size against the model's
``max_input_bytes`` (from its shape, before images are decoded, a compile or an infer request; a decoded image batch
is bounded by it too), then a place among the model's ``max_concurrent_requests`` (``ovmsd.serving.concurrency``;
a request waiting for a compile steps out of its place meanwhile); the instance then refuses shapes ``auto`` may
not compile (``ovmsd.serving.limits``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ovmsd import stages
from ovmsd.errors import ErrorKind, ServingError, invalid_input
from ovmsd.serving.concurrency import ModelSlots, SlotTable, wake_soon
from ovmsd.serving.images import DEFAULT_MAX_PIXELS, decode_images, is_image_batch
from ovmsd.serving.manager import ModelManager
from ovmsd.serving.signature import Signature
from ovmsd.serving.states import State, VersionStatus

if TYPE_CHECKING:
    from ovmsd.serving.instance import ModelInstance, Started
    from ovmsd.serving.manager import ModelOutcome


class InferenceObserver(Protocol):
    def inferred(self, name: str, version: int, elapsed_ns: int) -> None: ...


@dataclass(frozen=True)
class InferResult:
    model: str
    version: int  # the version that served
    signature: Signature  # of the compiled variant that served (its output order)
    outputs: dict[str, np.ndarray]  # the selected outputs; views valid only inside the ``with`` block


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signature: Signature


@dataclass(frozen=True)
class Reloaded:
    """A config reload's outcome, as the reload APIs report it."""

    ok: bool
    changed: bool  # something was added, removed or reloaded
    message: str
    outcomes: tuple[ModelOutcome, ...]
    rejected: bool = False  # the config could not be read: nothing changed


class DataPlane:
    def __init__(
        self,
        manager: ModelManager,
        *,
        phase: Callable[[], str] = lambda: "serving",
        reload: Callable[[], Reloaded] | None = None,
        observer: InferenceObserver | None = None,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.manager = manager
        self._phase = phase  # the daemon's phase: starting, serving, reloading, stopping
        self._reload = reload
        self._observer = observer
        self.max_image_pixels = max_image_pixels  # the largest binary input image (width x height), --max-image-pixels
        self.slots = SlotTable()  # every model's places (max_concurrent_requests)

    # -- inference -------------------------------------------------------------------------------------------------

    @contextmanager
    def infer(
        self,
        model: str,
        version: int | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
    ) -> Iterator[InferResult]:
        """Infer with the named inputs; yields the selected outputs (all when ``outputs`` is empty or None)."""
        with self.manager.acquire(model, version) as (number, instance):
            try:
                slots = self._checked(model, instance, inputs)
                timeout = instance.options.reshape_timeout_s
                with slots.enter(timeout):
                    inputs = self._decode_images(instance, inputs)
                    started = time.perf_counter_ns()
                    if stages.on:
                        stages.lap("lookup")
                    with instance.run(inputs, lambda: slots.outside(timeout)) as (signature, produced):
                        if self._observer is not None:
                            self._observer.inferred(model, number, time.perf_counter_ns() - started)
                        selected = produced if not outputs else _select(signature, produced, outputs)
                        yield InferResult(model, number, signature, selected)
            except ServingError as exc:
                exc.version = number  # metrics count the failure against the version that was serving
                raise

    @asynccontextmanager
    async def infer_on_loop(
        self,
        model: str,
        version: int | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
    ) -> AsyncIterator[InferResult | None]:
        """:meth:`infer` for a caller on an event loop: it waits for the model's place on the loop and for the
        inference through OpenVINO's async API, holding no thread. Yields None, having taken nothing, when the
        request would have to wait on something else (images to decode, a shape to compile, no free infer request):
        :meth:`infer` on a request thread serves it then. Bad requests raise the same errors as :meth:`infer`."""
        if any(array.dtype == np.dtype(object) for array in inputs.values()):
            yield None  # encoded images (or strings): decoding takes a thread
            return
        loop = asyncio.get_running_loop()
        looking = stages.now_ns() if stages.on else 0
        with self.manager.acquire(model, version) as (number, instance):
            try:
                slots = self._checked(model, instance, inputs)
                async with slots.entered(instance.options.reshape_timeout_s):
                    started = time.perf_counter_ns()  # the stage timers' clock too
                    if stages.on:
                        stages.add("lookup", started - looking)
                    ended: asyncio.Future[None] = loop.create_future()
                    running = instance.start(inputs, lambda: wake_soon(loop, ended))
                    if running is None:
                        yield None
                        return
                    try:
                        await _until_ended(loop, running, ended)
                        signature, produced = running.outputs()
                        if stages.on:
                            stages.add("infer", stages.now_ns() - started)
                        if self._observer is not None:
                            self._observer.inferred(model, number, time.perf_counter_ns() - started)
                        selected = produced if not outputs else _select(signature, produced, outputs)
                        yield InferResult(model, number, signature, selected)
                    finally:
                        running.finish()
            except ServingError as exc:
                exc.version = number  # metrics count the failure against the version that was serving
                raise

    def _checked(self, model: str, instance: ModelInstance, inputs: Mapping[str, np.ndarray]) -> ModelSlots:
        """The model's places, once the request passed the checks before them: some inputs, each within the model's
        ``max_input_bytes``."""
        if not inputs:
            raise invalid_input("Invalid number of inputs", len(instance.base.signature.inputs), 0, None)
        limits = instance.limits
        limits.check_inputs(instance.base.signature, inputs)
        return self.slots.for_model(model, limits.max_concurrent_requests)

    def _decode_images(self, instance: ModelInstance, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """``inputs`` with every batch of encoded images decoded for its input (the same mapping when there is none).

        The base signature decides (the model as configured: its H, W, C and layout); with ``shape: auto`` the
        images keep their own size, and the decoded shape asks for a variant like any other request would.
        """
        decoded: dict[str, np.ndarray] | None = None
        for name, array in inputs.items():
            if array.dtype != np.dtype(object):
                continue
            spec = instance.base.signature.input_named(name)
            if spec is None or not is_image_batch(array, spec):
                continue  # unknown names and string inputs: the instance's checks answer them
            rule = instance.rules.get(spec.name)
            if decoded is None:
                decoded = dict(inputs)
            decoded[name] = decode_images(
                array,
                spec,
                auto_shape=rule is not None and rule.auto_shape,
                max_pixels=self.max_image_pixels,
                max_output_bytes=instance.limits.input_limit(spec),
            )
        return inputs if decoded is None else decoded

    # -- metadata and status ---------------------------------------------------------------------------------------

    def metadata(self, model: str, version: int | None) -> ModelMetadata:
        with self.manager.acquire(model, version) as (number, instance):
            return ModelMetadata(model, number, instance.signature)

    def status(self, model: str, version: int | None) -> list[VersionStatus]:
        return self.manager.statuses(model, version)

    # -- readiness -------------------------------------------------------------------------------------------------

    def server_live(self) -> bool:
        """The process answers: true until it exits, draining included."""
        return True

    def server_ready(self) -> bool:
        """Serving (start-up done, not stopping) and every configured model has an AVAILABLE version."""
        if self._phase() not in ("serving", "reloading"):
            return False
        return all(m.serving for m in self.manager.snapshot() if m.configured)

    def model_ready(self, model: str, version: int | None) -> bool:
        """The version (or the default version) is AVAILABLE; unknown models and versions raise NOT_FOUND."""
        if self._phase() == "stopping":
            return False
        statuses = self.manager.statuses(model, version)
        return any(s.state == State.AVAILABLE for s in statuses)

    # -- reload ----------------------------------------------------------------------------------------------------

    def reload_config(self) -> Reloaded:
        if self._reload is None:
            raise ServingError(ErrorKind.UNSUPPORTED, message="Config reload is not available: no config file")
        return self._reload()


FIRST_CHECK_S = 0.005  # when _EndWatch first looks whether an inference ended without its callback
LAST_CHECK_S = 0.1  # the longest interval between two looks


class _EndWatch:
    """Wakes a request on the event loop when its inference *failed*.

    OpenVINO calls an async inference's callback only when it succeeded: for a failed one (2026.4) the binding's
    wrapper raises instead of calling it, so a loop that waited for the callback alone would wait forever, holding
    the model's place and the infer request. This looks whether the inference ended at growing intervals (5 ms,
    doubling up to 100 ms); a successful inference still wakes the loop at once through its callback, and the first
    look is cancelled before it comes for any inference shorter than 5 ms.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, running: Started, ended: asyncio.Future[None]) -> None:
        self._loop, self._running, self._ended = loop, running, ended
        self._delay = FIRST_CHECK_S
        self._handle = loop.call_later(self._delay, self._look)

    def _look(self) -> None:
        if self._ended.done():
            return
        if self._running.has_ended():
            self._ended.set_result(None)
            return
        self._delay = min(2 * self._delay, LAST_CHECK_S)
        self._handle = self._loop.call_later(self._delay, self._look)

    def cancel(self) -> None:
        self._handle.cancel()


async def _until_ended(loop: asyncio.AbstractEventLoop, running: Started, ended: asyncio.Future[None]) -> None:
    """Wait until the inference ended (``ended``, woken by its callback or by :class:`_EndWatch`). A request
    cancelled meanwhile still waits: its infer request may go back only once the inference ended."""
    watch = _EndWatch(loop, running, ended)
    try:
        try:
            await asyncio.shield(ended)
        except asyncio.CancelledError:
            await ended
            raise
    finally:
        watch.cancel()


def _select(signature: Signature, produced: dict[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
    names = [spec.name for spec in signature.outputs]
    selected = {}
    for name in wanted:
        if name not in produced:
            spec = next((s for s in signature.outputs if name in s.aliases), None)
            if spec is None:
                raise invalid_input("Invalid output name in output_filter", ", ".join(names), name, None)
            name = spec.name
        selected[name] = produced[name]
    return selected
