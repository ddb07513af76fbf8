"""Closed-loop gRPC load for the reshape and swap benchmarks, and the small tools they share.

A benchmark starts one client worker process (``Worker``: JSON commands on stdin, one JSON answer per line on stdout)
that runs groups of client threads against the daemon (``run_load``). Each thread has its own channel (TCP
connection), cycles through its group's batch sizes, and records every request as ``[start, end, batch, version,
error]``. Times are ``time.time()`` wall-clock seconds, so they line up with the benchmark process's own clock and with
the daemon's log timestamps. Errors are recorded and counted, not raised: the swap benchmark counts failed requests.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from common import Children, CpuSnapshot, latency_summary

GRPC_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per client thread, like separate client processes
    ("grpc.max_send_message_length", 1 << 30),
    ("grpc.max_receive_message_length", 1 << 30),
]
PREDICT_TIMEOUT_S = 300
RESNET_INPUT, RESNET_OUTPUT = "images", "probs"

# A sample: [start, end, batch, version served (0 if unknown), error text or None]
Sample = list[Any]


def images(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed + batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)


def predict_request(model: str, array: np.ndarray, input_name: str = RESNET_INPUT, version: int | None = None) -> Any:
    from ovmsd.api.grpc.proto import predict_pb2
    from ovmsd.api.grpc.tensors import numpy_to_tensor

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    numpy_to_tensor(array, request.inputs[input_name])
    return request


def predict_once(stub: Any, request: Any, output_name: str = RESNET_OUTPUT) -> tuple[float, int, tuple[int, ...]]:
    """One Predict; returns (seconds, version that served, output shape)."""
    from ovmsd.api.grpc.tensors import tensor_to_numpy

    t = time.perf_counter()
    response = stub.Predict(request, timeout=PREDICT_TIMEOUT_S)
    out = tensor_to_numpy(response.outputs[output_name])
    return time.perf_counter() - t, int(response.model_spec.version.value), tuple(out.shape)


# -- the client worker -----------------------------------------------------------------------------------------------


def run_load(cmd: dict[str, Any], notify: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Groups of closed-loop client threads, timed from ``t0``: set up (and prime) every client, then ``t0`` is 0.2 s
    later; clients run from ``t0`` to ``t0 + warmup + duration``; the measured window is the last ``duration`` s.

    A group: ``{"label", "clients", "batches": [..], "version": null, "prime": true, "start": s, "end": s}`` (start
    and end in seconds after ``t0``; default: the whole run). Client ``i`` of a group starts its cycle at
    ``batches[i % len]``. ``prime`` sends one request of each of the group's batch sizes per client before ``t0``
    (never prime a group whose point is compiling new shapes). CPU use of the daemon and of this process is read at
    ``t0 + m`` for each ``m`` in ``cmd["marks"]`` (default: the window's edges) and reported between consecutive
    marks. With ``announce``, a first answer line ``{"t0": ...}`` goes out as soon as ``t0`` is known.
    """
    import grpc

    from ovmsd.api.grpc.proto import prediction_service_pb2_grpc
    from ovmsd.api.grpc.tensors import tensor_to_numpy

    address, model = cmd["address"], cmd["model"]
    output_name = cmd.get("output", RESNET_OUTPUT)
    channels = []
    threads = []
    samples: dict[str, list[list[Sample]]] = {}
    try:
        plans = []
        for group in cmd["groups"]:
            batches = [int(b) for b in group["batches"]]
            per_batch = {b: predict_request(model, images(b), cmd.get("input", RESNET_INPUT), group.get("version"))
                         for b in set(batches)}  # fmt: skip
            samples[group["label"]] = []
            for i in range(int(group["clients"])):
                channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
                channels.append(channel)
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                grpc.channel_ready_future(channel).result(timeout=30)
                if group.get("prime", True):
                    for b in sorted(set(batches)):
                        stub.Predict(per_batch[b], timeout=PREDICT_TIMEOUT_S)
                cycle = batches[i % len(batches) :] + batches[: i % len(batches)]
                mine: list[Sample] = []
                samples[group["label"]].append(mine)
                plans.append((group, stub, [per_batch[b] for b in cycle], cycle, mine))
        warmup, duration = float(cmd.get("warmup", 0.0)), float(cmd["duration"])
        t0 = time.time() + 0.2
        total = warmup + duration
        if cmd.get("announce") and notify is not None:
            notify({"t0": t0})

        def client(
            stub: Any, requests: list[Any], cycle: list[int], mine: list[Sample], start: float, end: float
        ) -> None:
            clock = time.time
            time.sleep(max(0.0, start - clock()))
            n = 0
            while True:
                t0 = clock()
                if t0 >= end:
                    return
                k = n % len(cycle)
                n += 1
                try:
                    response = stub.Predict(requests[k], timeout=PREDICT_TIMEOUT_S)
                    tensor_to_numpy(response.outputs[output_name])
                    mine.append([t0, clock(), cycle[k], int(response.model_spec.version.value), None])
                except Exception as exc:  # grpc.RpcError mostly: recorded and counted, the client goes on
                    code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
                    details = exc.details() if hasattr(exc, "details") else str(exc)
                    mine.append([t0, clock(), cycle[k], 0, f"{code}: {details}"[:300]])
                    time.sleep(0.01)

        for group, stub, requests, cycle, mine in plans:
            start = t0 + float(group.get("start", 0.0))
            end = t0 + min(float(group.get("end", total)), total)
            threads.append(threading.Thread(target=client, args=(stub, requests, cycle, mine, start, end), daemon=True))
        for t in threads:
            t.start()
        pids = {"client": os.getpid()}
        if cmd.get("daemon_pid"):
            pids["daemon"] = int(cmd["daemon_pid"])
        cpu = cpu_marks(pids, [t0 + m for m in cmd.get("marks", [warmup, total])])
        for t in threads:
            t.join()
    finally:
        for channel in channels:
            channel.close()
    flat = {label: [s for per in per_client for s in per] for label, per_client in samples.items()}
    return {
        "t0": t0,
        "window": [t0 + warmup, t0 + total],
        "samples": flat,
        "cpu": cpu,
        "errors": sum(1 for v in flat.values() for s in v if s[4]),
    }


def cpu_marks(pids: dict[str, int], marks: Sequence[float]) -> list[dict[str, float]]:
    """CPU use of ``pids`` (and of the machine) between consecutive wall-clock ``marks``; sleeps until the last."""
    snapshots = []
    for mark in marks:
        time.sleep(max(0.0, mark - time.time()))
        snapshots.append(CpuSnapshot.take(pids))
    return [b.usage_since(a) for a, b in itertools.pairwise(snapshots)]


Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]


def serve_commands(handlers: dict[str, Handler]) -> int:
    """The worker side of ``Worker``: one JSON command per stdin line, one JSON answer per stdout line (a handler
    may send earlier lines through its second argument)."""

    def send(answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            result = handlers[cmd["op"]](cmd, send)
        except Exception as exc:
            result = {"fatal": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        send(result)
    return 0


class Worker:
    """A helper process (``script --worker NAME``) that answers JSON commands; always stopped through ``children``."""

    def __init__(self, children: Children, script: Path, name: str, log_path: Path, extra: Sequence[str] = ()):
        self.children = children
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = children.popen(
            f"worker-{name}",
            [sys.executable, str(script), "--worker", name, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.pid = self.process.pid

    def send(self, **cmd: Any) -> None:
        assert self.process.stdin
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.process.poll()}):\n{self.log_path.read_text()[-3000:]}")
        result = json.loads(line)
        if "fatal" in result:
            raise RuntimeError(f"worker failed: {result['fatal']}\n{result.get('traceback', '')}")
        return result

    def call(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.receive()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.children.stop(self.process)
        self._log.close()


# -- analysis --------------------------------------------------------------------------------------------------------


def ok(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if not s[4]]


def throughput(samples: Iterable[Sample], start: float, end: float) -> dict[str, float]:
    """Requests/s and images/s of the successful requests in ``[start, end]``; a request straddling an edge counts by
    the fraction of it inside (see ``common.window_stats``)."""
    work = imgs = 0.0
    for t0, t1, batch, _version, error in samples:
        if error or t1 <= t0:
            continue
        part = max(0.0, min(t1, end) - max(t0, start)) / (t1 - t0)
        work += part
        imgs += part * batch
    span = end - start
    return {"req_s": work / span if span > 0 else math.nan, "img_s": imgs / span if span > 0 else math.nan}


def completed_in(samples: Iterable[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in ok(samples) if start <= s[1] <= end]


def overlapping(samples: Iterable[Sample], intervals: Sequence[tuple[float, float]]) -> list[Sample]:
    """Successful requests that were running at some moment of one of ``intervals``."""
    return [s for s in ok(samples) if any(s[0] < b and s[1] > a for a, b in intervals)]


def latency_of(samples: Iterable[Sample]) -> dict[str, float]:
    return latency_summary([s[1] - s[0] for s in samples])


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def log_events(log_text: str, pattern: str) -> list[tuple[float, str]]:
    """(wall-clock time, line) of the daemon's log lines matching ``pattern`` (its default timestamped format)."""
    found = []
    regex = re.compile(pattern)
    for line in log_text.splitlines():
        m = _LOG_TIME.match(line)
        if m and regex.search(line):
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
            found.append((stamp, line))
    return found
