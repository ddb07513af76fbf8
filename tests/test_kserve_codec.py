"""KServe v2 tensors <-> numpy: raw bytes, typed values, BYTES with length prefixes, and every malformed case."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ovmsd.api.kserve.codec import DATATYPES, datatype_of, from_raw, from_values, join_bytes, to_raw
from ovmsd.errors import ErrorKind, ServingError


@pytest.mark.parametrize("datatype", sorted(set(DATATYPES) - {"BYTES"}))
def test_raw_round_trip_for_every_numeric_datatype(datatype: str) -> None:
    array = np.arange(6).astype(DATATYPES[datatype]).reshape(2, 3)
    assert datatype_of(array.dtype) == datatype
    decoded = from_raw(datatype, [2, 3], to_raw(array), "x")
    np.testing.assert_array_equal(decoded, array)
    assert decoded.dtype == array.dtype and not decoded.flags.writeable, "a zero-copy view of the request"


def test_typed_values_decode_to_the_datatype() -> None:
    decoded = from_values("INT64", [2, 2], [1, 2, 3, 4], "x")
    assert decoded.dtype == np.int64 and decoded.tolist() == [[1, 2], [3, 4]]
    assert from_values("BOOL", [2], [True, False], "x").tolist() == [True, False]


def test_bytes_elements_are_length_prefixed_both_ways() -> None:
    array = np.array([b"ab", b"", b"\x00\xff"], dtype=object)
    raw = join_bytes(array)
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0) + struct.pack("<I", 2) + b"\x00\xff"
    assert from_raw("BYTES", [3], raw, "s").tolist() == [b"ab", b"", b"\x00\xff"]
    assert from_values("BYTES", [1, 2], ["x", b"y"], "s").tolist() == [[b"x", b"y"]]


def error(call: object, *args: object) -> str:
    with pytest.raises(ServingError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.kind == ErrorKind.INVALID_INPUT
    return caught.value.message


def test_malformed_tensors_are_invalid_input_naming_expected_actual_and_input() -> None:
    assert error(from_raw, "FP32", [2, 2], b"\0" * 12, "x") == (
        "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes; input name: x"
    )
    assert error(from_values, "FP32", [3], [1.0], "x") == (
        "Invalid number of values in tensor proto container - Expected: 3; Actual: 1; input name: x"
    )
    assert "Invalid input precision" in error(from_raw, "FP128", [1], b"", "x")
    assert "accepted only as raw data" in error(from_values, "FP16", [1], [1.0], "x")
    assert "Invalid input shape" in error(from_raw, "FP32", [-1, 2], b"", "x")
    assert "fewer than 2^63 bytes (int64 overflow)" in error(from_raw, "FP32", [2**40, 2**40], b"", "x")
    assert "fewer than 2^63 bytes" in error(from_values, "FP64", [2**31, 2**30], [], "x"), "bytes, not elements"
    assert "at most 32 dimensions" in error(from_raw, "FP32", [1] * 33, b"\0" * 4, "x")
    assert "Could not parse input content" in error(from_values, "INT32", [1], ["seven"], "x")


def test_truncated_and_overlong_bytes_tensors_are_refused() -> None:
    raw = join_bytes(np.array([b"abc", b"de"], dtype=object))
    assert "Invalid content size" in error(from_raw, "BYTES", [2], raw[:-1], "s")
    assert "Invalid content size" in error(from_raw, "BYTES", [3], raw, "s")
    assert "Invalid content size" in error(from_raw, "BYTES", [1], raw, "s"), "bytes left over"
    # 2^40 elements announced in 8 bytes: refused at the second one, before 8 TiB of element slots are allocated
    assert "Expected: 1099511627776 length-prefixed elements; Actual: 1 elements in 8 bytes" in error(
        from_raw, "BYTES", [2**40], raw[:8], "s"
    )


def test_echoed_names_are_bounded() -> None:
    message = error(from_raw, "FP32", [1], b"", "n" * 20_000)
    assert len(message) < 400
