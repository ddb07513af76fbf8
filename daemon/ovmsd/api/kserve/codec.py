"""KServe v2 (Open Inference Protocol) tensors <-> numpy, shared by the gRPC and the REST front ends.

A tensor is a ``datatype`` name (``FP32``, ``INT64``, ``BYTES``...), a shape, and its data: raw little-endian bytes
in C order (gRPC ``raw_input_contents``, the REST binary extension) or a flat list of values (gRPC typed
``contents``, REST JSON ``data``). ``BYTES`` elements travel raw as a 4-byte little-endian length followed by the
bytes, one after another. ``FP16`` has no typed field in the protocol: raw only, as OVMS does.

Raw data decodes to a zero-copy, read-only ``np.frombuffer`` view. Every malformed tensor raises ``ServingError``
(INVALID_INPUT) with OVMS's sentence, the expected and actual value and the input's name.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence

import numpy as np

from ovmsd.errors import ErrorKind, ServingError, invalid_input, short

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("ovmsd.api.kserve.codec assumes a little-endian host (KServe raw tensors are little-endian)")

try:
    import ml_dtypes

    _BF16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BF16 = None

BYTES = "BYTES"
MAX_RANK = 32  # numpy's limit is 32 dimensions (numpy 1) or 64 (numpy 2); no model input has more than a few
MAX_ARRAY_BYTES = 2**63 - 1  # numpy cannot describe a larger array (its sizes are signed 64-bit)

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    BYTES: np.dtype(object),
}
if _BF16 is not None:
    DATATYPES["BF16"] = _BF16

_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in DATATYPES.items()}

RAW_ONLY = frozenset({"FP16", "BF16"})  # no typed contents field carries them


def datatype_of(dtype: np.dtype) -> str:
    """The KServe name of a numpy dtype (``object`` and byte strings are BYTES)."""
    if dtype.kind in "OSU":
        return BYTES
    try:
        return _NAMES[dtype]
    except KeyError:
        raise ServingError(ErrorKind.UNSUPPORTED, f"datatype {dtype} has no KServe name") from None


def dtype_for(datatype: str, name: str) -> np.dtype:
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise invalid_input("Invalid input precision", "one of " + ", ".join(DATATYPES), short(datatype), short(name))
    return dtype


def element_count(shape: Sequence[int], name: str, itemsize: int = 1) -> int:
    """The number of elements of ``shape``; negative dims, more than MAX_RANK dims, and arrays whose bytes
    (``itemsize`` per element) overflow int64 are INVALID_INPUT."""
    dims = [int(d) for d in shape]
    if len(dims) > MAX_RANK:
        raise invalid_input("Invalid input shape", f"at most {MAX_RANK} dimensions", len(dims), name)
    if any(d < 0 for d in dims):
        raise invalid_input("Invalid input shape", "dimensions of 0 or more", _shape_text(dims), name)
    count = math.prod(dims)
    # numpy refuses a shape whose non-zero dims overflow in bytes even when a 0 dim makes it empty: (0, 2**62)
    if math.prod(d for d in dims if d) * max(1, itemsize) > MAX_ARRAY_BYTES:
        raise invalid_input(
            "Invalid input shape", "fewer than 2^63 bytes (int64 overflow)", _shape_text(dims), short(name)
        )
    return count


def from_raw(datatype: str, shape: Sequence[int], raw: bytes | memoryview, name: str) -> np.ndarray:
    """A tensor sent as raw bytes; BYTES elements are length-prefixed."""
    dtype = dtype_for(datatype, name)
    count = element_count(shape, name, dtype.itemsize)
    dims = tuple(int(d) for d in shape)
    if datatype == BYTES:
        return _split_bytes(raw, count, name).reshape(dims)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise invalid_input(
            "Invalid content size of tensor proto", f"{expected} bytes", f"{len(raw)} bytes", short(name)
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def from_values(datatype: str, shape: Sequence[int], values: Sequence[object], name: str) -> np.ndarray:
    """A tensor sent as a flat list of values (typed gRPC contents, REST JSON ``data``)."""
    dtype = dtype_for(datatype, name)
    if datatype in RAW_ONLY:
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid input precision - {datatype} is accepted only as raw data "
            f"(raw_input_contents or the binary data extension); input name: {short(name)}",
        )
    count = element_count(shape, name, dtype.itemsize)
    if len(values) != count:
        raise invalid_input("Invalid number of values in tensor proto container", count, len(values), short(name))
    dims = tuple(int(d) for d in shape)
    if datatype == BYTES:
        array = np.empty(count, dtype=object)
        array[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in values]  # type: ignore[arg-type]
        return array.reshape(dims)
    try:
        return np.asarray(values, dtype=dtype).reshape(dims)
    except (TypeError, ValueError, OverflowError) as exc:
        raise invalid_input(
            "Could not parse input content", f"{datatype} values", type(exc).__name__, short(name)
        ) from exc


def to_raw(array: np.ndarray) -> bytes:
    """The raw bytes of an output: C-order little-endian, or length-prefixed elements for BYTES."""
    if array.dtype.kind in "OSU":
        return join_bytes(array)
    return np.ascontiguousarray(array).tobytes()


def join_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _split_bytes(raw: bytes | memoryview, count: int, name: str) -> np.ndarray:
    view = memoryview(raw)
    items: list[bytes] = []  # grows with what the bytes hold, not with the count the shape claims
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise invalid_input(
                "Invalid content size of tensor proto",
                f"{count} length-prefixed elements",
                f"{index} elements in {len(view)} bytes",
                short(name),
            )
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise invalid_input(
                "Invalid content size of tensor proto",
                f"element {index} of {length} bytes",
                f"{len(view) - offset} bytes left",
                short(name),
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != len(view):
        raise invalid_input(
            "Invalid content size of tensor proto", f"{offset} bytes", f"{len(view)} bytes", short(name)
        )
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def _shape_text(dims: Sequence[int]) -> str:
    return "(" + ",".join(str(d) for d in dims) + ")"
