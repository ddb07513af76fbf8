"""Property-based tests (hypothesis) of every parser of client and operator input: TF Serving and KServe tensors, the
config loader, the REST bodies. The strategies and properties live in ``tests/support/fuzz.py``; here each runs with
the ``ci`` profile's example counts (a few seconds in all). ``OVMSCTL_FUZZ=long`` runs 50x more; ``benchmarks/fuzz.py``
runs them longer still and tabulates the outcomes.

The last tests reproduce bugs a property found in code being edited elsewhere (``KNOWN_BUGS``): strict xfails, so
whoever fixes one sees it pass, removes the marker and the entry in ``KNOWN_BUGS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as kpb
from ovmsd.api.grpc.proto import tensor_pb2, types_pb2
from ovmsd.api.grpc.tensors import TensorDecodeError, tensor_to_numpy
from ovmsd.api.kserve import codec
from ovmsd.api.rest import kserve as kserve_rest
from ovmsd.api.rest.http import Request
from ovmsd.config.loader import ConfigError, load_config
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.signature import Signature
from tests.support import fuzz


def _proto(dtype: int, dims: list[int], **fields: object) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)  # type: ignore[arg-type]
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@settings(max_examples=fuzz.examples(300))
@given(fuzz.tensor_protos())
@example(_proto(types_pb2.DT_FLOAT, [1, 3, 3500, 3500], float_val=[1.0]))  # the issue's 60-byte request
@example(_proto(types_pb2.DT_FLOAT, [2**62, 4], float_val=[1.0]))  # bytes past int64
@example(_proto(types_pb2.DT_STRING, [2**40], string_val=[b"x"]))  # one string for 2^40 elements
@example(_proto(types_pb2.DT_COMPLEX64, [0, 2**63 - 1], scomplex_val=[1.0, 2.0]))
@example(_proto(types_pb2.DT_INT8, [1] * 40))
def test_tensor_protos_decode_to_their_shape_or_a_decode_error(proto: tensor_pb2.TensorProto) -> None:
    fuzz.check_tensor(proto)


@given(fuzz.raw_tensors())
@example(("BYTES", [2**40], b"\0\0\0\0"))  # 2^40 elements announced in 4 bytes
@example(("FP32", [2**31, 2**31, 4], b""))
def test_kserve_raw_tensors_decode_and_round_trip_or_are_invalid_input(case: tuple[str, list[int], bytes]) -> None:
    fuzz.check_from_raw(*case)


@given(fuzz.typed_tensors())
@example(("UINT8", [2], [255, 256]))
@example(("FP32", [1], [float("nan")]))
def test_kserve_typed_contents_decode_or_are_invalid_input(case: tuple[str, list[int], list[object]]) -> None:
    fuzz.check_from_values(*case)


@given(fuzz.output_arrays())
def test_kserve_to_raw_and_from_raw_round_trip(array: np.ndarray) -> None:
    fuzz.check_raw_round_trip(array)


@given(fuzz.infer_requests())
def test_kserve_grpc_requests_decode_or_are_invalid_input(request: kpb.ModelInferRequest) -> None:
    fuzz.check_infer_request(request)


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@settings(max_examples=fuzz.examples(200))
@given(case=fuzz.config_texts())
@example(case=(".yaml", "model_config_list: []\nx: \x00\n"))  # a character YAML does not allow
@example(case=(".yaml", fuzz.YAML_TRICKS[3]))  # nested aliases
@example(case=(".json", "[" * 100_000))
def test_config_text_is_a_config_or_a_located_config_error(config_folder: Path, case: tuple[str, str]) -> None:
    fuzz.check_config_text(config_folder, *case)


@given(st.builds(fuzz.as_received, fuzz.tensor_values()), st.sampled_from(fuzz.NUMERIC_DTYPES))
@example([[[["a"]]]], np.dtype("f4"))
@example(fuzz.as_received([-1, 2**63]), np.dtype("i8"))
def test_json_tensor_values_are_arrays_of_the_dtype_or_invalid_input(value: object, dtype: np.dtype) -> None:
    fuzz.check_json_tensor(value, dtype)


def test_deeply_nested_json_strings_are_invalid_input() -> None:
    """A nesting orjson accepts (up to 1,024 levels) but no tensor has: refused, not a RecursionError (500)."""
    value: object = "a"
    for _ in range(1000):
        value = [value]
    assert fuzz.check_json_tensor(value, np.dtype("f4")).count("refused") == 2


@given(fuzz.kserve_rest_bodies())
def test_kserve_rest_bodies_decode_or_are_invalid_input(case: tuple[dict[str, str], bytes]) -> None:
    fuzz.check_kserve_rest(*case)


@given(fuzz.tfs_rest_bodies(), fuzz.signatures())
def test_tfs_rest_rows_and_columns_decode_or_are_invalid_input(body: dict[str, object], signature: Signature) -> None:
    fuzz.check_tfs_rest(fuzz.as_received(body), signature)


# -- bugs found in code being edited elsewhere (tests/support/fuzz.py KNOWN_BUGS) ------------------------------------


def _kserve_rest_error(headers: dict[str, str], document: dict[str, object]) -> ServingError:
    import json

    body = json.dumps(document).encode()
    with pytest.raises(ServingError) as caught:
        _, binary = kserve_rest._split_body(Request("POST", "/v2/models/m/infer", headers, body))
        kserve_rest._decode_inputs(document.get("inputs"), binary, "m")
        kserve_rest._requested_outputs(document)
    return caught.value


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": [1]}]},
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": "x"},
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": 5},
        {"inputs": [], "outputs": [{"name": "y", "parameters": [True]}]},
    ],
)
def test_kserve_rest_malformed_parameters_and_outputs_are_invalid_input(document: dict[str, object]) -> None:
    assert _kserve_rest_error({}, document).kind == ErrorKind.INVALID_INPUT


def test_kserve_rest_header_length_of_unicode_digits_is_invalid_input() -> None:
    headers = {kserve_rest.HEADER_LENGTH: "²"}
    assert _kserve_rest_error(headers, {"inputs": []}).kind == ErrorKind.INVALID_INPUT


def test_a_yaml_config_with_a_control_character_is_a_config_error_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_config_list: []\nx: \x01\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.issues[0].line, caught.value.issues[0].column) == (2, 4)


@pytest.mark.parametrize("batch", ["0.5", "1e400"])
def test_a_fractional_batch_size_is_a_config_error_at_the_value(tmp_path: Path, batch: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        f'{{"model_config_list": [{{"config": {{"name": "a", "base_path": "/m", "batch_size": {batch}}}}}]}}'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.issues[0].pointer == "/model_config_list/0/config/batch_size"


@pytest.mark.parametrize("decoder", ["tensor_to_numpy", "from_raw"])
def test_a_zero_dim_beside_dims_overflowing_int64_is_a_decode_error(decoder: str) -> None:
    """(0, 2**62) has no element, but numpy refuses it: ValueError "array is too big" (INTERNAL, 500)."""
    if decoder == "tensor_to_numpy":
        with pytest.raises(TensorDecodeError):
            tensor_to_numpy(_proto(types_pb2.DT_FLOAT, [0, 2**62]))
    else:
        with pytest.raises(ServingError):
            codec.from_raw("FP32", [0, 2**62], b"", "x")
