"""Conversion between ``tensorflow.TensorProto`` and numpy arrays: the hot path of every Predict request.

Decoding (:func:`tensor_to_numpy`) follows TensorFlow's rules:

* ``tensor_content`` (raw little-endian bytes in C order) wins when it is non-empty. It must hold exactly
  ``prod(shape) * itemsize`` bytes. The array is a zero-copy ``np.frombuffer`` view of the bytes object the
  protobuf runtime hands out, so it is **read-only**; copy it (``np.array(a)``) before writing to it.
* Otherwise the typed field of the dtype holds the values: ``float_val`` (DT_FLOAT), ``double_val`` (DT_DOUBLE),
  ``int_val`` (DT_INT32, DT_INT16, DT_INT8, DT_UINT16, DT_UINT8; narrowed like a C cast, as TF does),
  ``int64_val``, ``uint32_val``, ``uint64_val``, ``bool_val``, ``half_val`` (the 16-bit patterns of DT_HALF and
  DT_BFLOAT16, one per int32), ``scomplex_val`` / ``dcomplex_val`` (real and imaginary parts interleaved) and
  ``float8_val`` (one byte per element). There must be one value per element, or exactly one value for a shape
  of more than one element: that value stands for all of them (TF's ``make_ndarray`` broadcast). A broadcast
  result is a **read-only** ``np.broadcast_to`` view with zero strides (no memory is spent on the repeats);
  OpenVINO copies such inputs itself, and ``np.ascontiguousarray`` materialises them.

Errors raise :class:`TensorDecodeError` with a message in OVMS's ``"<what> - Expected: X; Actual: Y"`` style.
Messages never name the input; callers append ``"; input name: X"``. Shapes are checked before anything is
allocated: more than ``MAX_RANK`` dimensions, or dimensions whose product in bytes overflows int64 (what numpy can
describe), are INVALID_SHAPE, never an exception from numpy.

Encoding (:func:`numpy_to_tensor`) always writes ``tensor_content``, the compact form every TF client reads.

DT_STRING (``string_val``, one byte string per element, or one for all as above) decodes to a numpy **object**
array of ``bytes``: the binary image inputs of OVMS (``tf.make_tensor_proto(list_of_jpeg_bytes, shape=[N])``), which
the data plane decodes for rank-4 inputs (``ovmsd.serving.images``). The elements are the bytes objects the protobuf
runtime hands out; nothing else is copied. TF's own ``tensor_content`` encoding of strings is not accepted (clients
put strings in ``string_val``).

DT_BFLOAT16 and the float8 types decode to ``ml_dtypes`` dtypes when ``ml_dtypes`` is importable. Without it the
float8 types are unsupported and DT_BFLOAT16 decodes to its raw ``uint16`` bit patterns (``BFLOAT16_IS_RAW``).
The quantized, 4/2-bit, resource and variant types are not supported. Encoding is numeric only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .proto import tensor_pb2, types_pb2

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - exercised only where ml_dtypes is missing
    ml_dtypes = None

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError(
        "ovmsd.api.grpc.tensors assumes a little-endian host (TensorProto.tensor_content is little-endian)"
    )

DataType = types_pb2.DataType

MAX_RANK = 32  # numpy's limit is 32 dimensions (numpy 1) or 64 (numpy 2); no model input has more than a few
MAX_ARRAY_BYTES = 2**63 - 1  # numpy cannot describe a larger array (its sizes are signed 64-bit)
OBJECT_ITEMSIZE = np.dtype(object).itemsize

# Reasons of TensorDecodeError.
UNSUPPORTED_DTYPE = "unsupported_dtype"
INVALID_SHAPE = "invalid_shape"
INVALID_CONTENT_SIZE = "invalid_content_size"
INVALID_VALUE_COUNT = "invalid_value_count"


class TensorDecodeError(ValueError):
    """A TensorProto that cannot become a numpy array.

    ``reason`` is one of UNSUPPORTED_DTYPE, INVALID_SHAPE, INVALID_CONTENT_SIZE, INVALID_VALUE_COUNT;
    ``expected`` / ``actual`` are the values the message shows (ints for sizes and counts, strings otherwise).
    """

    def __init__(self, reason: str, message: str, expected: Any = None, actual: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.expected = expected
        self.actual = actual


BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16) if ml_dtypes is not None else None
# True when DT_BFLOAT16 decodes to uint16 bit patterns because ml_dtypes is not installed.
BFLOAT16_IS_RAW = BFLOAT16 is None

_FLOAT8 = {
    types_pb2.DT_FLOAT8_E5M2: "float8_e5m2",
    types_pb2.DT_FLOAT8_E4M3FN: "float8_e4m3fn",
    types_pb2.DT_FLOAT8_E4M3FNUZ: "float8_e4m3fnuz",
    types_pb2.DT_FLOAT8_E4M3B11FNUZ: "float8_e4m3b11fnuz",
    types_pb2.DT_FLOAT8_E5M2FNUZ: "float8_e5m2fnuz",
}


class _Codec(NamedTuple):
    dtype: np.dtype  # dtype of the decoded array
    itemsize: int
    field: str  # typed TensorProto field holding the values
    per_element: int  # entries of the typed field per element (2 for complex)
    decode: Callable[[Any], np.ndarray]  # typed field -> flat array of `dtype`


def _plain(dtype: np.dtype) -> Callable[[Any], np.ndarray]:
    def decode(values: Any) -> np.ndarray:
        return np.array(values, dtype=dtype)

    return decode


def _narrowed(dtype: np.dtype) -> Callable[[Any], np.ndarray]:
    """int_val -> a narrower integer type, truncating like TF's static_cast."""

    def decode(values: Any) -> np.ndarray:
        return np.array(values, dtype=np.int32).astype(dtype, copy=False)

    return decode


def _bits16(dtype: np.dtype) -> Callable[[Any], np.ndarray]:
    """half_val (int32 holding 16-bit patterns) -> a 16-bit float type."""

    def decode(values: Any) -> np.ndarray:
        return np.array(values, dtype=np.int32).astype(np.uint16).view(dtype)

    return decode


def _pairs(part: np.dtype, dtype: np.dtype) -> Callable[[Any], np.ndarray]:
    """scomplex_val / dcomplex_val (interleaved real, imaginary) -> complex."""

    def decode(values: Any) -> np.ndarray:
        return np.array(values, dtype=part).view(dtype)

    return decode


def _bytes8(dtype: np.dtype) -> Callable[[Any], np.ndarray]:
    """float8_val (one byte per element) -> a float8 type."""

    def decode(values: bytes) -> np.ndarray:
        return np.frombuffer(values, dtype=np.uint8).view(dtype)

    return decode


def _codec(dtype: Any, field: str, decode: Callable[[Any], np.ndarray], per_element: int = 1) -> _Codec:
    dtype = np.dtype(dtype)
    return _Codec(dtype, dtype.itemsize, field, per_element, decode)


_I32 = np.dtype("<i4")
_CODECS: dict[int, _Codec] = {
    types_pb2.DT_FLOAT: _codec("<f4", "float_val", _plain(np.dtype("<f4"))),
    types_pb2.DT_DOUBLE: _codec("<f8", "double_val", _plain(np.dtype("<f8"))),
    types_pb2.DT_INT32: _codec(_I32, "int_val", _plain(_I32)),
    types_pb2.DT_INT16: _codec("<i2", "int_val", _narrowed(np.dtype("<i2"))),
    types_pb2.DT_INT8: _codec("i1", "int_val", _narrowed(np.dtype("i1"))),
    types_pb2.DT_UINT16: _codec("<u2", "int_val", _narrowed(np.dtype("<u2"))),
    types_pb2.DT_UINT8: _codec("u1", "int_val", _narrowed(np.dtype("u1"))),
    types_pb2.DT_INT64: _codec("<i8", "int64_val", _plain(np.dtype("<i8"))),
    types_pb2.DT_UINT32: _codec("<u4", "uint32_val", _plain(np.dtype("<u4"))),
    types_pb2.DT_UINT64: _codec("<u8", "uint64_val", _plain(np.dtype("<u8"))),
    types_pb2.DT_BOOL: _codec("?", "bool_val", _plain(np.dtype("?"))),
    types_pb2.DT_HALF: _codec("<f2", "half_val", _bits16(np.dtype("<f2"))),
    types_pb2.DT_BFLOAT16: _codec(
        BFLOAT16 if BFLOAT16 is not None else "<u2", "half_val", _bits16(BFLOAT16 if BFLOAT16 is not None else "<u2")
    ),
    types_pb2.DT_COMPLEX64: _codec("<c8", "scomplex_val", _pairs(np.dtype("<f4"), np.dtype("<c8")), 2),
    types_pb2.DT_COMPLEX128: _codec("<c16", "dcomplex_val", _pairs(np.dtype("<f8"), np.dtype("<c16")), 2),
}
if ml_dtypes is not None:
    for _dt, _name in _FLOAT8.items():
        _CODECS[_dt] = _codec(getattr(ml_dtypes, _name), "float8_val", _bytes8(np.dtype(getattr(ml_dtypes, _name))))

# Every DataType tensor_to_numpy decodes -> the numpy dtype of the array it returns.
DTYPE_TO_NUMPY: dict[int, np.dtype] = {dt: codec.dtype for dt, codec in _CODECS.items()}

# numpy dtype -> DataType, for encoding. Raw-bits bfloat16 (uint16) maps to DT_UINT16: pass dtype=DT_BFLOAT16 to
# numpy_to_tensor to send such bits as bfloat16.
NUMPY_TO_DTYPE: dict[np.dtype, int] = {
    codec.dtype: dt for dt, codec in _CODECS.items() if not (dt == types_pb2.DT_BFLOAT16 and BFLOAT16_IS_RAW)
}

# All typed value fields of TensorProto.
_VALUE_FIELDS = (
    "float_val", "double_val", "int_val", "int64_val", "uint32_val", "uint64_val", "bool_val", "half_val",
    "scomplex_val", "dcomplex_val", "float8_val", "string_val",
)  # fmt: skip


def dtype_name(dtype: int) -> str:
    """The DataType's name for messages, e.g. ``"DT_FLOAT"``; ``"DT_<n>"`` for numbers TF does not define."""
    try:
        return DataType.Name(dtype)
    except ValueError:
        return f"DT_<{dtype}>"


def dtype_of(dtype: Any) -> int:
    """The DataType of a numpy dtype (any byte order); ValueError if there is none."""
    dt = np.dtype(dtype)
    found = NUMPY_TO_DTYPE.get(dt)
    if found is None and dt.byteorder == ">":
        found = NUMPY_TO_DTYPE.get(dt.newbyteorder("<"))
    if found is None:
        raise ValueError(f"numpy dtype {dt} has no supported TensorFlow DataType")
    return found


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(d) for d in shape) + ")"


def tensor_to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto; the result may be read-only (see the module docstring). Raises TensorDecodeError."""
    dt = proto.dtype
    codec = _CODECS.get(dt)
    if codec is None and dt == types_pb2.DT_STRING:
        return _strings(proto)
    if codec is None:
        name = dtype_name(dt)
        raise TensorDecodeError(
            UNSUPPORTED_DTYPE,
            f"Unsupported data type of tensor proto - Expected: a numeric type; Actual: {name}",
            "a numeric type",
            name,
        )
    shape, count = _shape_and_count(proto, codec.itemsize)
    content = proto.tensor_content
    if content:
        expected = count * codec.itemsize
        if len(content) != expected:
            raise _content_size_error(expected, len(content))
        return np.frombuffer(content, dtype=codec.dtype).reshape(shape)

    values = getattr(proto, codec.field)
    have = len(values)
    want = count * codec.per_element
    if have == want:
        return codec.decode(values).reshape(shape)
    if have == codec.per_element and count > 1:
        return np.broadcast_to(codec.decode(values).reshape(()), shape)
    if have == 0 and not any(getattr(proto, f) for f in _VALUE_FIELDS):
        # Nothing at all was sent: report it the way most clients (tensor_content senders) understand.
        raise _content_size_error(count * codec.itemsize, 0)
    raise TensorDecodeError(
        INVALID_VALUE_COUNT,
        f"Invalid number of values in tensor proto {codec.field} - Expected: {want} values; Actual: {have} values",
        want,
        have,
    )


def _shape_and_count(proto: tensor_pb2.TensorProto, itemsize: int) -> tuple[tuple[int, ...], int]:
    tshape = proto.tensor_shape
    if tshape.unknown_rank:
        raise TensorDecodeError(
            INVALID_SHAPE,
            "Invalid shape of tensor proto - Expected: a known rank; Actual: unknown rank",
            "a known rank",
            "unknown rank",
        )
    if len(tshape.dim) > MAX_RANK:
        raise TensorDecodeError(
            INVALID_SHAPE,
            f"Invalid shape of tensor proto - Expected: at most {MAX_RANK} dimensions; Actual: {len(tshape.dim)}",
            f"at most {MAX_RANK} dimensions",
            len(tshape.dim),
        )
    shape = tuple(d.size for d in tshape.dim)
    count = 1
    nonzero = 1  # numpy refuses a shape whose non-zero dims overflow in bytes, even when a 0 dim empties it
    for size in shape:
        if size < 0:
            text = _shape_text(shape)
            raise TensorDecodeError(
                INVALID_SHAPE,
                f"Invalid shape of tensor proto - Expected: non-negative dimensions; Actual: {text}",
                "non-negative dimensions",
                text,
            )
        count *= size
        nonzero *= size or 1
    if nonzero * itemsize > MAX_ARRAY_BYTES:
        text = _shape_text(shape)
        if len(text) > 200:
            text = text[:200] + "..."
        raise TensorDecodeError(
            INVALID_SHAPE,
            f"Invalid shape of tensor proto - Expected: fewer than 2^63 bytes (int64 overflow); Actual: {text}",
            "fewer than 2^63 bytes (int64 overflow)",
            text,
        )
    return shape, count


def _strings(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """DT_STRING: ``string_val`` as an object array of bytes, one value per element or one for all."""
    shape, count = _shape_and_count(proto, OBJECT_ITEMSIZE)
    if proto.tensor_content:
        raise TensorDecodeError(
            INVALID_CONTENT_SIZE,
            "Invalid content of tensor proto - Expected: DT_STRING values in string_val; Actual: tensor_content",
            "DT_STRING values in string_val",
            "tensor_content",
        )
    values = proto.string_val
    have = len(values)
    if have != count and not (have == 1 and count > 1):
        raise TensorDecodeError(
            INVALID_VALUE_COUNT,
            f"Invalid number of values in tensor proto string_val - Expected: {count} values; Actual: {have} values",
            count,
            have,
        )
    if have != count:  # one value for all (TF's make_ndarray broadcast): a read-only view, nothing per element
        one = np.empty((), dtype=object)
        one[()] = values[0]
        return np.broadcast_to(one, shape)
    out = np.empty(count, dtype=object)
    out[:] = list(values)
    return out.reshape(shape)


def _content_size_error(expected: int, actual: int) -> TensorDecodeError:
    return TensorDecodeError(
        INVALID_CONTENT_SIZE,
        f"Invalid content size of tensor proto - Expected: {expected} bytes; Actual: {actual} bytes",
        expected,
        actual,
    )


def numpy_to_tensor(
    array: np.ndarray, proto: tensor_pb2.TensorProto, dtype: int | None = None
) -> tensor_pb2.TensorProto:
    """Fill ``proto`` in place (it is cleared first) with ``array``: dtype, shape and ``tensor_content``.

    The bytes are the array's elements in C order, little-endian, whatever the array's layout. ``dtype``
    overrides the DataType, reinterpreting the bytes: it must have the array's itemsize (e.g. uint16 bit
    patterns sent as DT_BFLOAT16). Raises ValueError for dtypes without a DataType. Returns ``proto``.
    """
    array = np.asarray(array)
    if dtype is None:
        dtype = dtype_of(array.dtype)
    else:
        target = DTYPE_TO_NUMPY.get(dtype)
        if target is None or target.itemsize != array.dtype.itemsize:
            raise ValueError(f"cannot encode a {array.dtype} array as {dtype_name(dtype)}")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    proto.Clear()
    proto.dtype = dtype
    shape = proto.tensor_shape
    shape.SetInParent()  # present even for a scalar, as TF's make_tensor_proto writes it
    dims = shape.dim
    for size in array.shape:
        dims.add().size = size
    proto.tensor_content = array.tobytes()
    return proto
