"""Small real OpenVINO models for tests, built with the opset API and saved as IR into model repositories."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
from openvino import opset13 as ops

LIGHT_RESNET50 = Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"


def named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    node.output(0).get_tensor().set_names({name})
    return node


def scale_model(shape: list[int], factor: float = 2.0, dtype: type = np.float32, name: str = "scale") -> ov.Model:
    """y = x * factor: outputs are exactly predictable. Input ``x``, output ``y``."""
    x = named(ops.parameter(shape, dtype, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.array(factor, dtype=dtype))), "y")
    return ov.Model([y], [x], name)


def two_input_model(shape_a: list[int], shape_b: list[int]) -> ov.Model:
    """sum = a.sum(axis=-1, keepdims) + b.sum(axis=-1, keepdims): inputs ``a`` and ``b`` with independent shapes."""
    a = named(ops.parameter(shape_a, np.float32, name="a"), "a")
    b = named(ops.parameter(shape_b, np.float32, name="b"), "b")
    axis = ops.constant(np.array([-1], dtype=np.int64))
    total = ops.add(ops.reduce_sum(a, axis, keep_dims=True), ops.reduce_sum(b, axis, keep_dims=True))
    return ov.Model([named(total, "sum")], [a, b], "two_inputs")


def conv_model(channels: int = 3, size: int = 16) -> ov.Model:
    """A fully convolutional net (any H, W after reshape): ``data [1,C,size,size]`` -> ``out [1,1,size,size]``."""
    rng = np.random.default_rng(7)
    data = named(ops.parameter([1, channels, size, size], np.float32, name="data"), "data")
    weights = ops.constant(rng.standard_normal((1, channels, 3, 3)).astype(np.float32))
    out = named(ops.convolution(data, weights, [1, 1], [1, 1], [1, 1], [1, 1]), "out")
    return ov.Model([out], [data], "conv")


def save(model: ov.Model, base_path: Path, version: int) -> Path:
    target = base_path / str(version) / "model.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, target, compress_to_fp16=False)
    return target


def save_onnx_resnet(base_path: Path, version: int = 1) -> Path:
    target = base_path / str(version) / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LIGHT_RESNET50, target)
    return target


def reference_outputs(model_file: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """In-process OpenVINO, f32 precision, for comparing served results."""
    core = ov.Core()
    compiled = core.compile_model(str(model_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(inputs)
    return {port.get_any_name(): np.asarray(results[port]) for port in compiled.outputs}
