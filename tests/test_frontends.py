"""Every front end on one daemon: TF Serving gRPC, KServe v2 gRPC, KServe v2 REST and TF Serving REST.

Real clients (tritonclient gRPC and HTTP in their virtualenv, curl, plain HTTP), the same models, versions, reshape
behaviour and errors on each, outputs compared numerically with the same request over TF Serving gRPC.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as pb_grpc
from tests.support.daemon import Daemon, free_port, rpc_error, write_config
from tests.support.models import conv_model, named, save, scale_model, two_input_model
from tests.support.rest import HEADER_LENGTH, Rest, kserve_binary_body, kserve_json_input, kserve_outputs
from tests.support.triton import TritonClient, output_array, tensor
from tests.test_serving import BAD_REQUESTS

X = np.array([[1.5, -2.0, 0.0, 7.25]], dtype=np.float32)


def two_output_model() -> ov.Model:
    """``x [-1,4]`` -> ``y = x * 2`` and ``z = x + 1``."""
    x = named(ops.parameter([-1, 4], np.float32, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.float32(2))), "y")
    z = named(ops.add(x, ops.constant(np.float32(1))), "z")
    return ov.Model([y, z], [x], "two_outputs")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frontends")
    save(scale_model([1, 4]), root / "scale", 1)
    save(scale_model([1, 4], factor=3.0), root / "scale", 2)
    save(two_input_model([1, 3], [1, 2]), root / "pair", 1)
    save(scale_model([-1, 4], factor=3.0), root / "dynamic", 1)
    save(scale_model([1, 4], dtype=np.int32, factor=2), root / "ints", 1)
    save(two_output_model(), root / "outputs", 1)
    save(scale_model([1, 4]), root / "auto_batch", 1)
    save(conv_model(size=16), root / "detector", 1)
    return root


@pytest.fixture(scope="module")
def daemon(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    logs = tmp_path_factory.mktemp("frontends-logs")
    config = write_config(
        logs / "config.json",
        [
            {"name": "scale", "base_path": str(repo / "scale"), "model_version_policy": {"all": {}}},
            {"name": "pair", "base_path": str(repo / "pair")},
            {"name": "dynamic", "base_path": str(repo / "dynamic")},
            {"name": "ints", "base_path": str(repo / "ints")},
            {"name": "outputs", "base_path": str(repo / "outputs")},
            {"name": "auto_batch", "base_path": str(repo / "auto_batch"), "batch_size": "auto"},
            {"name": "detector", "base_path": str(repo / "detector"), "shape": "auto"},
        ],
    )
    rest_port = free_port()
    args = ["--config", str(config), "--rest_port", str(rest_port), "--metrics-enable"]
    with Daemon(args, logs / "daemon.log") as d:
        d.rest_port = rest_port  # type: ignore[attr-defined]
        d.wait_available("scale", "pair", "dynamic", "ints", "outputs", "auto_batch", "detector")
        yield d
        assert d.stop() == 0, d.log()


@pytest.fixture(scope="module")
def rest(daemon: Daemon) -> Iterator[Rest]:
    client = Rest(daemon.rest_port)  # type: ignore[attr-defined]
    yield client
    client.close()


@pytest.fixture(scope="module")
def kserve(daemon: Daemon) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(daemon.channel)


def rest_url(daemon: Daemon) -> str:
    return f"127.0.0.1:{daemon.rest_port}"  # type: ignore[attr-defined]


# --- tritonclient over gRPC and HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_tritonclient_health_metadata_and_infer(daemon: Daemon, protocol: str) -> None:
    client = TritonClient(protocol, daemon.address if protocol == "grpc" else rest_url(daemon))
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    commands = [
        client.command("is_server_live"),
        client.command("is_server_ready"),
        client.command("is_model_ready", model="scale"),
        client.command("is_model_ready", model="scale", version="1"),
        client.command("get_server_metadata"),
        client.command("get_model_metadata", model="scale"),
        client.command("get_model_metadata", model="dynamic", version="1"),
        client.command("infer", model="dynamic", inputs=[tensor("x", batch)], id="req-7"),
        client.command("infer", model="scale", version="1", inputs=[tensor("x", X)]),
        client.command("infer", model="outputs", inputs=[tensor("x", batch)], outputs=["z"]),
        client.command("async_infer", model="dynamic", inputs=[tensor("x", batch)], count=4),
        client.command("is_model_ready", model="nope"),
    ]
    if protocol == "http":
        commands.append(client.command("infer", model="dynamic", inputs=[tensor("x", batch)], binary_data=False))
    results = client.run(*commands)
    live, ready, model_ready, version_ready, server, meta, meta_v1, infer, v1, selected, many, unknown = results[:12]
    assert live == ready == model_ready == version_ready == {"result": True}
    assert server["result"]["name"] == "ovmsctl" and "binary_tensor_data" in server["result"]["extensions"]
    assert meta["result"]["name"] == "scale" and meta["result"]["versions"] == ["1", "2"]
    assert meta["result"]["platform"] == "OpenVINO"
    [x_meta] = meta["result"]["inputs"]
    assert x_meta["name"] == "x" and x_meta["datatype"] == "FP32" and [int(d) for d in x_meta["shape"]] == [1, 4]
    assert [int(d) for d in meta_v1["result"]["inputs"][0]["shape"]] == [-1, 4]
    expected = daemon.predict("dynamic", {"x": batch})["y"]
    assert infer["result"]["model_version"] == "1" and infer["result"]["id"] == "req-7"
    np.testing.assert_array_equal(output_array(infer["result"]["outputs"]["y"]), expected)
    assert v1["result"]["model_version"] == "1"
    np.testing.assert_array_equal(output_array(v1["result"]["outputs"]["y"]), X * 2)
    assert list(selected["result"]["outputs"]) == ["z"]
    np.testing.assert_array_equal(output_array(selected["result"]["outputs"]["z"]), batch + 1)
    assert len(many["result"]) == 4
    for answer in many["result"]:
        np.testing.assert_array_equal(output_array(answer["outputs"]["y"]), expected)
    # gRPC answers NOT_FOUND; tritonclient's HTTP client turns any non-200 answer into False
    assert unknown == ({"result": False} if protocol == "http" else unknown | {"status": "NOT_FOUND"}), unknown
    if protocol == "http":
        [as_json] = results[12:]
        np.testing.assert_array_equal(output_array(as_json["result"]["outputs"]["y"]), expected)
    else:
        assert infer["result"]["raw_output_contents"] == 1, "outputs travel in raw_output_contents, as OVMS answers"


def test_tritonclient_stream_answers_in_order_and_goes_on_after_an_error(daemon: Daemon) -> None:
    client = TritonClient("grpc", daemon.address)
    good = {"inputs": [tensor("x", X)]}
    bad = {"model": "nope", "inputs": [tensor("x", X)]}
    [result] = client.run(client.command("stream_infer", model="scale", version="1", requests=[good, bad, good]))
    assert "result" in result, result
    first, failed, third = result["result"]
    np.testing.assert_array_equal(output_array(first["outputs"]["y"]), X * 2)
    assert "Model with requested name is not found - name: nope" in failed["error"]
    np.testing.assert_array_equal(output_array(third["outputs"]["y"]), X * 2)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_auto_batch_and_auto_shape_through_tritonclient(daemon: Daemon, protocol: str) -> None:
    """The seeds' flows: batch 1 then 8 on ``batch_size: auto``, 500x500 then 600x400 on ``shape: auto``."""
    client = TritonClient(protocol, daemon.address if protocol == "grpc" else rest_url(daemon))
    one, eight = np.ones((1, 4), np.float32), np.arange(32, dtype=np.float32).reshape(8, 4)
    square = np.random.default_rng(1).standard_normal((1, 3, 500, 500)).astype(np.float32)
    wide = np.random.default_rng(2).standard_normal((1, 3, 600, 400)).astype(np.float32)
    results = client.run(
        client.command("infer", model="auto_batch", inputs=[tensor("x", one)]),
        client.command("infer", model="auto_batch", inputs=[tensor("x", eight)]),
        client.command("infer", model="detector", inputs=[tensor("data", square)]),
        client.command("infer", model="detector", inputs=[tensor("data", wide)]),
    )
    assert all("result" in r for r in results), results
    np.testing.assert_array_equal(output_array(results[0]["result"]["outputs"]["y"]), one * 2)
    np.testing.assert_array_equal(output_array(results[1]["result"]["outputs"]["y"]), eight * 2)
    for result, image in ((results[2], square), (results[3], wide)):
        served = output_array(result["result"]["outputs"]["out"])
        assert served.shape == (1, 1, *image.shape[2:])
        np.testing.assert_allclose(served, daemon.predict("detector", {"data": image})["out"], rtol=1e-5, atol=1e-5)


# --- KServe gRPC on our stubs: contents, raw contents, both ----------------------------------------------------------


def test_kserve_grpc_typed_contents_and_raw_contents_agree(kserve: pb_grpc.GRPCInferenceServiceStub) -> None:
    typed = pb.ModelInferRequest(model_name="ints", model_version="1")
    typed.inputs.add(name="x", datatype="INT32", shape=[1, 4]).contents.int_contents.extend([1, -2, 3, 4])
    raw = pb.ModelInferRequest(model_name="ints")
    raw.inputs.add(name="x", datatype="INT32", shape=[1, 4])
    raw.raw_input_contents.append(np.array([1, -2, 3, 4], np.int32).tobytes())
    for request in (typed, raw):
        response = kserve.ModelInfer(request, timeout=30)
        [output] = response.outputs
        assert (output.name, output.datatype, list(output.shape)) == ("y", "INT32", [1, 4])
        assert not output.HasField("contents")
        assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [2, -4, 6, 8]


def test_kserve_grpc_refuses_contents_and_raw_contents_together(kserve: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="scale", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])
    request.raw_input_contents.append(X.tobytes())
    error = rpc_error(lambda: kserve.ModelInfer(request, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Passing buffers both in InferInputTensor contents and in raw_input_contents is not allowed" in (
        error.details()
    )


def test_kserve_grpc_fp16_is_raw_only_and_bytes_are_length_prefixed(kserve: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="scale", model_version="1")
    request.inputs.add(name="x", datatype="FP16", shape=[1, 4])
    error = rpc_error(lambda: kserve.ModelInfer(request, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP16 is accepted only as raw data" in error.details()
    truncated = pb.ModelInferRequest(model_name="scale", model_version="1")
    truncated.inputs.add(name="x", datatype="BYTES", shape=[2])
    truncated.raw_input_contents.append(b"\x05\x00\x00\x00abc")
    error = rpc_error(lambda: kserve.ModelInfer(truncated, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "element 0 of 5 bytes" in error.details() and "input name: x" in error.details()


# --- TF Serving REST -----------------------------------------------------------------------------------------------


def test_tfs_rest_status_and_metadata_match_grpc(daemon: Daemon, rest: Rest) -> None:
    status = rest.get("/v1/models/scale")
    assert status.status == 200
    assert status.json()["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}},
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}},
    ]
    assert [s["version"] for s in rest.get("/v1/models/scale/versions/1").json()["model_version_status"]] == ["1"]
    metadata = rest.get("/v1/models/scale/versions/1/metadata").json()
    assert metadata["model_spec"] == {"name": "scale", "version": "1", "signature_name": ""}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [int(d["size"]) for d in signature["inputs"]["x"]["tensor_shape"]["dim"]] == [1, 4]
    assert rest.get("/v1/models/scale/metadata").json()["model_spec"]["version"] == "2"  # the default version


def test_tfs_rest_row_and_column_formats(daemon: Daemon, rest: Rest) -> None:
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = daemon.predict("dynamic", {"x": batch})["y"]
    rows = rest.post_json("/v1/models/dynamic:predict", {"instances": batch.tolist()})
    assert rows.status == 200, rows.body
    np.testing.assert_array_equal(np.asarray(rows.json()["predictions"], np.float32), expected)
    named_rows = rest.post_json(
        "/v1/models/dynamic/versions/1:predict", {"instances": [{"x": r} for r in batch.tolist()]}
    )
    np.testing.assert_array_equal(np.asarray(named_rows.json()["predictions"], np.float32), expected)
    columns = rest.post_json("/v1/models/dynamic:predict", {"inputs": {"x": batch.tolist()}})
    np.testing.assert_array_equal(np.asarray(columns.json()["outputs"], np.float32), expected)
    # several outputs: an object per row (row format), an object of tensors (column format)
    both = rest.post_json("/v1/models/outputs:predict", {"instances": batch.tolist()}).json()["predictions"]
    assert [sorted(row) for row in both] == [["y", "z"]] * 3
    np.testing.assert_array_equal(np.asarray([row["z"] for row in both], np.float32), batch + 1)
    columns = rest.post_json("/v1/models/outputs:predict", {"inputs": batch.tolist()}).json()["outputs"]
    np.testing.assert_array_equal(np.asarray(columns["y"], np.float32), batch * 2)
    pair = rest.post_json("/v1/models/pair:predict", {"instances": [{"a": [1, 2, 3], "b": [4, 5]}]})
    assert pair.json() == {"predictions": [[15.0]]}
    ints = rest.post_json("/v1/models/ints:predict", {"inputs": [[1, 2, 3, 4]]})
    assert ints.json() == {"outputs": [[2, 4, 6, 8]]}


def test_tfs_rest_auto_batch_and_auto_shape(daemon: Daemon, rest: Rest) -> None:
    for batch in (1, 8):
        x = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
        reply = rest.post_json("/v1/models/auto_batch:predict", {"instances": x.tolist()})
        assert reply.status == 200, reply.body
        np.testing.assert_array_equal(np.asarray(reply.json()["predictions"], np.float32), x * 2)
    for height, width in ((500, 500), (600, 400)):
        image = np.random.default_rng(height).standard_normal((1, 3, height, width)).astype(np.float32)
        reply = rest.post_json("/v1/models/detector:predict", {"inputs": image.tolist()})
        assert reply.status == 200, reply.body[:300]
        served = np.asarray(reply.json()["outputs"], np.float32)
        np.testing.assert_allclose(served, daemon.predict("detector", {"data": image})["out"], rtol=1e-5, atol=1e-4)


def test_tfs_rest_b64_values_reach_the_model_as_bytes(rest: Rest) -> None:
    """b64 bytes to a numeric input are a string tensor: refused precisely (binary images are their own issue)."""
    value = {"b64": base64.b64encode(b"\x00\x01\x02").decode()}
    reply = rest.post_json("/v1/models/scale/versions/1:predict", {"instances": [value]})
    assert reply.status == 400 and "input name: x" in reply.error, reply.body
    broken = rest.post_json("/v1/models/scale/versions/1:predict", {"instances": [{"b64": "not base64!"}]})
    assert broken.status == 400 and "Invalid base64 data" in broken.error


def test_tfs_rest_config_and_reload(daemon: Daemon, rest: Rest) -> None:
    config = rest.get("/v1/config")
    assert config.status == 200
    assert {"scale", "pair", "detector"} <= set(config.json())
    reload = rest.request("POST", "/v1/config/reload")
    assert reload.status == 200, reload.body  # nothing changed
    assert reload.json()["scale"]["model_version_status"][0]["state"] == "AVAILABLE"


def test_curl_reaches_every_rest_endpoint(daemon: Daemon) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    base = f"http://{rest_url(daemon)}"
    cases = [
        (["-X", "GET"], "/v2/health/live", 200),
        (["-X", "GET"], "/v2/health/ready", 200),
        (["-X", "GET"], "/v2", 200),
        (["-X", "GET"], "/v2/models/scale", 200),
        (["-X", "GET"], "/v2/models/scale/versions/1/ready", 200),
        (["-d", json.dumps({"inputs": [kserve_json_input("x", X)]})], "/v2/models/scale/versions/1/infer", 200),
        (["-X", "GET"], "/v1/models/scale", 200),
        (["-X", "GET"], "/v1/models/scale/metadata", 200),
        (["-d", json.dumps({"instances": X.tolist()})], "/v1/models/scale/versions/1:predict", 200),
        (["-X", "GET"], "/v1/config", 200),
        (["-X", "GET"], "/metrics", 200),
        (["-X", "GET"], "/v2/models/nope/ready", 404),
    ]
    for options, path, status in cases:
        done = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", *options, base + path],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout == str(status), (path, done.stdout, done.stderr)


# --- KServe REST details -------------------------------------------------------------------------------------------


def test_kserve_rest_binary_inputs_and_outputs(daemon: Daemon, rest: Rest) -> None:
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, headers = kserve_binary_body({"x": batch}, outputs=["y", "z"])
    reply = rest.request("POST", "/v2/models/outputs/infer", body, headers)
    assert reply.status == 200, reply.body[:300]
    assert int(reply.headers[HEADER_LENGTH.lower()]) < len(reply.body)
    assert reply.headers["content-type"] == "application/octet-stream"
    outputs = kserve_outputs(reply)
    np.testing.assert_array_equal(outputs["y"], batch * 2)
    np.testing.assert_array_equal(outputs["z"], batch + 1)
    body, headers = kserve_binary_body({"x": batch}, outputs=["z"], binary_outputs=False)
    reply = rest.request("POST", "/v2/models/outputs/infer", body, headers)
    assert HEADER_LENGTH.lower() not in reply.headers and reply.headers["content-type"] == "application/json"
    assert list(kserve_outputs(reply)) == ["z"]


@pytest.mark.parametrize(
    ("case", "mangle", "message"),
    [
        ("truncated binary body", lambda b, h: (b[:-3], h), "Invalid binary data - Expected: 16 bytes"),
        ("header length past the body", lambda b, h: (b, {**h, HEADER_LENGTH: str(len(b) + 10)}), "at most the body"),
        ("extra bytes", lambda b, h: (b + b"\0" * 4, h), "Invalid binary data - Expected: 16 bytes after the header"),
        ("header not a number", lambda b, h: (b, {**h, HEADER_LENGTH: "12x"}), "Expected: a byte count"),
        (
            "header cut in the JSON",
            lambda b, h: (b, {**h, HEADER_LENGTH: "10"}),
            "Invalid JSON in the inference header",
        ),
    ],
)
def test_kserve_rest_malformed_binary_requests(rest: Rest, case: str, mangle: Any, message: str) -> None:
    body, headers = mangle(*kserve_binary_body({"x": X}))
    reply = rest.request("POST", "/v2/models/scale/versions/1/infer", body, headers)
    assert reply.status == 400, (case, reply.body)
    assert message in reply.error, (case, reply.error)
    assert rest.get("/v2/models/scale/ready").status == 200


def test_json_nesting_that_is_not_a_tensor(rest: Rest) -> None:
    ragged = rest.post_json("/v1/models/dynamic:predict", {"instances": [[1, 2, 3, 4], [1, 2]]})
    assert ragged.status == 400 and "input name: x" in ragged.error and "Invalid input shape" in ragged.error
    wrong_count = rest.post_json(
        "/v2/models/scale/versions/1/infer",
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2], [3]]}]},
    )
    assert wrong_count.status == 400 and "input name: x" in wrong_count.error
    nested_ok = rest.post_json(
        "/v2/models/scale/versions/1/infer",
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2, 3, 4]]}]},
    )
    assert nested_ok.status == 200 and nested_ok.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    floats_to_ints = rest.post_json("/v1/models/ints:predict", {"inputs": [[1.5, 2, 3, 4]]})
    assert floats_to_ints.status == 400 and "Invalid input precision" in floats_to_ints.error
    out_of_range = rest.post_json("/v1/models/ints:predict", {"inputs": [[2**40, 2, 3, 4]]})
    assert out_of_range.status == 400 and "Invalid input value" in out_of_range.error


def test_request_bodies_over_the_limit_get_413_and_the_daemon_keeps_serving(repo: Path, tmp_path: Path) -> None:
    rest_port = free_port()
    config = write_config(tmp_path / "config.json", [{"name": "dynamic", "base_path": str(repo / "dynamic")}])
    args = ["--config", str(config), "--rest_port", str(rest_port), "--max-message-bytes", "4096"]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("dynamic")
        client = Rest(rest_port)
        big = np.zeros((400, 4), np.float32)
        body, headers = kserve_binary_body({"x": big})
        reply = client.request("POST", "/v2/models/dynamic/infer", body, headers)
        assert reply.status == 413
        assert "Request body too large - Expected: at most 4096 bytes" in reply.error
        assert reply.headers.get("connection") == "close"
        body, headers = kserve_binary_body({"x": big[:10]})
        assert client.request("POST", "/v2/models/dynamic/infer", body, headers).status == 200
        client.close()
        assert daemon.stop() == 0


# --- every TF Serving gRPC error case on every front end ------------------------------------------------------------

HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.UNAVAILABLE: 503,
}
JSON_HAS_NO_PRECISION = {"wrong dtype"}  # TF Serving REST takes the model's precision: nothing to get wrong
NO_JSON_FORM = {"zero dimension", "empty request"}  # a [0,4] tensor or no inputs cannot be written as TFS JSON


def kserve_grpc_request(model: str, inputs: dict[str, np.ndarray], version: int | None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=str(version or ""))
    for name, array in inputs.items():
        datatype = {"float32": "FP32", "int64": "INT64", "int32": "INT32"}[str(array.dtype)]
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request


def version_path(version: int | None) -> str:
    return f"/versions/{version}" if version is not None else ""


@pytest.mark.parametrize(("case", "model", "inputs", "version", "code", "message"), BAD_REQUESTS, ids=lambda v: v)
def test_every_grpc_error_case_on_every_front_end(
    daemon: Daemon,
    kserve: pb_grpc.GRPCInferenceServiceStub,
    rest: Rest,
    case: str,
    model: str,
    inputs: dict[str, np.ndarray],
    version: int | None,
    code: grpc.StatusCode,
    message: str,
) -> None:
    error = rpc_error(lambda: kserve.ModelInfer(kserve_grpc_request(model, inputs, version), timeout=30))
    assert (error.code(), message in error.details()) == (code, True), ("KServe gRPC", case, error.details())

    body, headers = kserve_binary_body(inputs)
    reply = rest.request("POST", f"/v2/models/{model}{version_path(version)}/infer", body, headers)
    assert (reply.status, message in reply.error) == (HTTP_STATUS[code], True), ("KServe REST", case, reply.body)
    as_json = rest.post_json(
        f"/v2/models/{model}{version_path(version)}/infer",
        {"inputs": [kserve_json_input(name, array) for name, array in inputs.items()]},
    )
    assert (as_json.status, message in as_json.error) == (HTTP_STATUS[code], True), ("KServe JSON", case, as_json.body)

    if case not in JSON_HAS_NO_PRECISION | NO_JSON_FORM:
        columns = {name: array.tolist() for name, array in inputs.items()}
        reply = rest.post_json(f"/v1/models/{model}{version_path(version)}:predict", {"inputs": columns})
        assert (reply.status, message in reply.error) == (HTTP_STATUS[code], True), ("TFS REST", case, reply.body)
    np.testing.assert_array_equal(daemon.predict("dynamic", {"x": X})["y"], X * 3)


def test_metadata_and_ready_errors_on_every_front_end(kserve: pb_grpc.GRPCInferenceServiceStub, rest: Rest) -> None:
    for call in (
        lambda: kserve.ModelMetadata(pb.ModelMetadataRequest(name="nope"), timeout=10),
        lambda: kserve.ModelReady(pb.ModelReadyRequest(name="scale", version="7"), timeout=10),
    ):
        assert rpc_error(call).code() == grpc.StatusCode.NOT_FOUND
    bad_version = rpc_error(lambda: kserve.ModelMetadata(pb.ModelMetadataRequest(name="scale", version="x")))
    assert bad_version.code() == grpc.StatusCode.INVALID_ARGUMENT and "Invalid model version" in bad_version.details()
    for path in ("/v2/models/nope", "/v2/models/scale/versions/7", "/v1/models/nope", "/v1/models/scale/versions/7"):
        reply = rest.get(path)
        assert reply.status == 404 and "not found" in reply.error, (path, reply.body)
    assert rest.get("/v1/models/scale/versions/x").status == 400
    assert rest.request("DELETE", "/v2/models/scale").status == 405
    assert rest.post_json("/v1/models/scale:predict", {"nothing": 1}).status == 400
    assert rest.request("POST", "/v1/models/scale:predict", b"{not json").status == 400


# --- metrics per front end -----------------------------------------------------------------------------------------


def test_metrics_carry_api_and_interface_labels(
    daemon: Daemon, rest: Rest, kserve: pb_grpc.GRPCInferenceServiceStub
) -> None:
    kserve.ModelInfer(kserve_grpc_request("dynamic", {"x": X}, None), timeout=30)
    rest.post_json("/v2/models/dynamic/infer", {"inputs": [kserve_json_input("x", X)]})
    rest.post_json("/v1/models/dynamic:predict", {"instances": X.tolist()})
    rest.get("/v2/models/dynamic/ready")
    page = rest.get("/metrics").body.decode()
    for api, interface, method in (
        ("KServe", "gRPC", "ModelInfer"),
        ("KServe", "REST", "ModelInfer"),
        ("TensorFlowServing", "REST", "Predict"),
        ("KServe", "REST", "ModelReady"),
    ):
        label = f'api="{api}",interface="{interface}",method="{method}",name="dynamic"'
        assert any(line.startswith("ovms_requests_success") and label in line for line in page.splitlines()), label
    assert 'name="nope"' not in page


# --- connections ---------------------------------------------------------------------------------------------------


def daemon_threads(daemon: Daemon) -> int:
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_many_idle_rest_connections_cost_no_threads_and_block_no_one(daemon: Daemon, rest: Rest) -> None:
    import socket

    assert rest.get("/v2/health/ready").status == 200
    before = daemon_threads(daemon)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", daemon.rest_port), timeout=10))  # type: ignore[attr-defined]
        reply = Rest(daemon.rest_port).post_json("/v1/models/dynamic:predict", {"instances": X.tolist()})  # type: ignore[attr-defined]
        assert reply.status == 200 and reply.json() == {"predictions": (X * 3).tolist()}
        assert daemon_threads(daemon) <= before + 2, "no thread per connection"
    finally:
        for connection in idle:
            connection.close()
