"""Soak (issue 12, item 7): ``--minutes`` (default 30) of mixed load against one daemon, sampling its resident memory,
open files and Python threads; fails when any of them still grows over the second half of the run.

The daemon serves two small models on every front end (TF Serving gRPC, KServe gRPC, TF Serving REST, KServe REST):

* ``churn`` (``x [1,4]`` -> ``y = x * v`` for version ``v``, ``latest: 2``): every ``--churn-s`` seconds a new
  version directory is written beside the base path and renamed in, and the oldest beyond two is deleted, so the
  daemon keeps loading and retiring versions under traffic. Every answer is checked: ``y == x * v`` for the version
  that says it served.
* ``auto`` (``x [1,3,8,8]`` -> ``y = 2x``, ``shape: auto``): requests cycle through ``len(RESHAPES)`` shapes, more
  than the daemon's shape cache keeps (4), so it compiles and evicts all the time.

``--clients`` threads loop over a weighted mix: good requests on each front end, reshapes, bad requests (unknown
model, wrong shape, bytes that are no protobuf, malformed JSON, overflowing dims: each must get its own code),
metadata and status calls, and reconnects (a new gRPC channel, a new HTTP connection). A sampler reads
``/proc/<pid>`` every ``--sample-s`` seconds (VmRSS, the entries of ``fd/``, ``Threads``) and the daemon's
``ovmsctl_python_threads`` gauge (``/metrics`` on the REST port).

Growth test, over the second half of the run (the first half is warm-up: allocator pools, gRPC and OpenVINO thread
pools, the compiled-shape cache filling): the Theil-Sen slope of each series (the median of the slopes between
every pair of samples, so a compile in progress or a collection pause at one sample does not move it, while a leak
moves every pair), times the half's duration, is the growth. Tolerances, from measurements (BENCHMARKS.md, "Soak"):

* RSS: ``--rss-tolerance-mib`` (8 MiB, or 2% of the half's median RSS if more) plus ``PER_VERSION_KIB`` for each
  version published in the half. Without churn the second half of a 4-minute run grew by 0.0 MiB, while single
  samples scatter by +-3 MiB (a compile, the allocator): 8 MiB is room for allocator drift that is no leak. The
  daemon keeps, by design, something for every version that ever served: its END entry in the status list (as OVMS
  does) and its request-metric children for each front end (prometheus_client never drops a label set):
  ~44 KiB per version with the four front ends of this mix (tracemalloc), ~0.2 MiB a minute at the default churn.
  What this still catches: over a 30-minute run, growth of ~0.6 MiB a minute past that, e.g. 16 bytes per request
  at 600 requests/s, or any compiled shape, version instance or request buffer kept (each is 100 KiB or more).
* Open files and Python threads: 2 each. They are integers that must come back exactly; at a sample a version may
  be loading (its files open) or a connection being accepted, hence the margin, while a descriptor leaked per
  reconnect or a thread per version would be hundreds.
* The process's thread count (``Threads``) is shown, not judged: OpenVINO keeps the stream threads of a compiled
  model pooled for the next one, at the most compiled models that were ever alive at once (measured: 1, 2, 3, 5
  models alive leave 4, 8, 10, 14 threads; freeing them all leaves 14). Under churn and reshapes that high-water mark
  steps up whenever loads, reshapes and drains happen to overlap more than before (seen at 50 s and at 100 s of a
  3-minute run, +2 to +5 threads, then flat), so on a short run it is history, not a leak; RSS catches any compiled
  model kept.

Any answer that is not what its request must get (a wrong value, a wrong code, a timeout) is counted as unexpected;
the exit status is 1 when there is one, when a series grows, or when the daemon dies.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 3] [--sample-s 5] [--json results/soak.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from common import (
    Children,
    DaemonProcess,
    free_port,
    git_state,
    machine_info,
    median,
    named,
    print_table,
    proc_status_kib,
    process_cpu_s,
    sigterm_as_interrupt,
    write_config,
    write_json,
)

from ovmsd.api.grpc.proto import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    kserve_predict_v2_pb2,
    kserve_predict_v2_pb2_grpc,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    types_pb2,
)

RESHAPES = [(1, 3, h, w) for h, w in ((8, 8), (12, 8), (8, 16), (16, 16), (20, 12), (24, 24))]
KEEP_VERSIONS = 2
REQUEST_TIMEOUT_S = 30.0
MIB = 1024
PER_VERSION_KIB = 48  # what the daemon keeps for every version that ever served (see the docstring)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # answers are checked exactly (bf16 on some CPUs would round them)


# -- models ------------------------------------------------------------------------------------------------------


def churn_model(version: int) -> Any:
    import openvino as ov
    from openvino import opset13 as ops

    x = named(ops.parameter([1, 4], np.float32, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.array(float(version), dtype=np.float32))), "y")
    return ov.Model([y], [x], f"churn_v{version}")


def auto_model() -> Any:
    import openvino as ov
    from openvino import opset13 as ops

    x = named(ops.parameter([1, 3, 8, 8], np.float32, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.array(2.0, dtype=np.float32))), "y")
    return ov.Model([y], [x], "auto")


def publish(base: Path, version: int) -> None:
    """Write ``base/<version>`` beside it and rename it in (the daemon loads a renamed directory at once)."""
    import openvino as ov

    staging = base.parent / f".{base.name}.{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ov.save_model(churn_model(version), staging / "model.xml", compress_to_fp16=False)
    staging.rename(base / str(version))


# -- requests ----------------------------------------------------------------------------------------------------


def tensor(proto: Any, array: np.ndarray, dtype: int = types_pb2.DT_FLOAT) -> None:
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array).tobytes()


def predict_request(model: str, array: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor(request.inputs["x"], array)
    return request


def infer_request(model: str, array: np.ndarray) -> kserve_predict_v2_pb2.ModelInferRequest:
    request = kserve_predict_v2_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=list(array.shape))
    request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request


class Unexpected(Exception):
    """An answer that is not what the request must get."""


class Connections:
    """One worker's gRPC channel (both APIs' stubs) and keep-alive HTTP connection; ``reconnect`` replaces both."""

    def __init__(self, grpc_address: str, rest_port: int) -> None:
        self.grpc_address = grpc_address
        self.rest_port = rest_port
        self.channel: grpc.Channel | None = None
        self.http: http.client.HTTPConnection | None = None
        self.reconnect()

    def reconnect(self) -> None:
        self.close()
        self.channel = grpc.insecure_channel(self.grpc_address)
        self.tfs = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.kserve = kserve_predict_v2_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.http = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=REQUEST_TIMEOUT_S)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.http is not None:
            self.http.close()

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        status, answer, _ = self.post_with_headers(path, body, headers)
        return status, answer

    def post_with_headers(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        assert self.http is not None
        for attempt in (1, 2):  # the server may close a keep-alive connection after an error answer
            try:
                self.http.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
                response = self.http.getresponse()
                answer = response.read()
                return response.status, answer, {k.lower(): v for k, v in response.getheaders()}
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.http.close()
                self.http = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=REQUEST_TIMEOUT_S)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def raw(self, method: str, data: bytes) -> grpc.StatusCode:
        assert self.channel is not None
        call = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(data, timeout=REQUEST_TIMEOUT_S)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


def expect_code(code: grpc.StatusCode, want: grpc.StatusCode, what: str) -> None:
    if code != want:
        raise Unexpected(f"{what}: {code.name}, expected {want.name}")


def grpc_code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def check_churn(y: np.ndarray, x: np.ndarray, version: int, what: str) -> None:
    if version < 1 or not np.array_equal(y, x * np.float32(version)):
        raise Unexpected(f"{what}: version {version} answered {y.reshape(-1)[:4]} for x {x.reshape(-1)[:4]}")


def json_error(status: int, body: bytes, want: int, what: str) -> None:
    if status != want:
        raise Unexpected(f"{what}: HTTP {status}, expected {want}: {body[:200]!r}")
    with contextlib.suppress(ValueError):
        if isinstance(json.loads(body).get("error"), str):
            return
    raise Unexpected(f"{what}: HTTP {status} without a JSON error: {body[:200]!r}")


Action = Callable[[Connections, np.random.Generator], str]


def tfs_grpc_churn(c: Connections, rng: np.random.Generator) -> str:
    x = rng.standard_normal((1, 4)).astype(np.float32)
    answer = c.tfs.Predict(predict_request("churn", x), timeout=REQUEST_TIMEOUT_S)
    out = answer.outputs["y"]
    y = np.frombuffer(out.tensor_content, dtype=np.float32).reshape([d.size for d in out.tensor_shape.dim])
    check_churn(y, x, answer.model_spec.version.value, "TF Serving gRPC Predict")
    return "good"


def kserve_grpc_churn(c: Connections, rng: np.random.Generator) -> str:
    x = rng.standard_normal((1, 4)).astype(np.float32)
    answer = c.kserve.ModelInfer(infer_request("churn", x), timeout=REQUEST_TIMEOUT_S)
    y = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32).reshape(tuple(answer.outputs[0].shape))
    check_churn(y, x, int(answer.model_version), "KServe gRPC ModelInfer")
    return "good"


def rest_tfs_churn(c: Connections, rng: np.random.Generator) -> str:
    x = rng.integers(1, 50, (1, 4)).astype(np.float32)
    status, body = c.post("/v1/models/churn:predict", json.dumps({"instances": x.tolist()}).encode())
    if status != 200:
        raise Unexpected(f"TF Serving REST predict: HTTP {status}: {body[:200]!r}")
    y = np.array(json.loads(body)["predictions"], dtype=np.float32)
    check_churn(y, x, int(y[0, 0] / x[0, 0]), "TF Serving REST predict")  # its answer names no version: y / x does
    return "good"


def rest_kserve_churn(c: Connections, rng: np.random.Generator) -> str:
    x = rng.standard_normal((1, 4)).astype(np.float32)
    if rng.random() < 0.5:
        document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.reshape(-1).tolist()}]}
        status, body = c.post("/v2/models/churn/infer", json.dumps(document).encode())
        if status != 200:
            raise Unexpected(f"KServe REST infer: HTTP {status}: {body[:200]!r}")
        answer = json.loads(body)
        y = np.array(answer["outputs"][0]["data"], dtype=np.float32).reshape(1, 4)
        check_churn(y, x, int(answer["model_version"]), "KServe REST infer (JSON)")
        return "good"
    header = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}],
              "parameters": {"binary_data_output": True}}  # fmt: skip
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    status, body, answer_headers = c.post_with_headers("/v2/models/churn/infer", head + x.tobytes(), headers)
    if status != 200:
        raise Unexpected(f"KServe REST infer (binary): HTTP {status}: {body[:200]!r}")
    length = int(answer_headers.get("inference-header-content-length", len(body)))
    answer = json.loads(body[:length])
    y = np.frombuffer(body[length:], dtype=np.float32).reshape(1, 4)
    check_churn(y, x, int(answer["model_version"]), "KServe REST infer (binary)")
    return "good"


def reshape(c: Connections, rng: np.random.Generator) -> str:
    shape = RESHAPES[int(rng.integers(len(RESHAPES)))]
    x = rng.standard_normal(shape).astype(np.float32)
    how = ("tfs", "kserve", "rest")[int(rng.integers(3))]
    if how == "tfs":
        out = c.tfs.Predict(predict_request("auto", x), timeout=REQUEST_TIMEOUT_S).outputs["y"]
        y = np.frombuffer(out.tensor_content, dtype=np.float32).reshape([d.size for d in out.tensor_shape.dim])
    elif how == "kserve":
        answer = c.kserve.ModelInfer(infer_request("auto", x), timeout=REQUEST_TIMEOUT_S)
        y = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32).reshape(tuple(answer.outputs[0].shape))
    else:
        document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(shape), "data": x.reshape(-1).tolist()}]}
        status, body = c.post("/v2/models/auto/infer", json.dumps(document).encode())
        if status != 200:
            raise Unexpected(f"reshape over KServe REST: HTTP {status}: {body[:200]!r}")
        y = np.array(json.loads(body)["outputs"][0]["data"], dtype=np.float32).reshape(shape)
    if not np.allclose(y, x * 2):
        raise Unexpected(f"reshape {shape} over {how}: wrong values")
    return "reshape"


BAD_BYTES = b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 10  # a length past the end: no protobuf


def bad(c: Connections, rng: np.random.Generator) -> str:
    """A request that must be refused, with its own code."""
    x = np.zeros((1, 4), dtype=np.float32)
    case = int(rng.integers(10))
    invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    if case == 0:
        expect_code(grpc_code(lambda: c.tfs.Predict(predict_request("nope", x), timeout=10)), missing, "unknown model")
    elif case == 1:
        wrong = predict_request("churn", np.zeros((1, 5), dtype=np.float32))
        expect_code(grpc_code(lambda: c.tfs.Predict(wrong, timeout=10)), invalid, "wrong shape (TF Serving gRPC)")
    elif case == 2:
        expect_code(c.raw("/tensorflow.serving.PredictionService/Predict", BAD_BYTES), invalid, "bytes (Predict)")
    elif case == 3:
        expect_code(c.raw("/inference.GRPCInferenceService/ModelInfer", BAD_BYTES), invalid, "bytes (ModelInfer)")
    elif case == 4:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "churn"
        proto = request.inputs["x"]
        proto.dtype = types_pb2.DT_FLOAT
        for size in (2**40, 2**40):
            proto.tensor_shape.dim.add(size=size)
        proto.float_val.append(1.0)
        code = grpc_code(lambda: c.tfs.Predict(request, timeout=10))
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:  # over a limit of the model is the other right answer
            expect_code(code, invalid, "overflowing dims")
    elif case == 5:
        wrong = infer_request("churn", np.zeros((2, 4), dtype=np.float32))
        expect_code(grpc_code(lambda: c.kserve.ModelInfer(wrong, timeout=10)), invalid, "wrong shape (KServe gRPC)")
    elif case == 6:
        json_error(*c.post("/v1/models/churn:predict", b'{"instances": [1, 2'), 400, "malformed JSON (TF Serving REST)")
    elif case == 7:
        json_error(*c.post("/v2/models/nope/infer", b'{"inputs": []}'), 404, "unknown model (KServe REST)")
    elif case == 8:
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2]}]}).encode()
        json_error(*c.post("/v2/models/churn/infer", body), 400, "value count (KServe REST)")
    else:
        headers = {"Inference-Header-Content-Length": "99999"}
        json_error(*c.post("/v2/models/churn/infer", b"{}", headers), 400, "header length (KServe REST)")
    return "bad"


def metadata(c: Connections, rng: np.random.Generator) -> str:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = ("churn", "auto")[int(rng.integers(2))]
    c.tfs.GetModelMetadata(request, timeout=REQUEST_TIMEOUT_S)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "churn"
    c.models.GetModelStatus(status, timeout=REQUEST_TIMEOUT_S)
    c.kserve.ModelMetadata(kserve_predict_v2_pb2.ModelMetadataRequest(name="auto"), timeout=REQUEST_TIMEOUT_S)
    return "metadata"


def reconnect(c: Connections, rng: np.random.Generator) -> str:
    c.reconnect()
    return "reconnect"


MIX: list[tuple[Action, int]] = [
    (tfs_grpc_churn, 6),
    (kserve_grpc_churn, 4),
    (rest_tfs_churn, 3),
    (rest_kserve_churn, 3),
    (reshape, 4),
    (bad, 4),
    (metadata, 1),
    (reconnect, 1),
]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def add(self, label: str) -> None:
        with self.lock:
            self.counts[label] += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.counts["unexpected"] += 1
            if len(self.unexpected) < 50:
                self.unexpected.append(f"{time.strftime('%H:%M:%S')} {message}")

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def parse_mix(text: str) -> list[tuple[Action, int]]:
    """``MIX`` with the weights ``name=weight,...`` changes (e.g. ``reshape=0,bad=0`` to leave them out)."""
    weights = {action.__name__: weight for action, weight in MIX}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in weights or not value.isdigit():
            raise SystemExit(f"--mix: {item!r} is not NAME=WEIGHT with NAME one of {', '.join(weights)}")
        weights[name] = int(value)
    if not any(weights.values()):
        raise SystemExit("--mix: every weight is 0")
    return [(action, weights[action.__name__]) for action, _ in MIX]


def client(
    index: int, grpc_address: str, rest_port: int, mix: list[tuple[Action, int]], stop: threading.Event, tally: Tally
) -> None:
    rng = np.random.default_rng(index)
    actions = [action for action, _ in mix]
    weights = np.array([weight for _, weight in mix], dtype=np.float64)
    connections = Connections(grpc_address, rest_port)
    try:
        while not stop.is_set():
            action = actions[int(rng.choice(len(actions), p=weights / weights.sum()))]
            try:
                tally.add(action(connections, rng))
            except Unexpected as exc:
                tally.fail(str(exc))
            except grpc.RpcError as exc:
                tally.fail(f"{action.__name__}: gRPC {exc.code().name}: {(exc.details() or '')[:200]}")
            except Exception as exc:
                tally.fail(f"{action.__name__}: {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        connections.close()


# -- churn and sampling -------------------------------------------------------------------------------------------


def churner(base: Path, first: int, every_s: float, stop: threading.Event, published: list[int]) -> None:
    version = first
    if every_s <= 0:  # --churn-s 0: no version churn
        return
    while not stop.wait(every_s):
        version += 1
        publish(base, version)
        published.append(version)
        for old in sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())[:-KEEP_VERSIONS]:
            shutil.rmtree(base / str(old), ignore_errors=True)


def read_sample(pid: int, rest_port: int) -> dict[str, float]:
    status = proc_status_kib(pid, "VmRSS", "VmHWM")
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in lines if line.startswith("Threads:"))
    return {
        "rss_kib": status["VmRSS"],
        "hwm_kib": status["VmHWM"],
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "python_threads": python_threads(rest_port),
        "threads": threads,
        "cpu_s": process_cpu_s(pid),
    }


def python_threads(rest_port: int) -> int:
    """The daemon's ``ovmsctl_python_threads`` gauge, from /metrics on its REST port."""
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", "/metrics")
        page = conn.getresponse().read().decode()
    finally:
        conn.close()
    return next(int(float(line.split()[1])) for line in page.splitlines() if line.startswith("ovmsctl_python_threads "))


def theil_sen(t: Sequence[float], y: Sequence[float]) -> float:
    """The median of the slopes between every pair of points (robust to a few outlying samples)."""
    slopes = [(y[j] - y[i]) / (t[j] - t[i]) for i in range(len(t)) for j in range(i + 1, len(t)) if t[j] > t[i]]
    return median(slopes) if slopes else math.nan


def growth(samples: list[dict[str, Any]], rss_tolerance_mib: float) -> list[dict[str, Any]]:
    """Per series: the Theil-Sen growth over the second half of the samples, its tolerance, and the verdict."""
    half = samples[len(samples) // 2 :]
    t = [s["t"] for s in half]
    span = (t[-1] - t[0]) if len(t) > 1 else 0.0
    rss_median = median(s["rss_kib"] for s in half)
    versions = half[-1].get("versions_published", 0) - half[0].get("versions_published", 0) if half else 0
    tolerances = {
        "rss_kib": max(rss_tolerance_mib * MIB, 0.02 * rss_median) + versions * PER_VERSION_KIB,
        "fds": 2.0,
        "python_threads": 2.0,
    }
    out = []
    for key, tolerance in tolerances.items():
        values = [float(s[key]) for s in half]
        slope = theil_sen(t, values)
        grown = slope * span if not math.isnan(slope) else math.nan
        out.append(
            {
                "series": key,
                "first": values[0] if values else math.nan,
                "last": values[-1] if values else math.nan,
                "min": min(values) if values else math.nan,
                "max": max(values) if values else math.nan,
                "slope_per_min": slope * 60,
                "growth_over_half": grown,
                "tolerance": tolerance,
                "half_s": span,
                "ok": bool(len(values) >= 3 and not math.isnan(grown) and grown <= tolerance),
            }
        )
    return out


# -- main ---------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="measured load, after the warm-up (default 30)")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="load before the measured minutes (default 20)")
    parser.add_argument("--clients", type=int, default=3, help="client threads (default 3)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument(
        "--churn-s", type=float, default=15.0, help="seconds between new versions (default 15; 0: none)"
    )
    parser.add_argument("--mix", default="", help="weights to change, e.g. reshape=0,bad=0 (names: the MIX table)")
    parser.add_argument("--report-s", type=float, default=60.0, help="seconds between table rows (default 60)")
    parser.add_argument("--rss-tolerance-mib", type=float, default=8.0, help="see the docstring (default 8)")
    parser.add_argument("--workdir", type=Path, help="keep the models and the daemon log here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        else:
            root = args.workdir
            root.mkdir(parents=True, exist_ok=True)
        stack.enter_context(sigterm_as_interrupt())
        children = stack.enter_context(Children())
        return soak(args, root, children)
    return 1


def soak(args: argparse.Namespace, root: Path, children: Children) -> int:
    import openvino as ov

    churn_base = root / "churn"
    churn_base.mkdir(exist_ok=True)
    for version in (1, 2):
        publish(churn_base, version)
    (root / "auto" / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(auto_model(), root / "auto" / "1" / "model.xml", compress_to_fp16=False)
    config = write_config(
        root / "config.json",
        [
            {
                "name": "churn",
                "base_path": str(churn_base),
                "model_version_policy": {"latest": {"num_versions": 2}},
                "plugin_config": F32,
            },
            {"name": "auto", "base_path": str(root / "auto"), "shape": "auto", "plugin_config": F32},
        ],
    )
    rest_port = free_port()
    daemon = DaemonProcess(
        children,
        config,
        root / "daemon.log",
        ["--rest_port", str(rest_port), "--file-system-poll-wait-seconds", "1", "--metrics-enable"],
    )
    daemon.wait_available(["churn", "auto"])
    print(f"soak: daemon pid {daemon.pid}, {args.clients} clients, {args.minutes:g} min after {args.warmup_s:g} s of "
          f"warm-up; a new version every {args.churn_s:g} s; {len(RESHAPES)} shapes", flush=True)  # fmt: skip

    git = git_state()  # what the daemon imported: before any commit made during the run
    mix = parse_mix(args.mix)
    stop = threading.Event()
    tally = Tally()
    published: list[int] = [1, 2]
    threads = [
        threading.Thread(target=client, args=(i, daemon.address, rest_port, mix, stop, tally), daemon=True)
        for i in range(args.clients)
    ]
    threads.append(threading.Thread(target=churner, args=(churn_base, 2, args.churn_s, stop, published), daemon=True))
    for thread in threads:
        thread.start()

    samples: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    headers = [
        "t (min)",
        "requests",
        "req/s",
        "unexpected",
        "versions",
        "RSS MiB",
        "fds",
        "py threads",
        "threads",
        "CPU %",
    ]
    try:
        time.sleep(args.warmup_s)
        start = time.monotonic()
        end = start + args.minutes * 60
        last_row_t = -math.inf
        previous: dict[str, Any] | None = None
        while True:
            now = time.monotonic()
            if daemon.process.poll() is not None:
                tally.fail(f"the daemon exited with {daemon.process.returncode}")
                break
            sample = {
                "t": now - start,
                **read_sample(daemon.pid, rest_port),
                **{f"n_{k}": v for k, v in tally.snapshot().items()},
            }
            sample["versions_published"] = len(published)
            samples.append(sample)
            if now - last_row_t >= args.report_s or now >= end:
                rows.append(row(sample, previous))
                if len(rows) == 1:
                    print("  ".join(f"{h:>10}" for h in headers), flush=True)
                print("  ".join(f"{c!s:>10}" for c in rows[-1]), flush=True)
                previous, last_row_t = sample, now
            if now >= end:
                break
            time.sleep(min(args.sample_s, max(0.0, end - time.monotonic())))
    except KeyboardInterrupt:
        print("interrupted: reporting what was sampled", flush=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    alive = daemon.process.poll() is None
    log = daemon.log()
    exit_code = daemon.stop() if alive else daemon.process.returncode
    counts = tally.snapshot()
    verdicts = growth(samples, args.rss_tolerance_mib) if len(samples) >= 6 else []
    print_table(headers, rows, title="Soak, over time")
    verdict_rows = [
        [v["series"], *(fmt_value(v["series"], v[k]) for k in VERDICT_KEYS), "flat" if v["ok"] else "GROWS"]
        for v in verdicts
    ]
    print_table(
        ["series", "2nd half first", "last", "min", "max", "growth", "tolerance", "per min", "verdict"],
        verdict_rows,
        title=f"Growth over the second half ({verdicts[0]['half_s'] / 60:.1f} min, Theil-Sen)" if verdicts else None,
    )
    total = sum(n for k, n in counts.items() if k != "unexpected")
    print(f"\nrequests: {total:,} ({', '.join(f'{k} {n:,}' for k, n in counts.most_common())}); versions published: "
          f"{len(published)}; daemon {'alive' if alive else 'DEAD'}, exit {exit_code}; tracebacks in its log: "
          f"{log.count('Traceback')}")  # fmt: skip
    for line in tally.unexpected[:20]:
        print(f"  unexpected: {line}")
    result = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "reshapes": [list(s) for s in RESHAPES],
        "mix": {action.__name__: weight for action, weight in mix},
        "counts": dict(counts),
        "unexpected": tally.unexpected,
        "versions_published": len(published),
        "daemon_alive_at_end": alive,
        "daemon_exit_code": exit_code,
        "tracebacks_in_log": log.count("Traceback"),
        "growth": verdicts,
        "samples": samples,
        "git": git,
        "machine": machine_info(),
    }
    write_json(args.json, result)
    print(f"wrote {args.json}")
    failed = counts.get("unexpected", 0) > 0 or not alive or exit_code != 0 or not verdicts
    failed = failed or not all(v["ok"] for v in verdicts) or log.count("Traceback") > 0
    return 1 if failed else 0


VERDICT_KEYS = ("first", "last", "min", "max", "growth_over_half", "tolerance", "slope_per_min")


def fmt_value(series: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value / MIB:,.1f} MiB" if series == "rss_kib" else f"{value:,.1f}"


def row(sample: dict[str, Any], previous: dict[str, Any] | None) -> list[Any]:
    requests = sum(v for k, v in sample.items() if k.startswith("n_") and k != "n_unexpected")
    rate = cpu = math.nan
    if previous is not None and sample["t"] > previous["t"]:
        before = sum(v for k, v in previous.items() if k.startswith("n_") and k != "n_unexpected")
        rate = (requests - before) / (sample["t"] - previous["t"])
        cpu = 100 * (sample["cpu_s"] - previous["cpu_s"]) / (sample["t"] - previous["t"])
    return [
        f"{sample['t'] / 60:.1f}",
        f"{requests:,}",
        "-" if math.isnan(rate) else f"{rate:,.0f}",
        sample.get("n_unexpected", 0),
        sample["versions_published"],
        f"{sample['rss_kib'] / MIB:,.1f}",
        sample["fds"],
        sample["python_threads"],
        sample["threads"],
        "-" if math.isnan(cpu) else f"{cpu:.0f}",
    ]


if __name__ == "__main__":
    sys.exit(main())
