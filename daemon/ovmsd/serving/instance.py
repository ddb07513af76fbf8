"""One loaded model version: the OpenVINO model with its configuration applied, and its compiled shape variants.

With ``ovmsd.serving.preparation`` (the configuration applied to the model), the only serving module that imports
openvino. A request is served by the *base* variant (the model as
configured) when its shapes fit, otherwise (``auto``) by a variant compiled for its shapes, kept in a cache bounded by
count and by the bytes the variants hold (measured as each is made: ``ovmsd.serving.memory``). A shape that ``auto``
may not compile (``ovmsd.serving.limits``) is refused before the compile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov

from ovmsd import stages
from ovmsd.config.models import ModelConfig, format_shape
from ovmsd.errors import ErrorKind, ModelLoadError, ServingError
from ovmsd.serving.infer_pool import InferPool, PoolTimeout
from ovmsd.serving.limits import LimitDefaults, RequestLimits
from ovmsd.serving.memory import heap_in_use, variant_bytes
from ovmsd.serving.preparation import (
    apply_configured_shapes,
    apply_layout,
    bind_numpy_once,
    error_summary,
    input_rules,
    name_unnamed_tensors,
    partial_shape,
    signature_of,
)
from ovmsd.serving.reshape import ShapeKey, match_inputs, plan_shapes, shape_key
from ovmsd.serving.shape_cache import BuildTimeout, CacheStats, ShapeCache
from ovmsd.serving.signature import Signature

log = logging.getLogger(__name__)

DEFAULT_PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT"}


@dataclass(frozen=True)
class ServingOptions:
    """Daemon-wide settings for every instance."""

    shape_cache_size: int = 4
    reshape_timeout_s: float = 30.0
    cache_dir: Path | None = None
    limits: LimitDefaults = field(default_factory=LimitDefaults)  # for models whose config sets none


@dataclass
class Variant:
    """A compiled model for one shape key, with its pool of infer requests."""

    key: ShapeKey
    compiled: ov.CompiledModel
    signature: Signature
    pool: InferPool[ov.InferRequest]
    size_bytes: int = 0  # the memory it holds, measured when it was made (ovmsd.serving.memory)

    def __post_init__(self) -> None:
        self._static = all(d.is_static for spec in self.signature.inputs for d in spec.shape)
        # static shapes: each infer request's input tensors as numpy views, made at its first use (by id: the
        # requests live as long as the variant); a dynamic input's tensor is resized per request instead
        self._input_views: dict[int, list[np.ndarray]] = {}

    def infer(self, infer_request: ov.InferRequest, arrays: list[np.ndarray]) -> None:
        """Copy the inputs into the request's own tensors (:meth:`copy_inputs`) and run it."""
        self.copy_inputs(infer_request, arrays)
        if stages.on:
            stages.lap("copy")
        infer_request.infer()
        if stages.on:
            stages.lap("infer")

    def copy_inputs(self, infer_request: ov.InferRequest, arrays: list[np.ndarray]) -> None:
        """Copy the inputs into the request's own tensors.

        Decoded inputs are read-only views of the protobuf message, so OpenVINO would copy them anyway; copying
        straight into the request's tensors skips its Python-side input handling, the largest per-request cost of
        small models. With static shapes the tensors' numpy views are kept, so a request makes no call into
        OpenVINO before ``infer`` (each such call may hand the GIL to another thread and wait to get it back).
        """
        views = self._input_views.get(id(infer_request)) if self._static else None
        if views is None:
            views = []
            for index, array in enumerate(arrays):
                tensor = infer_request.get_input_tensor(index)
                if not self._static:
                    tensor.shape = array.shape
                views.append(tensor.data)
            if self._static:
                self._input_views[id(infer_request)] = views
        for view, array in zip(views, arrays, strict=True):
            view[...] = array

    def outputs(self, infer_request: ov.InferRequest) -> dict[str, np.ndarray]:
        """The request's outputs by name: views of its tensors, valid until it runs again."""
        return {spec.name: infer_request.get_output_tensor(i).data for i, spec in enumerate(self.signature.outputs)}


class Started:
    """An inference :meth:`ModelInstance.start` started on OpenVINO's threads: its outputs once it ended, then
    :meth:`finish` to hand its infer request back."""

    def __init__(self, variant: Variant, infer_request: ov.InferRequest) -> None:
        self.variant = variant
        self._request: ov.InferRequest | None = infer_request

    def outputs(self) -> tuple[Signature, dict[str, np.ndarray]]:
        """The signature that served and its outputs (views, valid until :meth:`finish`); call it once the inference
        ended (at once then); raises INFERENCE_FAILED with what OpenVINO raised."""
        assert self._request is not None
        try:
            self._request.wait()
        except Exception as exc:
            raise ServingError(ErrorKind.INFERENCE_FAILED, error_summary(exc)) from exc
        return self.variant.signature, self.variant.outputs(self._request)

    def has_ended(self) -> bool:
        """Whether the inference ended, succeeded or failed (without waiting)."""
        assert self._request is not None
        try:
            return bool(self._request.wait_for(0))
        except Exception:  # it failed: outputs() raises what it raised
            return True

    def finish(self) -> None:
        """Hand the infer request back; once the inference ended (waits for it otherwise)."""
        infer_request, self._request = self._request, None
        if infer_request is None:
            return
        with contextlib.suppress(Exception):  # its error was reported by outputs(), or nobody asks any more
            infer_request.wait()
        self.variant.pool.give_back(infer_request)


@dataclass(frozen=True)
class InstanceInfo:
    """What ``ovmsctl status`` shows about an instance's compiled shapes."""

    compiled_shapes: list[dict[str, str]]
    nireq: int
    stats: CacheStats


class ModelInstance:
    def __init__(
        self,
        core: ov.Core,
        model_path: Path,
        config: ModelConfig,
        version: int,
        options: ServingOptions | None = None,
    ) -> None:
        self.name = config.name
        self.version = version
        self.config = config
        self.options = options or ServingOptions()
        self._core = core
        self._compile_lock = threading.Lock()  # OpenVINO compiles one model at a time per instance
        try:
            # A model kept for on-demand reshapes must own its weights: mmapped from the .bin, a file rewritten in
            # place (same inode) would change the constants under the serving version's future compiles.
            read_config = {"ENABLE_MMAP": False} if config.has_auto else {}
            model = core.read_model(str(model_path), config=read_config)
            name_unnamed_tensors(model)
            apply_layout(model, config)
            self.rules = input_rules(model, config)
            apply_configured_shapes(model, config, self.rules)
            base = self._compile(model, key=None)
        except ModelLoadError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError for every kind of read/compile failure
            raise ModelLoadError(f"{type(exc).__name__}: {error_summary(exc)}") from exc
        # The ov.Model is kept only where requests can ask for other shapes; compiled variants hold their own copy.
        self._model: ov.Model | None = model if config.has_auto else None
        self.base = base
        self.limits = RequestLimits.resolve(config.limits, self.options.limits, base.signature)
        self._variants: ShapeCache[ShapeKey, Variant] = ShapeCache(
            self.options.shape_cache_size,
            max_bytes=self.limits.shape_cache_bytes,
            size_of=lambda variant: variant.size_bytes,
        )
        self._variants.put(base.key, base, pin=True)

    # -- serving -------------------------------------------------------------------------------------------------

    @property
    def signature(self) -> Signature:
        """The signature GetModelMetadata reports: the most recently compiled variant's."""
        key = self._variants.last_built
        variant = self._variants.peek(key) if key is not None else None
        return (variant or self.base).signature

    @contextmanager
    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        compiling: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> Iterator[tuple[Signature, dict[str, np.ndarray]]]:
        """Infer; yields the outputs (views valid only inside the ``with`` block) and the signature that served.

        A request whose shape is not compiled yet compiles it (or waits for the request compiling it) inside
        ``compiling()``: the data plane steps out of the model's places there.
        """
        request, key = self._plan(inputs)
        variant = self.base if key is None else self._variant_for(key, compiling)
        if stages.on:
            stages.lap("plan")
        try:
            with variant.pool.acquire(self.options.reshape_timeout_s) as infer_request:
                if stages.on:
                    stages.lap("wait")
                try:
                    variant.infer(infer_request, [request[spec.name] for spec in variant.signature.inputs])
                except Exception as exc:
                    raise ServingError(ErrorKind.INFERENCE_FAILED, error_summary(exc)) from exc
                yield variant.signature, variant.outputs(infer_request)
        except PoolTimeout as exc:
            raise ServingError(ErrorKind.OVERLOADED, str(exc)) from exc

    def start(self, inputs: Mapping[str, np.ndarray], done: Callable[[], None]) -> Started | None:
        """:meth:`run` for a caller that must not block (an event loop): the inference started on OpenVINO's
        threads (``done`` is called on one of them when it ends), or None, having taken nothing, when it would have
        to wait: a shape not compiled yet, or no free infer request. Bad inputs raise as in :meth:`run`."""
        request, key = self._plan(inputs)
        variant = self.base if key is None else self._variants.get(key)
        if variant is None:
            return None
        infer_request = variant.pool.try_take()
        if infer_request is None:
            return None
        started = Started(variant, infer_request)
        try:
            variant.copy_inputs(infer_request, [request[spec.name] for spec in variant.signature.inputs])
            infer_request.set_callback(lambda _: done(), None)
            infer_request.start_async()
        except Exception as exc:
            started.finish()
            raise ServingError(ErrorKind.INFERENCE_FAILED, error_summary(exc)) from exc
        return started

    def _plan(self, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], ShapeKey | None]:
        """The inputs matched to the signature, and the shape to compile for them (None: the base variant's);
        refuses what the signature or the reshape limits do not allow."""
        request = match_inputs(self.base.signature, inputs)
        key = plan_shapes(self.base.signature, self.rules, request)
        if key is not None:
            self.limits.check_reshape(self.base.signature, self.rules, key)
        return request, key

    def _variant_for(self, key: ShapeKey, compiling: Callable[[], AbstractContextManager[object]]) -> Variant:
        if self._model is None:  # cannot happen: plan_shapes only asks for variants of auto inputs
            raise ServingError(ErrorKind.RESHAPE_FAILED, "model is not configured with auto shapes")
        cached = self._variants.get(key)
        if cached is not None:
            return cached
        try:
            with compiling():
                return self._variants.get_or_build(key, self._build_variant, self.options.reshape_timeout_s)
        except BuildTimeout as exc:
            raise ServingError(ErrorKind.OVERLOADED, f"{exc}; shape {_key_text(key)}") from exc

    def _build_variant(self, key: ShapeKey) -> Variant:
        assert self._model is not None
        model = self._model.clone()
        try:
            model.reshape({name: partial_shape(shape) for name, shape in key})
            variant = self._compile(model, key)
        except Exception as exc:
            log.warning("%s v%d: reshape to %s failed: %s", self.name, self.version, _key_text(key), error_summary(exc))
            raise ServingError(ErrorKind.RESHAPE_FAILED, f"requested shape {_key_text(key)}") from exc
        stats = self._variants.stats
        log.info(
            "%s v%d: compiled shape %s, %.1f MiB (compiles so far: %d, cached shapes: %d)",
            self.name,
            self.version,
            _key_text(key),
            variant.size_bytes / (1 << 20),
            stats.compiles + 1,
            len(self._variants.cached_keys()) + 1,
        )
        return variant

    def _compile(self, model: ov.Model, key: ShapeKey | None) -> Variant:
        plugin_config = dict(self.config.plugin_config) or dict(DEFAULT_PLUGIN_CONFIG)
        if self.config.allow_cache and self.options.cache_dir is not None:
            plugin_config.setdefault("CACHE_DIR", str(self.options.cache_dir))
        with self._compile_lock:  # one at a time per instance, so that what the heap gained is this variant's
            before = heap_in_use()
            compiled = self._core.compile_model(model, self.config.target_device, plugin_config)
            nireq = max(1, self.config.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            pool = InferPool([compiled.create_infer_request() for _ in range(nireq)])
            after = heap_in_use()
        signature = signature_of(compiled)
        size = variant_bytes(signature, nireq, before, after)
        return Variant(key or shape_key(signature), compiled, signature, pool, size)

    # -- status --------------------------------------------------------------------------------------------------

    def info(self) -> InstanceInfo:
        shapes = [{name: format_shape(shape) for name, shape in key} for key in self._variants.cached_keys()]
        return InstanceInfo(compiled_shapes=shapes, nireq=self.base.pool.size, stats=self._variants.stats)

    def close(self) -> None:
        self._variants.clear()
        self._model = None


def _key_text(key: ShapeKey) -> str:
    return ", ".join(f"{name}{format_shape(shape)}" for name, shape in key)


def instance_loader(options: ServingOptions) -> Callable[[Path, ModelConfig, int], ModelInstance]:
    """The manager's factory: loads a version's model file into an instance, sharing one OpenVINO Core.

    Call it before starting the threads that load or serve (it makes OpenVINO's one thread-unsafe first call).
    """
    bind_numpy_once()
    core = ov.Core()

    def load(model_file: Path, config: ModelConfig, version: int) -> ModelInstance:
        return ModelInstance(core, model_file, config, version, options)

    return load
