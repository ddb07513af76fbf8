"""JSON values (nested lists of numbers, booleans, strings, ``{"b64": ...}``) to numpy arrays of a tensor's dtype.

The value's kind must fit the dtype: booleans only for BOOL, integers (in range) for integer tensors, numbers for
float tensors; strings and ``{"b64": ...}`` objects make a BYTES (object) array. A nesting that is not a tensor
(rows of different lengths, a scalar beside a list) is INVALID_INPUT naming the input.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from ovmsd.api.kserve.codec import short
from ovmsd.errors import ErrorKind, ServingError

MAX_RANK = 32  # nested lists a BYTES tensor may have: a tensor's dimensions (as ovmsd.api.grpc.tensors allows)


def is_bytes_value(value: Any) -> bool:
    """The first leaf of a nested value is a string or a ``{"b64": ...}`` object."""
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str) or (isinstance(value, dict) and "b64" in value)


def bytes_array(value: Any, name: str) -> np.ndarray:
    """A BYTES tensor from nested strings and ``{"b64": ...}`` objects."""
    leaves: list[bytes] = []
    shape = _bytes_shape(value, leaves, name)
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def numeric_array(value: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """A numeric tensor of ``dtype`` from nested JSON numbers (or booleans)."""
    try:
        parsed = np.asarray(value)
    except ValueError:
        raise _nesting(name) from None
    if parsed.dtype == object:
        raise _nesting(name)
    kind = parsed.dtype.kind
    if parsed.size and not _fits(kind, dtype):
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid input precision - Expected: {_kind_name(dtype)} values; Actual: "
            f"{_kind_name(parsed.dtype)} values; input name: {short(name)}",
        )
    if dtype.kind in "iu" and parsed.size:
        info = np.iinfo(dtype)
        low, high = int(parsed.min()), int(parsed.max())  # numpy's bool cannot be compared with 2**64 - 1
        if low < info.min or high > info.max:
            raise ServingError(
                ErrorKind.INVALID_INPUT,
                message=f"Invalid input value - Expected: values from {info.min} to {info.max}; Actual: "
                f"{low if low < info.min else high}; input name: {short(name)}",
            )
    return parsed.astype(dtype, copy=False)


def _fits(kind: str, dtype: np.dtype) -> bool:
    if dtype.kind == "b":
        return kind == "b"
    if dtype.kind in "iu":
        return kind in "iub"
    return kind in "iufb"  # float tensors take any number


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "U": "string", "S": "string"}.get(
        dtype.kind, str(dtype)
    )


def _nesting(name: str) -> ServingError:
    return ServingError(
        ErrorKind.INVALID_INPUT,
        message="Invalid input shape - Expected: a nesting of lists with equal lengths at each level (a tensor); "
        f"Actual: rows of different lengths or mixed lists and values; input name: {short(name)}",
    )


def _bytes_shape(value: Any, leaves: list[bytes], name: str, depth: int = 0) -> tuple[int, ...]:
    if isinstance(value, list):
        if depth == MAX_RANK:  # before numpy's own limit (64) and the interpreter's recursion limit (1,000)
            raise ServingError(
                ErrorKind.INVALID_INPUT,
                message=f"Invalid input shape - Expected: at most {MAX_RANK} dimensions; Actual: more nested lists; "
                f"input name: {short(name)}",
            )
        shapes = {_bytes_shape(item, leaves, name, depth + 1) for item in value}
        if len(shapes) > 1:
            raise _nesting(name)
        return (len(value), *(shapes.pop() if shapes else ()))
    leaves.append(_leaf_bytes(value, name))
    return ()


def _leaf_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ServingError(
                ErrorKind.INVALID_INPUT, message=f"Invalid base64 data in a b64 value; input name: {short(name)}"
            ) from None
    raise ServingError(
        ErrorKind.INVALID_INPUT,
        message=f'Invalid input value - Expected: strings or {{"b64": ...}} objects; Actual: '
        f"{type(value).__name__}; input name: {short(name)}",
    )


def json_bytes(array: np.ndarray) -> Any:
    """A BYTES output as JSON: UTF-8 text as strings, other bytes as ``{"b64": ...}`` (TF Serving's form)."""

    def leaf(item: Any) -> Any:
        data = item if isinstance(item, bytes) else str(item).encode()
        try:
            return data.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(data).decode()}

    flat = [leaf(item) for item in array.reshape(-1)]
    if array.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()
