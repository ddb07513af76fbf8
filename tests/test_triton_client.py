"""The tritonclient driver (tests/clients/triton_client.py) and its helper (tests/support/triton.py).

There is no KServe front end yet, so the driver runs against a closed port and against two small fakes in this
process: a GRPCInferenceService servicer built on our generated stubs (which also shows that the real client talks
to our .proto), and an HTTP/REST server of the v2 protocol. Each echoes its inputs as outputs of model ``echo``.
The tests of the real front ends use the same helper against the daemon.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import grpc
import ml_dtypes
import numpy as np
import pytest

from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as pb_grpc
from tests.support.daemon import free_port
from tests.support.triton import NUMPY_DTYPES, TritonClient, output_array, run_triton, tensor

MODEL = "echo"


# --- a fake gRPC servicer -----------------------------------------------------------------------------------------


def echo_response(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    wanted = {o.name for o in request.outputs}
    response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
    for key, value in request.parameters.items():
        response.parameters[key].CopyFrom(value)
    for index, tensor_in in enumerate(request.inputs):
        if wanted and tensor_in.name not in wanted:
            continue
        response.outputs.add(name=tensor_in.name, datatype=tensor_in.datatype, shape=tensor_in.shape)
        response.raw_output_contents.append(request.raw_input_contents[index])
    return response


class EchoInference(pb_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == MODEL)

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="fake", version="0", extensions=["binary_tensor_data"])

    def ModelMetadata(self, request, context):
        if request.name != MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name} not found")
        response = pb.ModelMetadataResponse(name=MODEL, versions=["1"], platform="fake")
        response.inputs.add(name="x", datatype="FP32", shape=[-1, 2])
        response.outputs.add(name="x", datatype="FP32", shape=[-1, 2])
        return response

    def ModelInfer(self, request, context):
        if request.model_name != MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name} not found")
        return echo_response(request)

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            if request.model_name != MODEL:
                yield pb.ModelStreamInferResponse(error_message=f"model {request.model_name} not found")
            else:
                yield pb.ModelStreamInferResponse(infer_response=echo_response(request))


@pytest.fixture(scope="module")
def grpc_address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInference(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


# --- a fake HTTP/REST server --------------------------------------------------------------------------------------


def _to_bytes(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in data)
    return np.asarray(data, dtype=NUMPY_DTYPES[datatype]).tobytes()


def _from_bytes(datatype: str, raw: bytes) -> list:
    if datatype == "BYTES":
        out, at = [], 0
        while at < len(raw):
            (n,) = struct.unpack_from("<I", raw, at)
            out.append(raw[at + 4 : at + 4 + n].decode())
            at += 4 + n
        return out
    return np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype]).tolist()


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: dict | None = None, binary: bytes = b"") -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not binary else "application/octet-stream")
        if binary:
            self.send_header("Inference-Header-Content-Length", str(len(payload)))
        self.send_header("Content-Length", str(len(payload) + len(binary)))
        self.end_headers()
        self.wfile.write(payload + binary)

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts in (["v2", "health", "live"], ["v2", "health", "ready"]):
            self.reply(200)
        elif parts == ["v2"]:
            self.reply(200, {"name": "fake", "version": "0", "extensions": ["binary_tensor_data"]})
        elif parts[:2] == ["v2", "models"] and parts[-1] == "ready":
            self.reply(200 if parts[2] == MODEL else 400)
        elif parts == ["v2", "models", MODEL]:
            tensor_meta = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
            self.reply(200, {"name": MODEL, "versions": ["1"], "platform": "fake", "inputs": tensor_meta})
        else:
            self.reply(404, {"error": f"no {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        parts = self.path.strip("/").split("/")
        if parts[:2] != ["v2", "models"] or parts[-1] != "infer" or parts[2] != MODEL:
            self.reply(404, {"error": f"model {parts[2] if len(parts) > 2 else '?'} not found"})
            return
        header_length = int(self.headers.get("Inference-Header-Content-Length", len(body)))
        request = json.loads(body[:header_length])
        binary_in, at = body[header_length:], 0
        wanted = {o["name"]: o.get("parameters", {}) for o in request.get("outputs", [])}
        all_binary = request.get("parameters", {}).get("binary_data_output", False)
        outputs, binary_out = [], b""
        for item in request["inputs"]:
            size = item.get("parameters", {}).get("binary_data_size")
            if size is not None:
                raw, at = binary_in[at : at + size], at + size
            else:
                raw = _to_bytes(item["datatype"], np.asarray(item["data"], dtype=object).ravel().tolist())
            if wanted and item["name"] not in wanted:
                continue
            out = {"name": item["name"], "datatype": item["datatype"], "shape": item["shape"]}
            if wanted.get(item["name"], {}).get("binary_data", all_binary):
                out["parameters"] = {"binary_data_size": len(raw)}
                binary_out += raw
            else:
                out["data"] = _from_bytes(item["datatype"], raw)
            outputs.append(out)
        response = {"model_name": MODEL, "model_version": "1", "outputs": outputs}
        if "id" in request:
            response["id"] = request["id"]
        self.reply(200, response, binary_out)


@pytest.fixture(scope="module")
def http_address() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


# --- tests --------------------------------------------------------------------------------------------------------


def test_closed_port_is_a_clear_connection_error() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    x = tensor("x", np.zeros((1, 2), np.float32))
    grpc_client, http_client = TritonClient("grpc", address, timeout=5), TritonClient("http", address, timeout=5)
    live, infer, stream, http_live, http_infer = run_triton(
        grpc_client.command("is_server_live"),
        grpc_client.command("infer", model=MODEL, inputs=[x]),
        grpc_client.command("stream_infer", model=MODEL, requests=[{"inputs": [x]}]),
        http_client.command("is_server_live"),
        http_client.command("async_infer", model=MODEL, inputs=[x], count=2),
    )
    for error in (live, infer, stream["result"][0]):
        assert error["status"] == "UNAVAILABLE", error
        assert "connect" in error["error"].lower(), error
    assert len(stream["result"]) == 1
    for error in (http_live, *http_infer["result"]):
        assert error["exception"] == "ConnectionRefusedError", error
        assert "refused" in error["error"].lower(), error


def test_a_malformed_command_fails_the_helper() -> None:
    with pytest.raises(AssertionError, match="exited 2"):
        run_triton({"protocol": "grpc", "url": "127.0.0.1:1", "op": "no_such_op"})
    with pytest.raises(AssertionError, match="an input is an object"):
        run_triton({"protocol": "grpc", "url": "127.0.0.1:1", "op": "infer", "model": "m", "inputs": [1]})


def test_grpc_commands(grpc_address: str) -> None:
    client = TritonClient("grpc", grpc_address, timeout=20)
    x = np.array([[1.5, -2.0]], np.float32)
    words = np.array([["a", "bé"]], dtype=object)
    half = np.array([0.5, -1.0, 2.0], np.float16)
    brain = np.array([1.0, -0.5], ml_dtypes.bfloat16)
    results = run_triton(
        client.command("is_server_live"),
        client.command("is_server_ready"),
        client.command("is_model_ready", model=MODEL),
        client.command("is_model_ready", model="other"),
        client.command("get_server_metadata"),
        client.command("get_model_metadata", model=MODEL, version="1"),
        client.command("get_model_metadata", model="other"),
        client.command(
            "infer",
            model=MODEL,
            id="r1",
            inputs=[tensor("x", x), tensor("s", words), tensor("h", half), tensor("bf", brain)],
            parameters={"note": "n", "count": 3, "flag": True, "ratio": 0.5},
        ),
        client.command("infer", model=MODEL, inputs=[tensor("x", x), tensor("s", words)], outputs=["s"]),
        client.command("infer", model="other", inputs=[tensor("x", x)]),
        client.command("async_infer", model=MODEL, inputs=[tensor("x", x)], count=3),
        client.command(
            "stream_infer",
            model=MODEL,
            requests=[
                {"id": "a", "inputs": [tensor("x", x)]},
                {"id": "b", "model": "other", "inputs": [tensor("x", x)]},
                {"id": "c", "inputs": [tensor("x", x * 2)]},
            ],
        ),
    )
    (
        live,
        ready,
        model_ready,
        other_ready,
        server_meta,
        model_meta,
        other_meta,
        infer,
        filtered,
        unknown,
        many,
        stream,
    ) = results
    assert live == ready == model_ready == {"result": True}
    assert other_ready == {"result": False}
    assert server_meta["result"] == {"name": "fake", "version": "0", "extensions": ["binary_tensor_data"]}
    assert model_meta["result"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "2"]}]
    assert other_meta == {
        "error": "model other not found",
        "status": "NOT_FOUND",
        "exception": "InferenceServerException",
    }

    result = infer["result"]
    assert (result["model_name"], result["model_version"], result["id"]) == (MODEL, "1", "r1")
    assert result["parameters"] == {"note": "n", "count": 3, "flag": True, "ratio": 0.5}
    assert result["raw_output_contents"] == 4
    assert list(result["outputs"]) == ["x", "s", "h", "bf"]
    assert result["outputs"]["x"]["datatype"] == "FP32" and result["outputs"]["x"]["shape"] == [1, 2]
    np.testing.assert_array_equal(output_array(result["outputs"]["x"]), x)
    assert output_array(result["outputs"]["s"]).tolist() == [["a", "bé"]]
    np.testing.assert_array_equal(output_array(result["outputs"]["h"]), half)
    assert output_array(result["outputs"]["h"]).dtype == np.float16
    assert output_array(result["outputs"]["bf"]).dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(output_array(result["outputs"]["bf"]).astype(np.float32), [1.0, -0.5])
    assert list(filtered["result"]["outputs"]) == ["s"]
    assert unknown["status"] == "NOT_FOUND"

    assert len(many["result"]) == 3
    for one in many["result"]:
        np.testing.assert_array_equal(output_array(one["outputs"]["x"]), x)

    first, failed, last = stream["result"]
    assert first["id"] == "a" and last["id"] == "c"
    np.testing.assert_array_equal(output_array(last["outputs"]["x"]), x * 2)
    assert failed == {"error": "model other not found", "status": None, "exception": "InferenceServerException"}


def test_http_commands(http_address: str) -> None:
    client = TritonClient("http", http_address, timeout=20)
    x = np.array([[1.5, -2.0]], np.float32)
    ids = np.array([7, -9], np.int64)
    words = np.array(["a", "bé"], dtype=object)
    inputs = [tensor("x", x), tensor("i", ids), tensor("s", words)]
    results = run_triton(
        client.command("is_server_live"),
        client.command("is_server_ready"),
        client.command("is_model_ready", model=MODEL),
        client.command("is_model_ready", model="other", version="2"),
        client.command("get_server_metadata"),
        client.command("get_model_metadata", model=MODEL),
        client.command("get_model_metadata", model="other"),
        client.command("infer", model=MODEL, id="j", inputs=inputs, outputs=["x", "i", "s"], binary_data=False),
        client.command("infer", model=MODEL, inputs=inputs, outputs=["x", "i", "s"]),
        client.command("infer", model=MODEL, inputs=[tensor("x", x, binary_data=False)]),
        client.command("infer", model=MODEL, inputs=inputs, outputs=[{"name": "i", "binary_data": False}]),
        client.command("infer", model="other", inputs=inputs),
        client.command("async_infer", model=MODEL, inputs=inputs, count=2),
    )
    live, ready, model_ready, other_ready, server_meta, model_meta, other_meta, *infers, unknown, many = results
    assert live == ready == model_ready == {"result": True}
    assert other_ready == {"result": False}
    assert server_meta["result"]["name"] == "fake"
    assert model_meta["result"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    assert other_meta["status"] == 404 and other_meta["exception"] == "InferenceServerException"
    as_json, as_binary, all_outputs_binary, one_json = (r["result"] for r in infers)
    for result in (as_json, as_binary, all_outputs_binary, one_json, *many["result"]):
        assert result["model_name"] == MODEL, result
        if "x" in result["outputs"]:
            np.testing.assert_array_equal(output_array(result["outputs"]["x"]), x)
        if "i" in result["outputs"]:
            assert output_array(result["outputs"]["i"]).tolist() == [7, -9]
        if "s" in result["outputs"]:
            assert output_array(result["outputs"]["s"]).tolist() == ["a", "bé"]
    assert as_json["id"] == "j"
    assert all("binary_data_size" not in o["parameters"] for o in as_json["outputs"].values())
    assert all("binary_data_size" in o["parameters"] for o in as_binary["outputs"].values())
    assert "binary_data_size" in all_outputs_binary["outputs"]["x"]["parameters"]  # no outputs: binary_data_output
    assert list(one_json["outputs"]) == ["i"] and one_json["outputs"]["i"]["parameters"] == {}
    assert unknown == {"error": "model other not found", "status": 404, "exception": "InferenceServerException"}
    assert len(many["result"]) == 2
