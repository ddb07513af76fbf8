"""Model preparation: pure functions over ``openvino.Model`` that apply a model's configuration before compiling.

Names for unnamed tensors, layouts (``NHWC:NCHW``), configured shapes and batch sizes, the reshape rules of each
input, and the signature a compiled model reports. Nothing here serves requests or keeps state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import openvino as ov

from ovmsd.config.models import Dim, ModelConfig, Shape
from ovmsd.errors import ModelLoadError
from ovmsd.serving.reshape import InputRule
from ovmsd.serving.signature import PRECISIONS, Signature, TensorSpec


def bind_numpy_once() -> None:
    """Make OpenVINO's first numpy conversion now, on this thread, before any load or request thread exists.

    pyopenvino's first ``Type.to_dtype()`` (and any first tensor-as-array) initialises pybind11's numpy API inside a
    C++ function-local static. When two threads make that first call at once, one waits for the static while holding
    the GIL and the other waits for the GIL inside the static's initialiser: the process deadlocks (seen in
    openvino 2026.4 as two versions stuck LOADING and every RPC timing out; 20 of 30 cold processes hung with 32
    threads calling ``to_dtype`` together, none after this call). Once initialised, the path is thread-safe.
    """
    ov.Type.f32.to_dtype()


def error_summary(exc: BaseException) -> str:
    """The sentence of an OpenVINO error that matters: its last meaningful line, at most 500 characters."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # OpenVINO puts "Exception from src/..." lines before the sentence that matters; keep the last meaningful one.
    meaningful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (meaningful or lines)[-1][:500]


def name_unnamed_tensors(model: ov.Model) -> None:
    """OVMS addresses tensors by name; give unnamed ones their node's friendly name."""
    for param in model.inputs:
        if not param.get_names():
            param.get_tensor().set_names({param.get_node().get_friendly_name()})
    for i, result in enumerate(model.outputs):
        if not result.get_names():
            producer = result.get_node().input_value(0).get_node()
            result.get_tensor().set_names({producer.get_friendly_name() or f"output_{i}"})


def apply_layout(model: ov.Model, config: ModelConfig) -> None:
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


def batch_index(param: ov.Output) -> int | None:
    rank = param.get_partial_shape().rank
    if rank.is_static and rank.get_length() == 0:
        return None
    layout = ov.layout_helpers.get_layout(param)
    if not layout.empty and ov.layout_helpers.has_batch(layout):
        index = ov.layout_helpers.batch_idx(layout)
        return index if index >= 0 else rank.get_length() + index
    return 0


def input_rules(model: ov.Model, config: ModelConfig) -> dict[str, InputRule]:
    rules = {}
    auto_batch = bool(config.batch_size and config.batch_size.auto)
    for param in model.inputs:
        configured = config.shape.for_input(set(param.get_names()))
        index = batch_index(param)
        if auto_batch and index is None:
            raise ModelLoadError(
                f"batch_size auto needs inputs with a batch dimension; input '{param.get_any_name()}' is a scalar"
            )
        rules[param.get_any_name()] = InputRule(
            auto_shape=bool(configured and configured.auto), auto_batch=auto_batch, batch_index=index
        )
    return rules


def apply_configured_shapes(model: ov.Model, config: ModelConfig, rules: Mapping[str, InputRule]) -> None:
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
        shape = shape_of(param.get_partial_shape())
        if configured is not None and configured.dims is not None:
            shape = configured.dims
        batch = config.batch_size
        index = rules[name].batch_index
        if batch is not None and batch.dim is not None and index is not None and index < len(shape):
            shape = tuple(batch.dim if i == index else d for i, d in enumerate(shape))
        if shape != shape_of(param.get_partial_shape()):
            new_shapes[name] = partial_shape(shape)
    if new_shapes:
        model.reshape(new_shapes)


def shape_of(partial: ov.PartialShape) -> Shape:
    if partial.rank.is_dynamic:
        return ()
    dims = []
    for d in partial:
        if d.is_static:
            dims.append(Dim.static(d.get_length()))
        else:
            dims.append(Dim(max(0, d.get_min_length()), d.get_max_length()))
    return tuple(dims)


def partial_shape(shape: Shape) -> ov.PartialShape:
    return ov.PartialShape([ov.Dimension(d.lo) if d.is_static else ov.Dimension(d.lo, d.hi) for d in shape])


def spec_of(port: ov.ConstOutput) -> TensorSpec:
    element = port.get_element_type()
    type_name = element.get_type_name()
    dtype = np.dtype(element.to_dtype()) if type_name != "string" else np.dtype(object)
    return TensorSpec(
        name=port.get_any_name(),
        aliases=frozenset(port.get_names()),
        precision=PRECISIONS.get(type_name, type_name.upper()),
        dtype=dtype,
        shape=shape_of(port.get_partial_shape()),
        layout=layout_text(ov.layout_helpers.get_layout(port)),
    )


def layout_text(layout: ov.Layout) -> str:
    """``[N,H,W,C]`` -> ``NHWC`` (``[N,...]`` -> ``N...``); "" for an empty layout; multi-letter names keep commas."""
    if layout.empty:
        return ""
    parts = layout.to_string().strip("[]").split(",")
    return "".join(parts) if all(len(p) == 1 or p == "..." for p in parts) else ",".join(parts)


def signature_of(compiled: ov.CompiledModel) -> Signature:
    return Signature(
        inputs=tuple(spec_of(p) for p in compiled.inputs), outputs=tuple(spec_of(p) for p in compiled.outputs)
    )
