"""Serving benchmark: the daemon (``python -m ovmsd``) through each of its front ends against in-process OpenVINO on
the same IR files, in one run.

Models (built with the opset API into a temporary model repository, one model per batch size, f32 weights):

* ``tiny_b1`` / ``tiny_b8``: y = x * 2 on ``x [B,4]`` f32. No compute: a request costs only the serving overhead.
* ``resnet50_b1`` / ``resnet50_b8``: ResNet-50 v1 topology (see ``common.resnet50_model``), ``images [B,3,224,224]``.
* ``conv3_bN`` (``--models conv3``): three 3x3/2 convolutions on ``x [B,3,64,64]`` (48 KiB per image), issue 13's
  workload: its gRPC clients share ONE channel (``--channels auto``).
* ``classifier_bN`` (``--models classifier``): an EfficientNet-Lite0-sized classifier (MobileNet v2 1.0 topology,
  ``common.classifier_model``), ``images [B,3,224,224]``, a few ms per image.

Ceilings (issue 13; ``--no-ceilings`` skips them): a no-op server process answers every front end's request with the
daemon's own answer, captured once: grpcio's sync server with a generic handler for gRPC, uvicorn (httptools,
uvloop) with a raw ASGI app for HTTP. Its cases (``noop:<front end>``) run with the same client code, interleaved
with the others, and every front end is reported as a fraction of its transport's ceiling (``/ no-op``).

``--stages``: afterwards, a daemon with ``--stage-timers`` serves every front end once per model, and the time per
request in each stage of its request path is printed (from the ``ovmsctl_request_stage_*`` counters).

Both sides compile with ``{"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}`` (the daemon through
its config's ``plugin_config``), so the daemon keeps its default THROUGHPUT hint and neither side uses bf16.

Cases, for each model and batch, with 1 and 4 concurrent clients:

* daemon, once per front end (``--front-ends``; the daemon serves gRPC on ``--port`` and REST on ``--rest-port``):

  - ``tfs-grpc``: TF Serving ``Predict`` with ``tensor_content`` (the original daemon side; its tables are kept);
  - ``kserve-grpc``: KServe v2 ``ModelInfer`` on the same port, the input in ``raw_input_contents``;
  - ``kserve-rest-binary``: ``POST /v2/models/{m}/infer`` with the binary data extension both ways
    (``Inference-Header-Content-Length``, ``binary_data_size`` on the input, ``binary_data`` on the output);
  - ``kserve-rest-json``: the same URL with JSON tensors (``data`` flat);
  - ``tfs-rest``: ``POST /v1/models/{m}:predict`` with ``{"instances": ...}`` (row format).

  Closed-loop clients (each its own connection: a gRPC channel, or one keep-alive ``http.client`` connection; the
  request message or body built once; every response decoded to numpy, JSON with orjson) as threads of ONE separate
  client process, the same structure for every front end. The first answer of every client is checked (2x the
  input for tiny, in-process OpenVINO's output for ResNet-50). The client competes with the daemon for the machine's
  cores; the numbers include it. Failed requests are counted, reported, and do not stop the run.
* in-process, same concurrency: 1 client -> a plain sync ``compiled(x)`` loop; 4 clients -> ``AsyncInferQueue``
  with 4 jobs (always busy). Both on one ``compiled_model`` with the same plugin config.

Each case warms up, then measures for ``--duration`` seconds (ResNet-50 cases: ``HEAVY_FACTOR`` times longer, warm-up
too). requests/s and images/s count the work done inside the window, a request straddling an edge by the fraction of
it inside (``common.window_stats``: no +-1 request quantization for ~1 s requests); latency p50/p99 are over the
requests completed inside the window. Cases are interleaved (each front end, then in-process, the order rotated each
repeat) and the whole set is repeated ``--repeats`` times; tables show medians across repeats, ratios are medians of
per-repeat ratios. CPU time of the daemon, the client process and the rest of the machine is recorded for every
window.

Memory: a daemon serving only ``resnet50_b1`` vs. a plain OpenVINO process that compiles the same file with the same
config and creates the same number of infer requests (OPTIMAL_NUMBER_OF_INFER_REQUESTS); VmRSS of each after load and
after a few inferences on every infer request.

Usage::

    .venv/bin/python benchmarks/serving.py --quick            # smoke run, ~4 minutes
    .venv/bin/python benchmarks/serving.py                    # full run, ~50 minutes on 2 cores (ceilings included)
    .venv/bin/python benchmarks/serving.py --front-ends tfs-grpc,kserve-rest-binary --models tiny
    .venv/bin/python benchmarks/serving.py --models tiny --clients 4 --daemon-arg=--grpc-workers=4
    .venv/bin/python benchmarks/serving.py --models conv3,classifier --batches 1 --clients 4 --no-memory \
        --front-ends tfs-grpc,kserve-grpc,kserve-rest-binary --stages   # issue 13's cases, ~8 minutes

Every process it starts is stopped on exit, on Ctrl-C and on failure (and gets SIGTERM if this process is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import (
    REPO,
    Children,
    CpuSnapshot,
    DaemonProcess,
    classifier_model,
    conv3_model,
    count_parameters,
    cpu_flags,
    daemon_env,
    fmt,
    free_port,
    git_state,
    machine_info,
    median,
    print_table,
    proc_status_kib,
    ratio,
    resnet50_model,
    resolve_daemon,
    save_ir,
    sigterm_as_interrupt,
    tiny_model,
    window_stats,
    write_config,
    write_json,
)

from ovmsd.options import default_grpc_workers
from ovmsd.stages import STAGES

PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
DEFAULT_JSON = REPO / "benchmarks" / "results" / "serving.json"
PREDICT_TIMEOUT_S = 300
GRPC_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per client, like separate client processes
    ("grpc.max_send_message_length", 1 << 30),
    ("grpc.max_receive_message_length", 1 << 30),
]

# ResNet-50 cases warm up and measure this many times longer (they complete only ~30 images/s on 2 cores).
HEAVY_FACTOR = 2

# A run is flagged noisy when processes outside the benchmark kept this many cores busy during its window.
NOISY_CORES = 0.25

# Front ends (issue 9): each measured with the same client structure (threads of one client process, one
# connection each, the request built once, every answer decoded to numpy).
FRONT_ENDS = ("tfs-grpc", "kserve-grpc", "kserve-rest-binary", "kserve-rest-json", "tfs-rest")
FRONT_END_NAMES = {
    "tfs-grpc": "TF Serving gRPC (Predict, tensor_content)",
    "kserve-grpc": "KServe v2 gRPC (ModelInfer, raw_input_contents)",
    "kserve-rest-binary": "KServe v2 REST, binary data extension",
    "kserve-rest-json": "KServe v2 REST, JSON tensors",
    "tfs-rest": "TF Serving REST (row format, instances)",
}
BINARY_FRONT_ENDS = ("tfs-grpc", "kserve-grpc", "kserve-rest-binary")
JSON_HEADERS = {"Content-Type": "application/json"}

# Targets.
TINY_MIN_RPS = 2000.0
RESNET_MIN_THROUGHPUT_RATIO = 0.90
MAX_RSS_RATIO = 1.3
KSERVE_GRPC_MIN_RATIO = 0.95  # of TF Serving gRPC, tiny model
REST_BINARY_MIN_RATIO = 0.6  # of gRPC (TF Serving gRPC), tiny model
BINARY_MIN_INPROC_RATIO = 0.9  # every binary-capable front end, resnet50_b1, 4 clients
# Issue 13.
CEILING_MIN_RATIO = 0.85  # conv3_b1 x4: gRPC front ends of the no-op gRPC server, REST binary of the no-op HTTP one
CLASSIFIER_MIN_INPROC_RATIO = 0.95  # classifier_b1 x4, of in-process AsyncInferQueue(4)
P99_MAX_OVER_P50 = 1.5  # conv3_b1 and classifier_b1, 4 clients


FAMILIES = ("tiny", "conv3", "classifier", "resnet50")
HEAVY_FAMILIES = ("resnet50", "classifier")  # cases of these warm up and measure HEAVY_FACTOR times longer


def build_model(family: str, batch: int) -> Any:
    if family == "tiny":
        return tiny_model(batch)
    if family == "conv3":
        return conv3_model(batch)
    if family == "classifier":
        return classifier_model(batch)
    return resnet50_model(batch, seed=0)


@dataclass(frozen=True)
class Model:
    family: str  # "tiny" or "resnet50"
    batch: int
    input: str
    output: str
    shape: tuple[int, ...]
    path: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}_b{self.batch}"


def model_specs(families: list[str], batches: list[int]) -> list[Model]:
    specs = []
    for family in families:
        for b in batches:
            if family == "tiny":
                specs.append(Model("tiny", b, "x", "y", (b, 4)))
            elif family == "resnet50":
                specs.append(Model("resnet50", b, "images", "probs", (b, 3, 224, 224)))
            elif family == "conv3":
                specs.append(Model("conv3", b, "x", "y", (b, 3, 64, 64)))
            elif family == "classifier":
                specs.append(Model("classifier", b, "images", "probs", (b, 3, 224, 224)))
            else:
                raise SystemExit(f"unknown model family {family!r} ({', '.join(FAMILIES)})")
    return specs


def input_data(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# -- client worker process ------------------------------------------------------------------------------------------


class HttpClient:
    """One keep-alive HTTP/1.1 connection: ``http.client`` (default) or ``raw`` (the prebuilt request bytes written
    to a socket, the answer read by Content-Length: the least client CPU a Python HTTP client can spend)."""

    def __init__(self, kind: str, host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.kind, self.path, self.body, self.headers = kind, path, body, headers
        if kind == "http.client":
            import http.client

            self.conn = http.client.HTTPConnection(host, port, timeout=PREDICT_TIMEOUT_S)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif kind == "raw":
            self.sock = socket.create_connection((host, port), timeout=PREDICT_TIMEOUT_S)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
            self.buffer = bytearray()
        else:
            raise SystemExit(f"unknown HTTP client {kind!r} (http.client, raw)")

    def post(self) -> tuple[dict[str, str], bytes]:
        """One POST; returns (headers in lower case, body); an answer other than 200 raises."""
        if self.kind == "http.client":
            self.conn.request("POST", self.path, self.body, self.headers)
            response = self.conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
            return {k.lower(): v for k, v in response.getheaders()}, body
        self.sock.sendall(self.request)
        buffer = self.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise RuntimeError(f"answer without Content-Length: {lines}")
        length = int(headers["content-length"])
        while len(buffer) < length:
            self._receive()
        body = bytes(buffer[:length])
        del buffer[:length]
        status = int(lines[0].split()[1])
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        return headers, body

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.conn if self.kind == "http.client" else self.sock).close()


def json_loads() -> Callable[[bytes], Any]:
    """The client's JSON parser: orjson (as the daemon; installed with it), else the standard library's."""
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a daemon dependency
        return json.loads


GRPC_FRONT_ENDS = ("tfs-grpc", "kserve-grpc")
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
ANSWER_HEADERS = ("content-type", "inference-header-content-length")  # what the no-op server repeats


@dataclass(frozen=True)
class Wire:
    """One front end's request for one model, built once, and how its answer decodes to numpy."""

    front_end: str
    path: str  # the gRPC method or the HTTP path on the daemon
    decode: Callable[..., np.ndarray]  # gRPC: (response message); HTTP: (headers, body)
    message: Any = None  # gRPC: the request message
    response_type: Any = None  # gRPC: the response message class
    body: bytes = b""  # HTTP: the request body
    headers: dict[str, str] = field(default_factory=dict)  # HTTP: the request headers

    @property
    def is_grpc(self) -> bool:
        return self.front_end in GRPC_FRONT_ENDS


def noop_path(front_end: str, model: str) -> str:
    """Where the no-op server answers what the daemon answers ``front_end``'s request for ``model``."""
    return f"/noop.{front_end}/{model}"


def wire_of(front_end: str, model: str, input_name: str, output_name: str, data: np.ndarray) -> Wire:
    if front_end == "tfs-grpc":
        from ovmsd.api.grpc.proto import predict_pb2
        from ovmsd.api.grpc.tensors import numpy_to_tensor, tensor_to_numpy

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        numpy_to_tensor(data, request.inputs[input_name])
        return Wire(front_end, PREDICT_PATH, lambda response: tensor_to_numpy(response.outputs[output_name]),
                    message=request, response_type=predict_pb2.PredictResponse)  # fmt: skip
    if front_end == "kserve-grpc":
        from ovmsd.api.grpc.proto import kserve_predict_v2_pb2

        request = kserve_predict_v2_pb2.ModelInferRequest(model_name=model)
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = input_name, "FP32"
        tensor.shape.extend(data.shape)
        request.raw_input_contents.append(data.tobytes())

        def infer_output(response: Any) -> np.ndarray:
            out = response.outputs[0]
            return np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(tuple(out.shape))

        return Wire(front_end, MODEL_INFER_PATH, infer_output, message=request,
                    response_type=kserve_predict_v2_pb2.ModelInferResponse)  # fmt: skip
    loads = json_loads()
    if front_end == "kserve-rest-binary":
        raw = data.tobytes()
        header = json.dumps({
            "inputs": [{"name": input_name, "shape": list(data.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }).encode()  # fmt: skip
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}

        def binary_output(headers: dict[str, str], body: bytes) -> np.ndarray:
            split = int(headers["inference-header-content-length"])
            out = loads(body[:split])["outputs"][0]
            return np.frombuffer(body, dtype=np.float32, offset=split).reshape(out["shape"])

        return Wire(front_end, f"/v2/models/{model}/infer", binary_output, body=header + raw, headers=headers)
    if front_end == "kserve-rest-json":
        body = json.dumps({
            "inputs": [{"name": input_name, "shape": list(data.shape), "datatype": "FP32",
                        "data": data.reshape(-1).tolist()}],
        }).encode()  # fmt: skip

        def json_output(headers: dict[str, str], body: bytes) -> np.ndarray:
            out = loads(body)["outputs"][0]
            return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

        return Wire(front_end, f"/v2/models/{model}/infer", json_output, body=body, headers=JSON_HEADERS)
    if front_end == "tfs-rest":
        body = json.dumps({"instances": data.tolist()}).encode()

        def rows_output(headers: dict[str, str], body: bytes) -> np.ndarray:
            return np.asarray(loads(body)["predictions"], dtype=np.float32)

        return Wire(front_end, f"/v1/models/{model}:predict", rows_output, body=body, headers=JSON_HEADERS)
    raise SystemExit(f"unknown front end {front_end!r} ({', '.join(FRONT_ENDS)})")


def grpc_channel(address: str) -> Any:
    import grpc

    return grpc.insecure_channel(address, options=GRPC_OPTIONS)


def make_caller(wire: Wire, cmd: dict[str, Any], channel: Any = None) -> tuple[Callable[[], np.ndarray], Any]:
    """A function that sends ``wire``'s request (to the daemon, or with ``cmd["target"] == "noop"`` to the no-op
    server) and returns the answer decoded to numpy, and the connection to close (None for a shared channel)."""
    noop = cmd.get("target") == "noop"
    model = cmd["model"]
    path = noop_path(wire.front_end, model) if noop else wire.path
    if wire.is_grpc:
        own = channel is None
        if own:
            channel = grpc_channel(cmd["noop_address" if noop else "address"])
        method = channel.unary_unary(
            path,
            request_serializer=type(wire.message).SerializeToString,
            response_deserializer=wire.response_type.FromString,
        )
        message, decode = wire.message, wire.decode

        def call() -> np.ndarray:
            return decode(method(message, timeout=PREDICT_TIMEOUT_S))

        return call, channel if own else None
    host, _, port = cmd["noop_rest_address" if noop else "rest_address"].rpartition(":")
    http = HttpClient(cmd.get("http_client", "http.client"), host, int(port), path, wire.body, wire.headers)
    decode_http = wire.decode

    def call_http() -> np.ndarray:
        return decode_http(*http.post())

    return call_http, http


def capture_answers(cmd: dict[str, Any]) -> dict[str, Any]:
    """``op: capture``: the daemon's answer (its raw bytes) to every front end's request for every model, for the
    no-op server to repeat."""
    grpc_answers: dict[str, str] = {}
    http_answers: dict[str, Any] = {}
    channel = grpc_channel(cmd["address"])
    try:
        for m in cmd["models"]:
            data = input_data(tuple(m["shape"]))
            for front_end in cmd["front_ends"]:
                wire = wire_of(front_end, m["model"], m["input"], m["output"], data)
                key = noop_path(front_end, m["model"])
                if wire.is_grpc:
                    raw = channel.unary_unary(wire.path, request_serializer=type(wire.message).SerializeToString)(
                        wire.message, timeout=PREDICT_TIMEOUT_S
                    )
                    grpc_answers[key] = base64.b64encode(raw).decode()
                    continue
                host, _, port = cmd["rest_address"].rpartition(":")
                http = HttpClient("raw", host, int(port), wire.path, wire.body, wire.headers)
                try:
                    headers, body = http.post()
                finally:
                    http.close()
                http_answers[key] = {"headers": [[k, headers[k]] for k in ANSWER_HEADERS if k in headers],
                                     "body": base64.b64encode(body).decode()}  # fmt: skip
    finally:
        channel.close()
    return {"grpc": grpc_answers, "http": http_answers}


def run_clients(cmd: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop clients of one front end as threads of this process (each its own connection); returns counts,
    latencies, failed requests and CPU of the window."""
    clients = int(cmd["clients"])
    front_end = cmd.get("front_end", "tfs-grpc")
    data = input_data(tuple(cmd["shape"]))
    wire = wire_of(front_end, cmd["model"], cmd["input"], cmd["output"], data)
    callers, connections = [], []
    try:
        shared = None
        if wire.is_grpc and cmd.get("shared_channel"):  # one channel (one TCP connection) for every thread
            shared = grpc_channel(cmd["noop_address" if cmd.get("target") == "noop" else "address"])
            connections.append(shared)
        for _ in range(clients):
            call, connection = make_caller(wire, cmd, shared)
            callers.append(call)
            if connection is not None:
                connections.append(connection)
        expected = None if cmd.get("expect") is None else np.asarray(cmd["expect"], dtype=np.float32)
        for call in callers:  # connect and check the answer before timing anything
            out = call()
            if cmd.get("check_scale") and not np.allclose(out, data * cmd["check_scale"]):
                raise AssertionError(f"wrong answer from the daemon ({front_end})")
            if expected is not None and not np.allclose(out.reshape(-1), expected, rtol=1e-3, atol=1e-5):
                raise AssertionError(f"{front_end}'s answer differs from in-process OpenVINO's")

        window: dict[str, float] = {}
        samples: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
        errors: list[str] = []
        failed = [0] * clients
        barrier = threading.Barrier(clients + 1)

        def client(i: int) -> None:
            call, mine = callers[i], samples[i]
            barrier.wait()
            end = window["end"]
            clock = time.perf_counter
            while True:
                start = clock()
                if start >= end:
                    return
                try:
                    call()
                except Exception as exc:  # counted and reported; the client goes on
                    failed[i] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}"[:500])
                    time.sleep(0.01)
                    continue
                mine.append((start, clock()))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        pids = {"daemon": int(cmd["daemon_pid"]), "client": os.getpid()}
        t0 = time.perf_counter()
        window["warm_end"] = t0 + float(cmd["warmup"])
        window["end"] = window["warm_end"] + float(cmd["duration"])
        barrier.wait()
        time.sleep(max(0.0, window["warm_end"] - time.perf_counter()))
        before = CpuSnapshot.take(pids)
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        after = CpuSnapshot.take(pids)
        for t in threads:
            t.join()
    finally:
        for connection in connections:
            connection.close()
    flat = [x for per in samples for x in per]
    return {
        **window_stats(flat, window["warm_end"], window["end"]),
        "per_client_completed": [window_stats(per, window["warm_end"], window["end"])["completed"] for per in samples],
        "cpu": after.usage_since(before),
        "failed": sum(failed),
        "errors": errors,
    }


def client_worker() -> int:
    """``--worker client``: JSON commands on stdin, one JSON result line each on stdout."""
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            result = capture_answers(cmd) if cmd.get("op") == "capture" else run_clients(cmd)
        except Exception as exc:
            result = {"fatal": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


class ClientProcess:
    def __init__(self, children: Children, log_path: Path) -> None:
        self.children = children
        self._log = log_path.open("wb")
        self.log_path = log_path
        self.process = children.popen(
            "clients",
            [sys.executable, str(Path(__file__).resolve()), "--worker", "client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"client process exited ({self.process.poll()}):\n{self.log_path.read_text()[-3000:]}")
        result = json.loads(line)
        if "fatal" in result:
            raise RuntimeError(f"client process failed: {result['fatal']}\n{result.get('traceback', '')}")
        if result.get("failed"):
            print(f"warning: {result['failed']} failed requests during {cmd.get('front_end', 'tfs-grpc')} "
                  f"{cmd['model']} x{cmd['clients']}: {result['errors']}", file=sys.stderr, flush=True)  # fmt: skip
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.children.stop(self.process)
        self._log.close()


# -- the no-op servers: the transports' ceiling -----------------------------------------------------------------


def noop_worker(answers_path: str, grpc_port: int, http_port: int, workers: int) -> int:
    """``--worker noop``: a gRPC server and an HTTP server that do no work, the ceiling of each transport.

    gRPC: grpcio's sync server with a generic handler (the request's bytes in, not parsed; the daemon's captured
    answer out as bytes), on ``ThreadPoolExecutor(workers)`` as the daemon's server has ``workers`` threads. HTTP:
    uvicorn with httptools and uvloop, the daemon's REST stack, with an ASGI app that reads the whole body and sends
    the captured answer on the event loop. Prints ``ready`` once both listen.
    """
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import uvicorn

    answers = json.loads(Path(answers_path).read_text())

    def fixed(answer: bytes) -> Callable[[bytes, Any], bytes]:
        def behavior(request: bytes, context: Any) -> bytes:
            return answer

        return behavior

    handlers = {path: grpc.unary_unary_rpc_method_handler(fixed(base64.b64decode(raw)))
                for path, raw in answers["grpc"].items()}  # fmt: skip

    class Fixed(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            return handlers.get(details.method)

    server = grpc.server(ThreadPoolExecutor(workers), options=GRPC_OPTIONS[1:], handlers=[Fixed()])
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()

    http_answers = {
        path: ([(b"content-length", str(len(body := base64.b64decode(a["body"]))).encode())]
               + [(k.encode(), v.encode()) for k, v in a["headers"]], body)
        for path, a in answers["http"].items()
    }  # fmt: skip
    missing = ([(b"content-length", b"0")], b"")

    async def app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers, body = http_answers.get(scope["path"], missing)
        await send({"type": "http.response.start", "status": 200 if body else 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, host="127.0.0.1", port=http_port, loop="uvloop", http="httptools", ws="none",
                            lifespan="off", access_log=False, log_level="warning", server_header=False,
                            timeout_keep_alive=75)  # fmt: skip
    http_server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.ensure_future(http_server.serve())
        while not http_server.started:
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    import uvloop

    uvloop.run(serve())
    server.stop(0)
    return 0


class NoopServer:
    """The no-op servers' process, answering what the daemon answered (``capture_answers``)."""

    def __init__(self, children: Children, answers: dict[str, Any], tmp: Path, workers: int) -> None:
        path = tmp / "noop-answers.json"
        path.write_text(json.dumps(answers))
        self.grpc_port, self.http_port = free_port(), free_port()
        self.address, self.rest_address = f"127.0.0.1:{self.grpc_port}", f"127.0.0.1:{self.http_port}"
        self.children = children
        self._log = (tmp / "noop.log").open("wb")
        self.process = children.popen(
            "noop-server",
            [sys.executable, str(Path(__file__).resolve()), "--worker", "noop", "--answers", str(path),
             "--noop-grpc-port", str(self.grpc_port), "--noop-http-port", str(self.http_port),
             "--noop-workers", str(workers)],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the no-op server did not start:\n{(tmp / 'noop.log').read_text()[-3000:]}")
        self.pid = self.process.pid

    def stop(self) -> None:
        self.children.stop(self.process)
        self._log.close()


# -- stage breakdown ------------------------------------------------------------------------------------------------

FIRST_STAGE = {"grpc": "parse", "http": "http-read"}  # counted once per request


def scrape_stages(rest_address: str) -> dict[str, tuple[float, float]]:
    """The daemon's ``ovmsctl_request_stage_{seconds,count}_total`` counters: stage -> (seconds, count)."""
    import http.client

    host, _, port = rest_address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        for index, family in enumerate(("ovmsctl_request_stage_seconds_total", "ovmsctl_request_stage_count_total")):
            if line.startswith(family + "{"):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                found.setdefault(stage, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {stage: (v[0], v[1]) for stage, v in found.items()}


def measure_stages(
    children: Children,
    clients_proc: ClientProcess,
    models: list[Model],
    config: Path,
    tmp: Path,
    front_ends: list[str],
    clients: int,
    warmup: float,
    duration: float,
    daemon_args: list[str],
    env: dict[str, str] | None,
    case_args: Callable[[Model], dict[str, Any]],
) -> list[dict[str, Any]]:
    """A daemon with ``--stage-timers`` (and metrics on, which export them), each front end once per model: the
    time per request in each stage of the request path, from the counters' growth over the window."""
    rest_port = free_port()
    args = ["--stage-timers", "--metrics-enable", "--rest-port", str(rest_port), "--rest-bind-address", "127.0.0.1"]
    daemon = DaemonProcess(children, config, tmp / "daemon-stages.log", [*args, *daemon_args], label="stages", env=env)
    rest_address = f"127.0.0.1:{rest_port}"
    rows = []
    try:
        daemon.wait_available([m.name for m in models])
        for m in models:
            for fe in front_ends:
                common = dict(address=daemon.address, rest_address=rest_address, front_end=fe, daemon_pid=daemon.pid,
                              clients=clients, **case_args(m))  # fmt: skip
                clients_proc.run(**common, warmup=0.0, duration=max(0.5, warmup))
                before = scrape_stages(rest_address)
                raw = clients_proc.run(**common, warmup=0.0, duration=duration)
                after = scrape_stages(rest_address)
                transport = "grpc" if fe in GRPC_FRONT_ENDS else "http"
                first = FIRST_STAGE[transport]
                requests = after.get(first, (0, 0))[1] - before.get(first, (0, 0))[1]
                per_request = {
                    stage: (after[stage][0] - before.get(stage, (0.0, 0.0))[0]) * 1e6 / requests
                    for stage in after
                    if requests and after[stage][0] > before.get(stage, (0.0, 0.0))[0]
                }
                rows.append({
                    "model": m.name, "front_end": fe, "clients": clients, "requests": requests,
                    "req_s": raw["work"] / raw["window_s"], "stages_us": per_request,
                    "stages_sum_us": sum(per_request.values()),
                    "latency_mean_us": raw["latency"].get("mean_ms", math.nan) * 1e3,
                    "daemon_cpu_us_per_req": raw["cpu"].get("daemon_cpu_s", math.nan) * 1e6 / max(1.0, raw["work"]),
                })  # fmt: skip
                print(f"  stages {m.name} {fe}: {rows[-1]['req_s']:.0f} req/s, "
                      f"{rows[-1]['stages_sum_us']:.0f} us/request in the stages", flush=True)  # fmt: skip
    finally:
        daemon.stop()
    return rows


def print_stages(rows: list[dict[str, Any]], markdown: bool = False) -> None:
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        seen = [s for s in STAGES if any(s in r["stages_us"] for r in mine)]
        table = [[stage, *(fmt(r["stages_us"].get(stage, math.nan), 1) for r in mine)] for stage in seen]
        table.append(["sum of the stages", *(fmt(r["stages_sum_us"], 1) for r in mine)])
        table.append(["client latency (mean)", *(fmt(r["latency_mean_us"], 1) for r in mine)])
        table.append(["daemon CPU per request", *(fmt(r["daemon_cpu_us_per_req"], 1) for r in mine)])
        table.append(["req/s (timers on)", *(fmt(r["req_s"], 0) for r in mine)])
        print_table(
            ["stage (us per request)", *(r["front_end"] for r in mine)],
            table,
            markdown=markdown,
            title=f"Stage breakdown: {model}, {mine[0]['clients']} clients (--stage-timers; a stage's wall time on "
            "the request's thread, so waits for the GIL count where they happen)",
        )


# -- memory probe process -------------------------------------------------------------------------------------------


def memory_worker(model_path: str, rounds: int) -> int:
    """``--worker memory``: plain in-process OpenVINO; prints VmRSS after import, after load, after inference."""
    pid = os.getpid()
    import openvino as ov

    rss_import = proc_status_kib(pid, "VmRSS")["VmRSS"]
    core = ov.Core()
    compiled = core.compile_model(model_path, "CPU", PLUGIN_CONFIG)
    nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    requests = [compiled.create_infer_request() for _ in range(nireq)]
    loaded = proc_status_kib(pid, "VmRSS")["VmRSS"]
    data = input_data(tuple(compiled.inputs[0].get_shape()))
    for _ in range(rounds):
        for r in requests:
            r.start_async([data], share_inputs=True)
        for r in requests:
            r.wait()
    after = proc_status_kib(pid, "VmRSS", "VmHWM", "RssAnon", "RssFile")
    print(json.dumps({"nireq": nireq, "rss_import_kib": rss_import, "rss_loaded_kib": loaded, "after": after}))
    return 0


# -- in-process baseline --------------------------------------------------------------------------------------------


class InProcess:
    """The same IR compiled in this process with the same plugin config."""

    def __init__(self, core: Any, model: Model) -> None:
        import openvino as ov

        self.ov = ov
        self.model = model
        self.compiled = core.compile_model(model.path, "CPU", PLUGIN_CONFIG)
        self.nireq = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.data = input_data(model.shape)
        self._queues: dict[int, Any] = {}

    def queue(self, jobs: int) -> Any:
        if jobs not in self._queues:
            self._queues[jobs] = self.ov.AsyncInferQueue(self.compiled, jobs)
        return self._queues[jobs]

    def prime(self, jobs: list[int]) -> None:
        self.compiled(self.data)
        for j in jobs:
            q = self.queue(j)
            for _ in range(2 * j):
                q.start_async(self.data, share_inputs=True)
            q.wait_all()

    def run(self, concurrency: int, warmup: float, duration: float, watch: dict[str, int]) -> dict[str, Any]:
        if concurrency == 1:
            return self._sync(warmup, duration, watch)
        return self._async(concurrency, warmup, duration, watch)

    def _sync(self, warmup: float, duration: float, watch: dict[str, int]) -> dict[str, Any]:
        compiled, data, clock = self.compiled, self.data, time.perf_counter
        t0 = clock()
        warm_end, end = t0 + warmup, t0 + warmup + duration
        while clock() < warm_end:
            compiled(data)
        before = CpuSnapshot.take(watch)
        samples = []
        while True:
            start = clock()
            if start >= end:
                break
            compiled(data)
            samples.append((start, clock()))
        after = CpuSnapshot.take(watch)
        return self._result("sync compiled(x)", samples, warm_end, end, after.usage_since(before))

    def _async(self, jobs: int, warmup: float, duration: float, watch: dict[str, int]) -> dict[str, Any]:
        q, data, clock = self.queue(jobs), self.data, time.perf_counter
        done_at: list[tuple[float, float]] = []

        def callback(request: Any, started: float) -> None:
            now = clock()
            done_at.append((started, now))

        q.set_callback(callback)
        t0 = clock()
        warm_end, end = t0 + warmup, t0 + warmup + duration
        before = None
        while True:
            q.get_idle_request_id()  # blocks (GIL released) until a job is free: latency starts when it runs
            now = clock()
            if before is None and now >= warm_end:
                before = CpuSnapshot.take(watch)
            if now >= end:
                break
            q.start_async(data, userdata=now, share_inputs=True)
        after = CpuSnapshot.take(watch)
        q.wait_all()
        cpu = after.usage_since(before) if before is not None else {}
        return self._result(f"AsyncInferQueue({jobs})", done_at, warm_end, end, cpu)

    def _result(
        self, mode: str, samples: list[tuple[float, float]], start: float, end: float, cpu: dict[str, float]
    ) -> dict[str, Any]:
        return {"mode": mode, **window_stats(samples, start, end), "cpu": cpu}


# -- orchestration --------------------------------------------------------------------------------------------------


def row_of(
    side: str, repeat: int, model: Model, clients: int, raw: dict[str, Any], front_end: str | None = None
) -> dict[str, Any]:
    rps = raw["work"] / raw["window_s"]
    cpu = raw.get("cpu", {})

    def per_req(key: str) -> float:
        return cpu.get(key, math.nan) * 1e3 / raw["work"] if raw["work"] else math.nan

    return {
        "side": side,
        "front_end": front_end if side != "in-process" else "in-process",
        "repeat": repeat,
        "model": model.name,
        "family": model.family,
        "batch": model.batch,
        "clients": clients,
        "mode": raw.get("mode", f"{front_end} x{clients} threads, separate client process"),
        "requests": raw["work"],  # requests' worth of work done inside the window (edges count in part)
        "completed": raw["completed"],
        "window_s": raw["window_s"],
        "req_s": rps,
        "img_s": rps * model.batch,
        **{k: v for k, v in raw["latency"].items() if k != "n"},
        "cpu": cpu,
        "daemon_cpu_ms_per_req": per_req("daemon_cpu_s"),
        "client_cpu_ms_per_req": per_req("client_cpu_s"),
        "inproc_cpu_ms_per_req": per_req("self_cpu_s"),
        "per_client_completed": raw.get("per_client_completed"),
        "failed": raw.get("failed", 0),
        "errors": raw.get("errors", []),
    }


def summarize(rows: list[dict[str, Any]], models: list[Model], clients_list: list[int]) -> list[dict[str, Any]]:
    out = []
    for m in models:
        for c in clients_list:
            d = [r for r in rows if r["side"] == "daemon" and r.get("front_end", "tfs-grpc") == "tfs-grpc"
                 and r["model"] == m.name and r["clients"] == c]  # fmt: skip
            p = [r for r in rows if r["side"] == "in-process" and r["model"] == m.name and r["clients"] == c]
            if not d and not p:
                continue
            paired = {r["repeat"]: r for r in p}
            thr_ratios = [ratio(r["req_s"], paired[r["repeat"]]["req_s"]) for r in d if r["repeat"] in paired]
            p50_ratios = [ratio(r["p50_ms"], paired[r["repeat"]]["p50_ms"]) for r in d if r["repeat"] in paired]

            def med(rs: list[dict[str, Any]], key: str) -> float:
                return median(r[key] for r in rs)

            out.append({
                "model": m.name, "family": m.family, "batch": m.batch, "clients": c, "repeats": len(d),
                "daemon": {k: med(d, k) for k in ("req_s", "img_s", "p50_ms", "p99_ms", "mean_ms", "requests",
                                                   "completed", "daemon_cpu_ms_per_req", "client_cpu_ms_per_req")},
                "in_process": {"mode": p[0]["mode"] if p else None,
                               **{k: med(p, k) for k in ("req_s", "img_s", "p50_ms", "p99_ms", "mean_ms", "requests",
                                                          "completed", "inproc_cpu_ms_per_req")}},
                "throughput_ratio": median(thr_ratios),
                "p50_ratio": median(p50_ratios),
                "throughput_ratios": thr_ratios,
                "other_busy_cores": median(r["cpu"].get("other_busy_cores", math.nan) for r in d + p),
                "noisy_runs": sum(r["cpu"].get("other_busy_cores", 0.0) > NOISY_CORES for r in d + p),
                "runs": len(d + p),
                "steal_cores": median(r["cpu"].get("steal_cores", math.nan) for r in d + p),
            })  # fmt: skip
    return out


def summarize_front_ends(
    rows: list[dict[str, Any]], models: list[Model], clients_list: list[int], front_ends: list[str]
) -> list[dict[str, Any]]:
    """Per model, clients and front end: medians, and medians of the per-repeat ratios to in-process OpenVINO and
    to TF Serving gRPC (the same repeat's cases, run back to back)."""
    out = []
    for m in models:
        for c in clients_list:
            case = [r for r in rows if r["model"] == m.name and r["clients"] == c]
            inproc = {r["repeat"]: r for r in case if r["side"] == "in-process"}
            daemon = [r for r in case if r["side"] == "daemon"]
            tfs = {r["repeat"]: r for r in daemon if r.get("front_end", "tfs-grpc") == "tfs-grpc"}
            for fe in [*front_ends, *(f"noop:{f}" for f in front_ends), "in-process"]:
                if fe == "in-process":
                    mine = list(inproc.values())
                elif fe.startswith("noop:"):
                    mine = [r for r in case if r["side"] == "noop" and r["front_end"] == fe]
                else:
                    mine = [r for r in daemon if r.get("front_end", "tfs-grpc") == fe]
                if not mine:
                    continue
                ceiling = {r["repeat"]: r for r in case if r["side"] == "noop" and r["front_end"] == f"noop:{fe}"}
                out.append({
                    "model": m.name, "family": m.family, "batch": m.batch, "clients": c, "front_end": fe,
                    "repeats": len(mine),
                    **{k: median(r[k] for r in mine) for k in ("req_s", "img_s", "p50_ms", "p99_ms", "mean_ms",
                                                              "daemon_cpu_ms_per_req", "client_cpu_ms_per_req",
                                                              "inproc_cpu_ms_per_req", "completed")},
                    "req_s_runs": [r["req_s"] for r in mine],
                    "vs_in_process": median(ratio(r["req_s"], inproc[r["repeat"]]["req_s"]) for r in mine
                                            if r["repeat"] in inproc),
                    "vs_in_process_runs": [ratio(r["req_s"], inproc[r["repeat"]]["req_s"]) for r in mine
                                           if r["repeat"] in inproc],
                    "vs_tfs_grpc": median(ratio(r["req_s"], tfs[r["repeat"]]["req_s"]) for r in mine
                                          if r["repeat"] in tfs),
                    "vs_tfs_grpc_runs": [ratio(r["req_s"], tfs[r["repeat"]]["req_s"]) for r in mine
                                         if r["repeat"] in tfs],
                    "vs_ceiling": median(ratio(r["req_s"], ceiling[r["repeat"]]["req_s"]) for r in mine
                                         if r["repeat"] in ceiling),
                    "vs_ceiling_runs": [ratio(r["req_s"], ceiling[r["repeat"]]["req_s"]) for r in mine
                                        if r["repeat"] in ceiling],
                    "p99_over_p50": median(ratio(r["p99_ms"], r["p50_ms"]) for r in mine),
                    "failed": sum(r.get("failed", 0) for r in mine),
                    "errors": sorted({e for r in mine for e in r.get("errors", [])})[:5],
                    "other_busy_cores": median(r["cpu"].get("other_busy_cores", math.nan) for r in mine),
                    "noisy_runs": sum(r["cpu"].get("other_busy_cores", 0.0) > NOISY_CORES for r in mine),
                })  # fmt: skip
    return out


def verdict(value: float | None, minimum: float | None = None, maximum: float | None = None) -> str:
    """PASS or MISS against the bound given, N/A when nothing was measured."""
    if value is None or math.isnan(value):
        return "N/A"
    ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    return "PASS" if ok else "MISS"


def joined(values: list[float]) -> str:
    return ", ".join(fmt(v, 2) for v in values)


def evaluate_front_end_targets(front: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 9's targets, client included: every tiny case for the two gRPC/REST ratios, resnet50_b1 x4 for the
    in-process one."""
    targets = []
    for s in front:
        case = f"{s['model']} x{s['clients']}"
        if s["family"] == "tiny" and s["front_end"] == "kserve-grpc":
            targets.append({"target": f"{case}: KServe gRPC >= {KSERVE_GRPC_MIN_RATIO} of TF Serving gRPC",
                            "measured": s["vs_tfs_grpc"], "unit": "ratio", "runs": joined(s["vs_tfs_grpc_runs"]),
                            "status": verdict(s["vs_tfs_grpc"], KSERVE_GRPC_MIN_RATIO)})  # fmt: skip
        if s["family"] == "tiny" and s["front_end"] == "kserve-rest-binary":
            targets.append({"target": f"{case}: KServe REST binary >= {REST_BINARY_MIN_RATIO} of TF Serving gRPC",
                            "measured": s["vs_tfs_grpc"], "unit": "ratio", "runs": joined(s["vs_tfs_grpc_runs"]),
                            "status": verdict(s["vs_tfs_grpc"], REST_BINARY_MIN_RATIO)})  # fmt: skip
    for s in front:
        if s["model"] == "resnet50_b1" and s["clients"] == 4 and s["front_end"] in BINARY_FRONT_ENDS:
            targets.append({
                "target": f"resnet50_b1 x4: {s['front_end']} >= {BINARY_MIN_INPROC_RATIO} of in-process "
                "AsyncInferQueue(4)",
                "measured": s["vs_in_process"], "unit": "ratio", "runs": joined(s["vs_in_process_runs"]),
                "status": verdict(s["vs_in_process"], BINARY_MIN_INPROC_RATIO),
            })  # fmt: skip
    return targets


def evaluate_request_path_targets(front: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 13's targets, client included: on conv3_b1 with 4 clients (one shared channel), the gRPC front ends
    and REST binary against the no-op server of their transport; classifier_b1 with 4 clients against in-process
    OpenVINO; p99 within P99_MAX_OVER_P50 of p50 at 4 clients on both."""
    targets = []
    for s in front:
        if s["batch"] != 1 or s["clients"] != 4 or s["front_end"] not in BINARY_FRONT_ENDS:
            continue
        case = f"{s['model']} x4: {s['front_end']}"
        if s["family"] == "conv3":
            transport = "gRPC" if s["front_end"] in GRPC_FRONT_ENDS else "HTTP"
            targets.append({"target": f"{case} >= {CEILING_MIN_RATIO} of the no-op {transport} server",
                            "measured": s["vs_ceiling"], "runs": joined(s["vs_ceiling_runs"]),
                            "status": verdict(s["vs_ceiling"], CEILING_MIN_RATIO)})  # fmt: skip
        if s["family"] == "classifier":
            targets.append({"target": f"{case} >= {CLASSIFIER_MIN_INPROC_RATIO} of in-process AsyncInferQueue(4)",
                            "measured": s["vs_in_process"], "runs": joined(s["vs_in_process_runs"]),
                            "status": verdict(s["vs_in_process"], CLASSIFIER_MIN_INPROC_RATIO)})  # fmt: skip
        if s["family"] in ("conv3", "classifier"):
            targets.append({"target": f"{case}: p99 <= {P99_MAX_OVER_P50}x p50", "measured": s["p99_over_p50"],
                            "runs": f"p50 {fmt(s['p50_ms'], 2)} ms, p99 {fmt(s['p99_ms'], 2)} ms",
                            "status": verdict(s["p99_over_p50"], maximum=P99_MAX_OVER_P50)})  # fmt: skip
    return targets


def evaluate_targets(summary: list[dict[str, Any]], memory: dict[str, Any] | None) -> list[dict[str, Any]]:
    targets = []

    def find(model: str, clients: int) -> dict[str, Any] | None:
        return next((s for s in summary if s["model"] == model and s["clients"] == clients), None)

    tiny = find("tiny_b1", 4)
    targets.append({
        "target": f"tiny model (batch 1), 4 clients: >= {TINY_MIN_RPS:,.0f} requests/s (client included)",
        "measured": None if tiny is None else tiny["daemon"]["req_s"], "unit": "req/s",
        "status": "N/A" if tiny is None else ("PASS" if tiny["daemon"]["req_s"] >= TINY_MIN_RPS else "MISS"),
    })  # fmt: skip
    for name in ("resnet50_b1", "resnet50_b8"):
        s = find(name, 4)
        targets.append({
            "target": f"{name}, 4 clients: daemon throughput >= {RESNET_MIN_THROUGHPUT_RATIO:.0%} of in-process "
            "AsyncInferQueue(4)",
            "measured": None if s is None else s["throughput_ratio"], "unit": "ratio",
            "status": "N/A" if s is None or math.isnan(s["throughput_ratio"])
            else ("PASS" if s["throughput_ratio"] >= RESNET_MIN_THROUGHPUT_RATIO else "MISS"),
        })  # fmt: skip
    rss = None if memory is None else memory["medians"].get("rss_ratio_after_inference")
    targets.append({
        "target": f"daemon RSS (resnet50_b1 loaded, after inference) <= {MAX_RSS_RATIO}x in-process",
        "measured": rss, "unit": "ratio",
        "status": "N/A" if rss is None or math.isnan(rss) else ("PASS" if rss <= MAX_RSS_RATIO else "MISS"),
    })  # fmt: skip
    return targets


def measure_memory(
    children: Children,
    clients_proc: ClientProcess,
    model: Model,
    tmp: Path,
    repeats: int,
    daemon_args: list[str],
    tiny: Model | None,
    concurrency: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Daemon serving only ``model`` vs. a plain OpenVINO process with the same compiled model and infer requests."""
    runs = []
    config = write_config(
        tmp / f"memory-{model.name}.json",
        [{"name": model.name, "base_path": str(Path(model.path).parent.parent), "plugin_config": PLUGIN_CONFIG}],
    )
    for i in range(repeats):
        daemon = DaemonProcess(
            children, config, tmp / f"memory-daemon-{i}.log", daemon_args, label="memory-daemon", env=env
        )
        try:
            daemon.wait_available([model.name])
            time.sleep(0.5)
            loaded = proc_status_kib(daemon.pid, "VmRSS")["VmRSS"]
            clients_proc.run(
                address=daemon.address, daemon_pid=daemon.pid, model=model.name, input=model.input,
                output=model.output, shape=list(model.shape), clients=concurrency, warmup=0.0, duration=2.0,
            )  # fmt: skip
            after = proc_status_kib(daemon.pid, "VmRSS", "VmHWM", "RssAnon", "RssFile")
        finally:
            daemon.stop()
        probe = children.popen(
            "memory-probe",
            [sys.executable, str(Path(__file__).resolve()), "--worker", "memory", "--model-path", model.path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = probe.communicate(timeout=300)
        children.stop(probe)
        if probe.returncode != 0:
            raise RuntimeError(f"memory probe failed ({probe.returncode}):\n{err[-3000:]}")
        inproc = json.loads(out.strip().splitlines()[-1])
        runs.append({
            "daemon_rss_loaded_kib": loaded, "daemon_after": after,
            "inproc_rss_import_kib": inproc["rss_import_kib"], "inproc_rss_loaded_kib": inproc["rss_loaded_kib"],
            "inproc_after": inproc["after"], "nireq": inproc["nireq"],
            "rss_ratio_loaded": ratio(loaded, inproc["rss_loaded_kib"]),
            "rss_ratio_after_inference": ratio(after["VmRSS"], inproc["after"]["VmRSS"]),
        })  # fmt: skip
        print(
            f"  memory {i + 1}/{repeats}: daemon {after['VmRSS'] / 1024:.0f} MiB, in-process "
            f"{inproc['after']['VmRSS'] / 1024:.0f} MiB (after inference, nireq {inproc['nireq']})",
            flush=True,
        )
    baseline = None
    if tiny is not None:  # the daemon's fixed cost: the same daemon serving only a model with no weights
        cfg = write_config(
            tmp / "memory-tiny.json",
            [{"name": tiny.name, "base_path": str(Path(tiny.path).parent.parent), "plugin_config": PLUGIN_CONFIG}],
        )
        daemon = DaemonProcess(
            children, cfg, tmp / "memory-daemon-tiny.log", daemon_args, label="memory-daemon", env=env
        )
        try:
            daemon.wait_available([tiny.name])
            time.sleep(0.5)
            baseline = proc_status_kib(daemon.pid, "VmRSS")["VmRSS"]
        finally:
            daemon.stop()

    def med(key: str, sub: str | None = None) -> float:
        return median((r[key][sub] if sub else r[key]) for r in runs)

    return {
        "model": model.name,
        "concurrency": concurrency,
        "runs": runs,
        "daemon_tiny_only_rss_kib": baseline,
        "medians": {
            "daemon_rss_loaded_mib": med("daemon_rss_loaded_kib") / 1024,
            "daemon_rss_after_mib": med("daemon_after", "VmRSS") / 1024,
            "daemon_hwm_mib": med("daemon_after", "VmHWM") / 1024,
            "inproc_rss_import_mib": med("inproc_rss_import_kib") / 1024,
            "inproc_rss_loaded_mib": med("inproc_rss_loaded_kib") / 1024,
            "inproc_rss_after_mib": med("inproc_after", "VmRSS") / 1024,
            "inproc_hwm_mib": med("inproc_after", "VmHWM") / 1024,
            "rss_ratio_loaded": med("rss_ratio_loaded"),
            "rss_ratio_after_inference": med("rss_ratio_after_inference"),
        },
    }


def print_front_ends(front: list[dict[str, Any]], markdown: bool = False) -> None:
    rows = []
    for s in front:
        inproc = s["front_end"] == "in-process"
        noop = s["front_end"].startswith("noop:")
        rows.append([
            s["model"], s["batch"], s["clients"], s["front_end"], fmt(s["req_s"]), fmt(s["img_s"]),
            fmt(s["p50_ms"], 2), fmt(s["p99_ms"], 2),
            fmt(s["inproc_cpu_ms_per_req"] if inproc else s["daemon_cpu_ms_per_req"], 3),
            "-" if inproc else fmt(s["client_cpu_ms_per_req"], 3),
            "-" if inproc or noop else fmt(s["vs_tfs_grpc"], 2),
            "-" if inproc or noop else fmt(s.get("vs_ceiling", math.nan), 2),
            "-" if inproc else fmt(s["vs_in_process"], 2),
            "-" if inproc else s["failed"], f"{s['noisy_runs']}/{s['repeats']}",
        ])  # fmt: skip
    print_table(
        ["model", "batch", "clients", "front end", "req/s", "img/s", "p50 ms", "p99 ms", "server CPU ms/req",
         "client CPU ms/req", "/ TFS gRPC", "/ no-op", "/ in-process", "failed", "noisy"],
        rows,
        markdown=markdown,
        title=f"Front ends (medians of {front[0]['repeats'] if front else 0} repeats; ratios: medians of per-repeat "
        "ratios; noop:X: the no-op server answering X's request with the daemon's answer; server CPU: the daemon's, "
        "the no-op server's, or in-process OpenVINO's; client included in every figure)",
    )  # fmt: skip


def print_results(
    summary: list[dict[str, Any]],
    memory: dict[str, Any] | None,
    targets: list[dict[str, Any]],
    markdown: bool = False,
    front: list[dict[str, Any]] | None = None,
    front_targets: list[dict[str, Any]] | None = None,
    path_targets: list[dict[str, Any]] | None = None,
    stage_rows: list[dict[str, Any]] | None = None,
) -> None:
    rows = []
    for s in summary:
        d, p = s["daemon"], s["in_process"]
        rows.append([
            s["model"], s["batch"], s["clients"],
            fmt(d["req_s"]), fmt(d["img_s"]), fmt(d["p50_ms"], 2), fmt(d["p99_ms"], 2),
            p["mode"] or "-", fmt(p["req_s"]), fmt(p["img_s"]), fmt(p["p50_ms"], 2), fmt(p["p99_ms"], 2),
            fmt(s["throughput_ratio"], 2), fmt(s["p50_ratio"], 2),
        ])  # fmt: skip
    print_table(
        ["model", "batch", "clients", "daemon req/s", "img/s", "p50 ms", "p99 ms",
         "in-process", "req/s", "img/s", "p50 ms", "p99 ms", "thr d/ip", "p50 d/ip"],
        rows,
        markdown=markdown,
        title=f"Medians of {summary[0]['repeats'] if summary else 0} repeats (daemon clients: threads of one separate "
        "client process; ratios: medians of per-repeat daemon/in-process)",
    )  # fmt: skip
    cpu_rows = [
        [s["model"], s["clients"], fmt(s["daemon"]["daemon_cpu_ms_per_req"], 3),
         fmt(s["daemon"]["client_cpu_ms_per_req"], 3), fmt(s["in_process"]["inproc_cpu_ms_per_req"], 3),
         fmt(s["other_busy_cores"], 2), f"{s.get('noisy_runs', '?')}/{s.get('runs', '?')}", fmt(s["steal_cores"], 2),
         fmt(s["daemon"]["completed"], 0)]
        for s in summary
    ]  # fmt: skip
    print_table(
        ["model", "clients", "daemon CPU ms/req", "client CPU ms/req", "in-proc CPU ms/req", "other cores busy",
         "noisy runs", "steal cores", "daemon n (p99 from)"],
        cpu_rows,
        markdown=markdown,
        title="CPU per request (medians; 'other cores busy': machine load not from the benchmark's processes; "
        f"noisy: runs with other load > {NOISY_CORES} cores)",
    )  # fmt: skip
    if memory is not None:
        m = memory["medians"]
        tiny = memory.get("daemon_tiny_only_rss_kib")
        print_table(
            ["", "daemon", "in-process", "ratio"],
            [
                ["after load (MiB)", fmt(m["daemon_rss_loaded_mib"]), fmt(m["inproc_rss_loaded_mib"]),
                 fmt(m["rss_ratio_loaded"], 2)],
                ["after inference (MiB)", fmt(m["daemon_rss_after_mib"]), fmt(m["inproc_rss_after_mib"]),
                 fmt(m["rss_ratio_after_inference"], 2)],
                ["peak VmHWM (MiB)", fmt(m["daemon_hwm_mib"]), fmt(m["inproc_hwm_mib"]),
                 fmt(ratio(m["daemon_hwm_mib"], m["inproc_hwm_mib"]), 2)],
                ["process base (MiB)", fmt(tiny / 1024 if tiny else math.nan) + " (tiny model only)",
                 fmt(m["inproc_rss_import_mib"]) + " (import openvino)", ""],
            ],
            markdown=markdown,
        title=f"Memory, VmRSS medians: {memory['model']} (nireq {memory['runs'][0]['nireq']}, "
            f"{memory['concurrency']} clients)",
        )  # fmt: skip
    print_table(
        ["target", "measured", "status"],
        [[t["target"], fmt(t["measured"], 2 if t["unit"] == "ratio" else 0), t["status"]] for t in targets],
        markdown=markdown,
        title="Targets",
    )
    if front:
        print_front_ends(front, markdown=markdown)
    if front_targets:
        print_ratio_targets(front_targets, "target (issue 9)", "Front-end targets", markdown)
    if stage_rows:
        print_stages(stage_rows, markdown=markdown)
    if path_targets:
        print_ratio_targets(path_targets, "target (issue 13)", "Request-path targets", markdown)


def print_ratio_targets(targets: list[dict[str, Any]], heading: str, title: str, markdown: bool) -> None:
    print_table(
        [heading, "measured", "runs", "status"],
        [[t["target"], fmt(t["measured"], 2), t["runs"], t["status"]] for t in targets],
        markdown=markdown,
        title=title,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="repeats of every case; medians reported (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, help="measured seconds per case (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per case (default 1; 0.3 with --quick)")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="results file (default benchmarks/results/serving.json)"
    )
    p.add_argument("--models", default="tiny,resnet50",
                   help=f"model families: {', '.join(FAMILIES)} (default tiny,resnet50)")  # fmt: skip
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--clients", default="1,4", help="concurrent clients per case (default 1,4)")
    p.add_argument("--front-ends", default=",".join(FRONT_ENDS),
                   help=f"daemon front ends to measure (default {','.join(FRONT_ENDS)})")  # fmt: skip
    p.add_argument("--http-client", choices=["http.client", "raw"], default="http.client",
                   help="REST client: http.client keep-alive connections (default) or raw socket writes")  # fmt: skip
    p.add_argument("--daemon-path", type=Path, metavar="DIR",
                   help="run the daemon from another checkout's daemon/ folder (first on its PYTHONPATH)")  # fmt: skip
    p.add_argument("--no-memory", action="store_true", help="skip the memory comparison")
    p.add_argument(
        "--nireq", type=int, help="nireq for the daemon's models in the throughput cases (default: OpenVINO's optimal)"
    )
    p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                   help="extra daemon argument, repeatable (e.g. --daemon-arg=--grpc-workers=4)")  # fmt: skip
    p.add_argument(
        "--report", type=Path, metavar="JSON", help="print the tables of an earlier results file; run nothing"
    )
    p.add_argument("--markdown", action="store_true", help="print tables as GitHub markdown")
    p.add_argument("--no-ceilings", dest="ceilings", action="store_false",
                   help="skip the no-op servers (the transports' ceilings)")  # fmt: skip
    p.add_argument("--channels", choices=["auto", "shared", "own"], default="auto",
                   help="gRPC clients: one channel shared by every client thread, or one each (default auto: shared "
                   "for conv3, issue 13's workload, one each for the others)")  # fmt: skip
    p.add_argument("--stages", action="store_true",
                   help="also run a daemon with --stage-timers and print where a request's time goes")  # fmt: skip
    p.add_argument("--worker", choices=["client", "memory", "noop"], help=argparse.SUPPRESS)
    p.add_argument("--answers", help=argparse.SUPPRESS)
    p.add_argument("--noop-grpc-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--noop-http-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--noop-workers", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "client":
        return client_worker()
    if args.worker == "memory":
        return memory_worker(args.model_path, args.rounds)
    if args.worker == "noop":
        return noop_worker(args.answers, args.noop_grpc_port, args.noop_http_port, args.noop_workers)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print_results(saved["medians"], saved.get("memory"), saved["targets"], markdown=args.markdown,
                      front=saved.get("front_ends"), front_targets=saved.get("front_end_targets"),
                      path_targets=saved.get("request_path_targets"), stage_rows=saved.get("stages"))  # fmt: skip
        return 0

    families = [f.strip() for f in args.models.split(",") if f.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    clients_list = [int(c) for c in args.clients.split(",")]
    front_ends = [f.strip() for f in args.front_ends.split(",") if f.strip()]
    if unknown := [f for f in front_ends if f not in FRONT_ENDS]:
        raise SystemExit(f"unknown front ends {unknown} ({', '.join(FRONT_ENDS)})")
    rest = any("rest" in f for f in front_ends)
    models = model_specs(families, batches)
    env = daemon_env(args.daemon_path)
    daemon_source = resolve_daemon(args.daemon_path, env)
    machine = machine_info()
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), openvino {machine['openvino']}, "
        f"grpcio {machine['grpcio']}, protobuf {machine['protobuf']}, ISA {','.join(machine['isa'])}, "
        f"load average {' '.join(machine['loadavg_at_start'])}\ndaemon: ovmsd.__file__ = "
        f"{daemon_source['ovmsd_file']} (commit {daemon_source['commit']}, {daemon_source['uncommitted_files']} "
        "uncommitted files there)"
    )
    print(
        f"plan: {len(models)} models x clients {clients_list} x ({', '.join(front_ends)}, in-process), "
        f"{args.repeats} repeats, "
        f"warm-up {args.warmup:g} s + {args.duration:g} s each (x{HEAVY_FACTOR} for {', '.join(HEAVY_FAMILIES)}); "
        f"plugin_config {PLUGIN_CONFIG}; "
        f"daemon args {args.daemon_arg or 'default'}, nireq {args.nireq or 'default'}",
        flush=True,
    )
    results: dict[str, Any] = {
        "benchmark": "serving",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "args": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k
            not in ("worker", "model_path", "rounds", "answers", "noop_grpc_port", "noop_http_port", "noop_workers")
        },
        "git": git_state(),
        "daemon": daemon_source,
        "machine": machine,
        "cpu_flags": sorted(cpu_flags()),
        "setup": {
            "plugin_config": PLUGIN_CONFIG,
            "front_ends": {f: FRONT_END_NAMES[f] for f in front_ends},
            "http_client": f"{args.http_client}, one keep-alive connection per client thread; JSON answers parsed "
            "with orjson (as the daemon parses JSON requests), binary ones with numpy.frombuffer",
            "daemon_clients": "threads of one separate client process, one gRPC channel (TCP connection) each, "
            "request message built once, response decoded with tensor_to_numpy",
            "in_process": "1 client: sync compiled(x) loop; N clients: AsyncInferQueue(N), same compiled model",
            "daemon_args": args.daemon_arg,
            "daemon_nireq": args.nireq or "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
        },
        "runs": [],
    }
    started = time.monotonic()
    rows: list[dict[str, Any]] = results["runs"]
    memory = None
    stage_rows: list[dict[str, Any]] = []
    rest_port = free_port() if rest else None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ovmsd-bench-")))
            children = stack.enter_context(Children())
            import openvino as ov

            # Models.
            built = []
            model_info = {}
            for m in models:
                t = time.perf_counter()
                ov_model = build_model(m.family, m.batch)
                path = save_ir(ov_model, tmp / "models" / m.name, 1)
                built.append(Model(m.family, m.batch, m.input, m.output, m.shape, str(path)))
                model_info[m.name] = {
                    "input": m.input,
                    "shape": list(m.shape),
                    "parameters": count_parameters(ov_model),
                    "build_s": time.perf_counter() - t,
                }
            models = built
            results["setup"]["models"] = model_info
            config = write_config(
                tmp / "config.json",
                [{"name": m.name, "base_path": str(Path(m.path).parent.parent), "plugin_config": PLUGIN_CONFIG,
                  **({"nireq": args.nireq} if args.nireq else {})}
                 for m in models],
            )  # fmt: skip

            # Daemon, client process, in-process models (compiled while the daemon loads).
            rest_args = ["--rest-port", str(rest_port), "--rest-bind-address", "127.0.0.1"] if rest else []
            daemon = DaemonProcess(children, config, tmp / "daemon.log", [*rest_args, *args.daemon_arg], env=env)
            rest_address = f"127.0.0.1:{rest_port}"
            clients_proc = ClientProcess(children, tmp / "clients.log")
            core = ov.Core()
            inproc = {m.name: InProcess(core, m) for m in models}
            load_s = daemon.wait_available([m.name for m in models])
            for m in models:
                model_info[m.name].update(nireq=inproc[m.name].nireq, streams=inproc[m.name].streams)
            print(f"daemon pid {daemon.pid} on {daemon.address}: {len(models)} models available after {load_s:.1f} s; "
                  f"nireq/streams {[(m.name, inproc[m.name].nireq, inproc[m.name].streams) for m in models]}",
                  flush=True)  # fmt: skip
            results["setup"]["daemon_rss_all_models_kib"] = proc_status_kib(daemon.pid, "VmRSS")["VmRSS"]

            # What every front end must answer: 2x for tiny, in-process OpenVINO's output for the others.
            expect = {m.name: None if m.family == "tiny" else
                      np.asarray(inproc[m.name].compiled(inproc[m.name].data)[0]).reshape(-1).tolist()
                      for m in models}  # fmt: skip

            def case_args(m: Model) -> dict[str, Any]:
                return dict(
                    model=m.name, input=m.input, output=m.output, shape=list(m.shape), http_client=args.http_client,
                    check_scale=2.0 if m.family == "tiny" else None, expect=expect[m.name],
                    shared_channel=args.channels == "shared" or (args.channels == "auto" and m.family == "conv3"),
                )  # fmt: skip

            noop: NoopServer | None = None

            def daemon_case(
                m: Model, c: int, warmup: float, duration: float, fe: str = "tfs-grpc", target: str = "daemon"
            ) -> dict[str, Any]:
                pid = noop.pid if target == "noop" and noop is not None else daemon.pid
                return clients_proc.run(
                    address=daemon.address, rest_address=rest_address, front_end=fe, daemon_pid=pid, target=target,
                    noop_address=noop.address if noop else None, noop_rest_address=noop.rest_address if noop else None,
                    clients=c, warmup=warmup, duration=duration, **case_args(m),
                )  # fmt: skip

            # Prime: first inferences on every infer request / stream, outside any measurement.
            for m in models:
                for fe in front_ends:
                    daemon_case(m, max(clients_list), 0.0, 0.5 if args.quick else 1.5, fe)
                inproc[m.name].prime([c for c in clients_list if c > 1])
            watch = {"self": os.getpid(), "daemon": daemon.pid}

            # The ceilings: a no-op server answering every model's requests with the daemon's answers.
            if args.ceilings:
                answers = clients_proc.run(op="capture", address=daemon.address, rest_address=rest_address,
                                           front_ends=front_ends, models=[case_args(m) for m in models])  # fmt: skip
                noop = NoopServer(children, answers, tmp, default_grpc_workers())
                for m in models:
                    for fe in front_ends:
                        daemon_case(m, max(clients_list), 0.0, 0.5, fe, "noop")
                results["setup"]["noop"] = {
                    "grpc": f"grpcio sync server, generic handler (request bytes not parsed, the daemon's answer as "
                    f"bytes), ThreadPoolExecutor({default_grpc_workers()}) like the daemon's --grpc-workers",
                    "http": "uvicorn (httptools, uvloop), an ASGI app that reads the body and sends the daemon's "
                    "answer on the event loop",
                }  # fmt: skip

            total = args.repeats * len(models) * len(clients_list)
            done = 0
            for r in range(args.repeats):
                for m in models:
                    for c in clients_list:
                        secs = args.duration * (HEAVY_FACTOR if m.family in HEAVY_FAMILIES else 1)
                        warm = args.warmup * (HEAVY_FACTOR if m.family in HEAVY_FAMILIES else 1)
                        # Interleaved, the order rotated every repeat (no front end always runs first or last).
                        ceilings = [f"noop:{fe}" for fe in front_ends] if noop else []
                        sides = [*front_ends, *ceilings, "in-process"]
                        shift = r % len(sides)
                        case: dict[str, dict[str, Any]] = {}
                        for side in sides[shift:] + sides[:shift]:
                            if side == "in-process":
                                row = row_of("in-process", r, m, c, inproc[m.name].run(c, warm, secs, watch))
                            elif side.startswith("noop:"):
                                raw = daemon_case(m, c, warm, secs, side[len("noop:") :], "noop")
                                row = row_of("noop", r, m, c, raw, side)
                            else:
                                row = row_of("daemon", r, m, c, daemon_case(m, c, warm, secs, side), side)
                            case[side] = row
                            rows.append(row)
                        done += 1
                        p = case["in-process"]
                        figures = " ".join(
                            f"{fe} {case[fe]['req_s']:.1f} ({ratio(case[fe]['req_s'], p['req_s']):.2f}"
                            + (f", {ratio(case[fe]['req_s'], case['noop:' + fe]['req_s']):.2f} of no-op)"
                               if "noop:" + fe in case else ")")
                            + (f" FAILED {case[fe]['failed']}" if case[fe]["failed"] else "")
                            for fe in front_ends
                        )  # fmt: skip
                        noise = max(row["cpu"].get("other_busy_cores", 0.0) for row in case.values())
                        print(
                            f"  [{done}/{total}] repeat {r + 1} {m.name:<12} x{c}: in-process {p['req_s']:.1f} "
                            f"req/s p50 {p['p50_ms']:.2f} ms | req/s (/in-process): {figures} | other load max "
                            f"{noise:.2f} cores",
                            flush=True,
                        )
            results["setup"]["daemon_rss_all_models_after_kib"] = proc_status_kib(daemon.pid, "VmRSS")["VmRSS"]
            code = daemon.stop()
            if code != 0:
                print(f"warning: daemon exited with {code}", file=sys.stderr)
            if noop is not None:
                noop.stop()
            inproc.clear()

            # Where the time goes: a daemon with the stage timers on.
            if args.stages:
                print("stages: a daemon with --stage-timers, every front end once per model", flush=True)
                results["stages"] = stage_rows = measure_stages(
                    children, clients_proc, models, config, tmp, front_ends, max(clients_list), args.warmup,
                    args.duration, args.daemon_arg, env, case_args,
                )  # fmt: skip

            # Memory.
            resnet = next((m for m in models if m.family == "resnet50" and m.batch == 1), None)
            tiny = next((m for m in models if m.family == "tiny"), None)
            if resnet is not None and not args.no_memory:
                print("memory: daemon serving resnet50_b1 only vs. a plain OpenVINO process", flush=True)
                memory = measure_memory(children, clients_proc, resnet, tmp, args.repeats, args.daemon_arg, tiny,
                                        max(clients_list), env)  # fmt: skip
            results["memory"] = memory
            clients_proc.stop()
        results["status"] = "complete"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        print("\ninterrupted: stopped every process this benchmark started", file=sys.stderr)
    except Exception as exc:
        results["status"] = f"failed: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        results["elapsed_s"] = time.monotonic() - started
        summary = summarize(rows, models, clients_list)
        targets = evaluate_targets(summary, memory)
        front = summarize_front_ends(rows, models, clients_list, front_ends)
        front_targets = evaluate_front_end_targets(front)
        path_targets = evaluate_request_path_targets(front)
        results["request_path_targets"] = path_targets
        results["medians"] = summary
        results["targets"] = targets
        results["front_ends"] = front
        results["front_end_targets"] = front_targets
        if summary or memory:
            print_results(summary, memory, targets, markdown=args.markdown, front=front, front_targets=front_targets,
                          path_targets=path_targets, stage_rows=stage_rows)  # fmt: skip
        path = write_json(args.json, results)
        print(f"\n{results['status']} in {results['elapsed_s']:.0f} s; results: {path}")
    return 0 if results["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
