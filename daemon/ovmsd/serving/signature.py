"""What a compiled model accepts and returns: tensor names, element types and (partial) shapes. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ovmsd.config.models import Dim, Shape, format_shape


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a compiled model."""

    name: str  # the name clients use and responses carry
    aliases: frozenset[str]  # every tensor name OpenVINO knows for it (requests may use any)
    precision: str  # OVMS spelling for messages: FP32, I64, U8...
    dtype: np.dtype
    shape: Shape
    # The tensor's layout as the compiled model reports it ("NHWC", "NCHW", "N...", "" when none is known). With
    # ``layout: NHWC:NCHW`` it is the tensor side, "NHWC": binary image inputs need to know where H, W and C are.
    layout: str = ""

    @property
    def metadata_dims(self) -> list[int]:
        """Shape for GetModelMetadata: static sizes, -1 for dynamic dimensions and ranges."""
        return [d.lo if d.is_static else -1 for d in self.shape]

    @property
    def shape_text(self) -> str:
        return format_shape(self.shape)

    def with_shape(self, shape: Shape) -> TensorSpec:
        return replace(self, shape=shape)


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input_named(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if name in t.aliases), None)

    def shapes(self) -> dict[str, str]:
        return {t.name: t.shape_text for t in self.inputs}


# OpenVINO element type names -> the precision names OVMS prints in its messages.
PRECISIONS = {
    "f32": "FP32",
    "f64": "FP64",
    "f16": "FP16",
    "bf16": "BF16",
    "i8": "I8",
    "i16": "I16",
    "i32": "I32",
    "i64": "I64",
    "u8": "U8",
    "u16": "U16",
    "u32": "U32",
    "u64": "U64",
    "boolean": "BOOL",
    "string": "STRING",
}

NUMPY_PRECISIONS = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16",
    np.dtype(np.int32): "I32",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint8): "U8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.bool_): "BOOL",
}


def precision_of(dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":
        return "BF16"
    return NUMPY_PRECISIONS.get(dtype, dtype.name.upper())


def static_shape(dims: tuple[int, ...]) -> Shape:
    return tuple(Dim.static(n) for n in dims)
