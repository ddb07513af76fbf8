"""The serving core against a real daemon process: predict, metadata, status, and every bad-request error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ovmsd.api.grpc.proto import get_model_metadata_pb2, types_pb2
from ovmsd.serving.states import State
from tests.support.daemon import Daemon, predict_request, rpc_error, write_config
from tests.support.models import conv_model, reference_outputs, save, save_onnx_resnet, scale_model, two_input_model


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save(scale_model([1, 4]), root / "scale", 1)
    save(two_input_model([1, 3], [1, 2]), root / "pair", 1)
    save(scale_model([-1, 4], factor=3.0), root / "dynamic", 1)
    save(scale_model([1, 4], dtype=np.int32, factor=2), root / "ints", 1)
    save_onnx_resnet(root / "resnet")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    return root


@pytest.fixture(scope="module")
def daemon(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    logs = tmp_path_factory.mktemp("logs")
    config = write_config(
        logs / "config.json",
        [
            {"name": "scale", "base_path": str(repo / "scale")},
            {"name": "pair", "base_path": str(repo / "pair")},
            {"name": "dynamic", "base_path": str(repo / "dynamic")},
            {"name": "ints", "base_path": str(repo / "ints")},
            {"name": "resnet", "base_path": str(repo / "resnet"), "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}},
            {"name": "broken", "base_path": str(repo / "broken")},
        ],
    )
    with Daemon(["--config", str(config)], logs / "daemon.log") as d:
        d.wait_available("scale", "pair", "dynamic", "ints", "resnet")
        yield d
        assert d.stop() == 0, d.log()


def test_predict_returns_exact_outputs_and_names_the_serving_version(daemon: Daemon) -> None:
    x = np.array([[1.5, -2.0, 0.0, 7.25]], dtype=np.float32)
    response = daemon.predict_raw("scale", {"x": x})
    assert response.model_spec.name == "scale"
    assert response.model_spec.version.value == 1
    assert response.outputs["y"].tensor_content, "responses carry tensor_content"
    np.testing.assert_array_equal(daemon.predict("scale", {"x": x})["y"], x * 2)


def test_typed_value_fields_are_accepted(daemon: Daemon) -> None:
    request = predict_request("scale", {})
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 4
    tensor.float_val.extend([1.0, 2.0, 3.0, 4.0])
    from ovmsd.api.grpc.tensors import tensor_to_numpy

    out = tensor_to_numpy(daemon.prediction.Predict(request, timeout=10).outputs["y"])
    np.testing.assert_array_equal(out, [[2.0, 4.0, 6.0, 8.0]])


def test_integer_model(daemon: Daemon) -> None:
    x = np.array([[1, -2, 3, 40000]], dtype=np.int32)
    np.testing.assert_array_equal(daemon.predict("ints", {"x": x})["y"], x * 2)


def test_two_inputs(daemon: Daemon) -> None:
    out = daemon.predict("pair", {"a": np.ones((1, 3), np.float32), "b": np.full((1, 2), 2.0, np.float32)})
    np.testing.assert_array_equal(out["sum"], [[7.0]])


def test_native_dynamic_batch_serves_any_batch_without_reload(daemon: Daemon) -> None:
    for batch in (1, 5, 2):
        x = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
        np.testing.assert_array_equal(daemon.predict("dynamic", {"x": x})["y"], x * 3)


def test_real_classifier_matches_in_process_openvino(daemon: Daemon, repo: Path) -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        image = rng.random((1, 3, 224, 224), dtype=np.float32)
        served = daemon.predict("resnet", {"gpu_0/data_0": image})["gpu_0/softmax_1"]
        expected = reference_outputs(repo / "resnet/1/model.onnx", {"gpu_0/data_0": image})["gpu_0/softmax_1"]
        assert served.shape == (1, 1000)
        assert served.argmax() == expected.argmax()
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)


def test_metadata_is_a_signature_def_map(daemon: Daemon) -> None:
    response = daemon.metadata("dynamic")
    assert response.model_spec.name == "dynamic"
    assert response.model_spec.version.value == 1
    any_message = response.metadata["signature_def"]
    assert any_message.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert any_message.Unpack(signature_map)
    definition = signature_map.signature_def["serving_default"]
    assert definition.method_name == "tensorflow/serving/predict"
    x = definition.inputs["x"]
    assert (x.name, x.dtype, [d.size for d in x.tensor_shape.dim]) == ("x", types_pb2.DT_FLOAT, [-1, 4])
    y = definition.outputs["y"]
    assert (y.dtype, [d.size for d in y.tensor_shape.dim]) == (types_pb2.DT_FLOAT, [-1, 4])


def test_status_lists_versions_with_states(daemon: Daemon) -> None:
    response = daemon.status("scale")
    [entry] = response.model_version_status
    assert (entry.version, entry.state, entry.status.error_code, entry.status.error_message) == (
        1,
        State.AVAILABLE,
        0,
        "OK",
    )


def test_broken_version_is_reported_and_does_not_stop_the_others(daemon: Daemon) -> None:
    [entry] = daemon.status("broken").model_version_status
    assert entry.state == State.LOADING
    assert entry.status.error_code == 2  # UNKNOWN, as OVMS reports load failures
    assert entry.status.error_message and entry.status.error_message != "OK"
    error = rpc_error(lambda: daemon.predict("broken", {"x": np.ones((1, 4), np.float32)}))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.predict("scale", {"x": np.ones((1, 4), np.float32)})["y"].sum() == 8


X = np.ones((1, 4), np.float32)

BAD_REQUESTS = [
    (
        "unknown model",
        "nope",
        {"x": X},
        None,
        grpc.StatusCode.NOT_FOUND,
        "Model with requested name is not found - name: nope",
    ),
    (
        "unknown version",
        "scale",
        {"x": X},
        7,
        grpc.StatusCode.NOT_FOUND,
        "Model with requested version is not found - name: scale; version: 7",
    ),
    ("empty request", "scale", {}, None, grpc.StatusCode.INVALID_ARGUMENT, "Invalid number of inputs"),
    (
        "wrong input name",
        "scale",
        {"nope": X},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unexpected input tensor passed",
    ),
    (
        "missing input",
        "pair",
        {"a": np.ones((1, 3), np.float32)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing input with specific name - Expected: b",
    ),
    (
        "extra input",
        "scale",
        {"x": X, "z": X},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unexpected input tensor passed",
    ),
    (
        "wrong dtype",
        "scale",
        {"x": X.astype(np.int64)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid input precision - Expected: FP32; Actual: I64; input name: x",
    ),
    (
        "wrong rank",
        "scale",
        {"x": np.ones((1, 4, 1), np.float32)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid number of shape dimensions - Expected: (1,4); Actual: (1,4,1); input name: x",
    ),
    (
        "wrong batch",
        "scale",
        {"x": np.ones((8, 4), np.float32)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid input batch size - Expected: 1; Actual: 8; input name: x",
    ),
    (
        "wrong shape",
        "scale",
        {"x": np.ones((1, 5), np.float32)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid input shape - Expected: (1,4); Actual: (1,5); input name: x",
    ),
    (
        "zero dimension",
        "dynamic",
        {"x": np.ones((0, 4), np.float32)},
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid input shape",
    ),
]


@pytest.mark.parametrize(("case", "model", "inputs", "version", "code", "message"), BAD_REQUESTS, ids=lambda v: v)
def test_bad_requests_get_precise_errors_and_the_daemon_keeps_serving(
    daemon: Daemon,
    case: str,
    model: str,
    inputs: dict[str, np.ndarray],
    version: int | None,
    code: grpc.StatusCode,
    message: str,
) -> None:
    error = rpc_error(lambda: daemon.predict(model, inputs, version))
    assert error.code() == code, (case, error.details())
    assert message in error.details(), (case, error.details())
    np.testing.assert_array_equal(daemon.predict("scale", {"x": X})["y"], X * 2)


def test_content_size_not_matching_shape_is_invalid_argument(daemon: Daemon) -> None:
    request = predict_request("scale", {"x": X})
    request.inputs["x"].tensor_content = request.inputs["x"].tensor_content[:-4]
    error = rpc_error(lambda: daemon.prediction.Predict(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes; input name: x" in error.details()
    )


def test_string_inputs_are_rejected_clearly(daemon: Daemon) -> None:
    """A string tensor to a numeric input that cannot take images (rank 2): OVMS's precision message."""
    request = predict_request("scale", {})
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add().size = 1
    tensor.string_val.append(b"hello")
    error = rpc_error(lambda: daemon.prediction.Predict(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input precision - Expected: FP32; Actual: STRING; input name: x"


def test_status_and_metadata_errors(daemon: Daemon) -> None:
    assert rpc_error(lambda: daemon.status("nope")).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: daemon.status("scale", 3)).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: daemon.metadata("nope")).code() == grpc.StatusCode.NOT_FOUND
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "scale"
    request.metadata_field.append("graph")
    error = rpc_error(lambda: daemon.prediction.GetModelMetadata(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_message_is_resource_exhausted(repo: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", [{"name": "conv", "base_path": str(repo / "scale")}])
    with Daemon(["--config", str(config), "--max-message-bytes", "2000"], tmp_path / "d.log") as d:
        d.wait_available("conv")
        error = rpc_error(lambda: d.predict("conv", {"x": np.ones((1, 4000), np.float32)}))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert d.predict("conv", {"x": X})["y"].sum() == 8
        assert d.stop() == 0


def test_conv_model_with_fixed_configured_shape(repo: Path, tmp_path: Path) -> None:
    save(conv_model(size=8), tmp_path / "conv", 1)
    config = write_config(
        tmp_path / "config.json", [{"name": "conv", "base_path": str(tmp_path / "conv"), "shape": "(1,3,12,10)"}]
    )
    with Daemon(["--config", str(config)], tmp_path / "d.log") as d:
        d.wait_available("conv")
        assert d.predict("conv", {"data": np.ones((1, 3, 12, 10), np.float32)})["out"].shape == (1, 1, 12, 10)
        error = rpc_error(lambda: d.predict("conv", {"data": np.ones((1, 3, 8, 8), np.float32)}))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Invalid input shape - Expected: (1,3,12,10); Actual: (1,3,8,8); input name: data" in error.details()
        assert d.stop() == 0
