"""One loaded model version: the OpenVINO model with its configuration applied, and its compiled shape variants.

This is the only serving module that imports openvino. A request is served by the *base* variant (the model as
configured) when its shapes fit, otherwise (``auto``) by a variant compiled for its shapes, kept in a bounded cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from ovmsd.config.models import Dim, ModelConfig, Shape, format_shape
from ovmsd.errors import ErrorKind, ModelLoadError, ServingError
from ovmsd.serving.infer_pool import InferPool, PoolTimeout
from ovmsd.serving.reshape import InputRule, ShapeKey, match_inputs, plan_shapes, shape_key
from ovmsd.serving.shape_cache import BuildTimeout, CacheStats, ShapeCache
from ovmsd.serving.signature import PRECISIONS, Signature, TensorSpec

log = logging.getLogger(__name__)

DEFAULT_PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT"}


@dataclass(frozen=True)
class ServingOptions:
    """Daemon-wide settings for every instance."""

    shape_cache_size: int = 4
    reshape_timeout_s: float = 30.0
    cache_dir: Path | None = None


@dataclass
class Variant:
    """A compiled model for one shape key, with its pool of infer requests."""

    key: ShapeKey
    compiled: ov.CompiledModel
    signature: Signature
    pool: InferPool[ov.InferRequest]

    def __post_init__(self) -> None:
        self._static = all(d.is_static for spec in self.signature.inputs for d in spec.shape)

    def infer(self, infer_request: ov.InferRequest, arrays: list[np.ndarray]) -> None:
        """Copy the inputs into the request's own tensors and run it.

        Decoded inputs are read-only views of the protobuf message, so OpenVINO would copy them anyway; copying
        straight into the request's tensors skips its Python-side input handling, the largest per-request cost of
        small models.
        """
        for index, array in enumerate(arrays):
            tensor = infer_request.get_input_tensor(index)
            if not self._static:
                tensor.shape = array.shape
            tensor.data[...] = array
        infer_request.infer()


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
            model = core.read_model(str(model_path))
            _name_unnamed_tensors(model)
            _apply_layout(model, config)
            self.rules = _input_rules(model, config)
            _apply_configured_shapes(model, config, self.rules)
            base = self._compile(model, key=None)
        except ModelLoadError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError for every kind of read/compile failure
            raise ModelLoadError(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        # The ov.Model is kept only where requests can ask for other shapes; compiled variants hold their own copy.
        self._model: ov.Model | None = model if config.has_auto else None
        self.base = base
        self._variants: ShapeCache[ShapeKey, Variant] = ShapeCache(self.options.shape_cache_size)
        self._variants.put(base.key, base, pin=True)

    # -- serving -------------------------------------------------------------------------------------------------

    @property
    def signature(self) -> Signature:
        """The signature GetModelMetadata reports: the most recently compiled variant's."""
        key = self._variants.last_built
        variant = self._variants.peek(key) if key is not None else None
        return (variant or self.base).signature

    @contextmanager
    def run(self, inputs: Mapping[str, np.ndarray]) -> Iterator[tuple[Signature, dict[str, np.ndarray]]]:
        """Infer; yields the outputs (views valid only inside the ``with`` block) and the signature that served."""
        request = match_inputs(self.base.signature, inputs)
        key = plan_shapes(self.base.signature, self.rules, request)
        variant = self.base if key is None else self._variant_for(key)
        try:
            with variant.pool.acquire(self.options.reshape_timeout_s) as infer_request:
                try:
                    variant.infer(infer_request, [request[spec.name] for spec in variant.signature.inputs])
                except Exception as exc:
                    raise ServingError(ErrorKind.INFERENCE_FAILED, _first_line(exc)) from exc
                outputs = {
                    spec.name: infer_request.get_output_tensor(i).data
                    for i, spec in enumerate(variant.signature.outputs)
                }
                yield variant.signature, outputs
        except PoolTimeout as exc:
            raise ServingError(ErrorKind.OVERLOADED, str(exc)) from exc

    def _variant_for(self, key: ShapeKey) -> Variant:
        if self._model is None:  # cannot happen: plan_shapes only asks for variants of auto inputs
            raise ServingError(ErrorKind.RESHAPE_FAILED, "model is not configured with auto shapes")
        try:
            return self._variants.get_or_build(key, self._build_variant, self.options.reshape_timeout_s)
        except BuildTimeout as exc:
            raise ServingError(ErrorKind.OVERLOADED, f"{exc}; shape {_key_text(key)}") from exc

    def _build_variant(self, key: ShapeKey) -> Variant:
        assert self._model is not None
        model = self._model.clone()
        try:
            model.reshape({name: _partial_shape(shape) for name, shape in key})
            variant = self._compile(model, key)
        except Exception as exc:
            log.warning("%s v%d: reshape to %s failed: %s", self.name, self.version, _key_text(key), _first_line(exc))
            raise ServingError(ErrorKind.RESHAPE_FAILED, f"requested shape {_key_text(key)}") from exc
        stats = self._variants.stats
        log.info(
            "%s v%d: compiled shape %s (compiles so far: %d, cached shapes: %d)",
            self.name,
            self.version,
            _key_text(key),
            stats.compiles + 1,
            len(self._variants.cached_keys()) + 1,
        )
        return variant

    def _compile(self, model: ov.Model, key: ShapeKey | None) -> Variant:
        plugin_config = dict(self.config.plugin_config) or dict(DEFAULT_PLUGIN_CONFIG)
        if self.config.allow_cache and self.options.cache_dir is not None:
            plugin_config.setdefault("CACHE_DIR", str(self.options.cache_dir))
        with self._compile_lock:
            compiled = self._core.compile_model(model, self.config.target_device, plugin_config)
        signature = _signature_of(compiled)
        nireq = self.config.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        pool = InferPool([compiled.create_infer_request() for _ in range(max(1, nireq))])
        return Variant(key or shape_key(signature), compiled, signature, pool)

    # -- status --------------------------------------------------------------------------------------------------

    def info(self) -> InstanceInfo:
        shapes = [{name: format_shape(shape) for name, shape in key} for key in self._variants.cached_keys()]
        return InstanceInfo(compiled_shapes=shapes, nireq=self.base.pool.size, stats=self._variants.stats)

    def close(self) -> None:
        self._variants.clear()
        self._model = None


# -- model preparation (pure functions over ov.Model) ----------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # OpenVINO puts "Exception from src/..." lines before the sentence that matters; keep the last meaningful one.
    meaningful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (meaningful or lines)[-1][:500]


def _name_unnamed_tensors(model: ov.Model) -> None:
    """OVMS addresses tensors by name; give unnamed ones their node's friendly name."""
    for param in model.inputs:
        if not param.get_names():
            param.get_tensor().set_names({param.get_node().get_friendly_name()})
    for i, result in enumerate(model.outputs):
        if not result.get_names():
            producer = result.get_node().input_value(0).get_node()
            result.get_tensor().set_names({producer.get_friendly_name() or f"output_{i}"})


def _apply_layout(model: ov.Model, config: ModelConfig) -> None:
    """``layout``: "NCHW" sets the model layout; "NHWC:NCHW" lets clients send NHWC to an NCHW model."""
    if config.layout is None:
        return
    if isinstance(config.layout, str):
        if len(model.inputs) != 1:
            raise ModelLoadError("an anonymous layout needs a model with one input; use a map of input names")
        layouts = {model.inputs[0].get_any_name(): config.layout}
    else:
        layouts = dict(config.layout)
    ppp = ov.preprocess.PrePostProcessor(model)
    inputs = {n for p in model.inputs for n in p.get_names()}
    outputs = {n for r in model.outputs for n in r.get_names()}
    for name, text in layouts.items():
        tensor_layout, _, model_layout = text.partition(":")
        if name in inputs:
            info = ppp.input(name)
        elif name in outputs:
            info = ppp.output(name)
        else:
            raise ModelLoadError(f"layout is configured for '{name}', which is not an input or output of the model")
        info.model().set_layout(ov.Layout(model_layout or tensor_layout))
        if model_layout:
            info.tensor().set_layout(ov.Layout(tensor_layout))
    ppp.build()


def _batch_index(param: ov.Output) -> int | None:
    rank = param.get_partial_shape().rank
    if rank.is_static and rank.get_length() == 0:
        return None
    layout = ov.layout_helpers.get_layout(param)
    if not layout.empty and ov.layout_helpers.has_batch(layout):
        index = ov.layout_helpers.batch_idx(layout)
        return index if index >= 0 else rank.get_length() + index
    return 0


def _input_rules(model: ov.Model, config: ModelConfig) -> dict[str, InputRule]:
    rules = {}
    auto_batch = bool(config.batch_size and config.batch_size.auto)
    for param in model.inputs:
        configured = config.shape.for_input(set(param.get_names()))
        index = _batch_index(param)
        if auto_batch and index is None:
            raise ModelLoadError(
                f"batch_size auto needs inputs with a batch dimension; input '{param.get_any_name()}' is a scalar"
            )
        rules[param.get_any_name()] = InputRule(
            auto_shape=bool(configured and configured.auto), auto_batch=auto_batch, batch_index=index
        )
    return rules


def _apply_configured_shapes(model: ov.Model, config: ModelConfig, rules: Mapping[str, InputRule]) -> None:
    known = {n for p in model.inputs for n in p.get_names()}
    unknown = sorted(set(config.shape.per_input) - known)
    if unknown:
        raise ModelLoadError(f"shape is configured for {', '.join(unknown)}, not an input of the model")
    anonymous = config.shape.anonymous
    if anonymous is not None and not anonymous.auto and len(model.inputs) != 1:
        raise ModelLoadError("an anonymous shape needs a model with one input; use a map of input names")
    new_shapes: dict[str, ov.PartialShape] = {}
    for param in model.inputs:
        name = param.get_any_name()
        configured = config.shape.for_input(set(param.get_names()))
        shape = _shape_of(param.get_partial_shape())
        if configured is not None and configured.dims is not None:
            shape = configured.dims
        batch = config.batch_size
        index = rules[name].batch_index
        if batch is not None and batch.dim is not None and index is not None and index < len(shape):
            shape = tuple(batch.dim if i == index else d for i, d in enumerate(shape))
        if shape != _shape_of(param.get_partial_shape()):
            new_shapes[name] = _partial_shape(shape)
    if new_shapes:
        model.reshape(new_shapes)


def _shape_of(partial: ov.PartialShape) -> Shape:
    if partial.rank.is_dynamic:
        return ()
    dims = []
    for d in partial:
        if d.is_static:
            dims.append(Dim.static(d.get_length()))
        else:
            dims.append(Dim(max(0, d.get_min_length()), d.get_max_length()))
    return tuple(dims)


def _partial_shape(shape: Shape) -> ov.PartialShape:
    return ov.PartialShape([ov.Dimension(d.lo) if d.is_static else ov.Dimension(d.lo, d.hi) for d in shape])


def _spec_of(port: ov.ConstOutput) -> TensorSpec:
    element = port.get_element_type()
    type_name = element.get_type_name()
    dtype = np.dtype(element.to_dtype()) if type_name != "string" else np.dtype(object)
    return TensorSpec(
        name=port.get_any_name(),
        aliases=frozenset(port.get_names()),
        precision=PRECISIONS.get(type_name, type_name.upper()),
        dtype=dtype,
        shape=_shape_of(port.get_partial_shape()),
    )


def _signature_of(compiled: ov.CompiledModel) -> Signature:
    return Signature(
        inputs=tuple(_spec_of(p) for p in compiled.inputs), outputs=tuple(_spec_of(p) for p in compiled.outputs)
    )


def _key_text(key: ShapeKey) -> str:
    return ", ".join(f"{name}{format_shape(shape)}" for name, shape in key)


def instance_loader(options: ServingOptions) -> Callable[[Path, ModelConfig, int], ModelInstance]:
    """The manager's factory: loads a version's model file into an instance, sharing one OpenVINO Core."""
    core = ov.Core()

    def load(model_file: Path, config: ModelConfig, version: int) -> ModelInstance:
        return ModelInstance(core, model_file, config, version, options)

    return load
