"""Model-load concurrency benchmark (issue 8): start-up with four models, a small model's new version published
while a big model compiles, and request latency during loads; with an in-process OpenVINO reference measured in the
same run.

Models (built once per run into a temporary repository, f32 weights, ``plugin_config`` ``PLUGIN_CONFIG`` everywhere):

* ``r0``..``r3``: four ResNet-50-sized models (``common.resnet50_model``, batch 1, seeds 0-3: different weights).
* ``big``: ``--big-branches`` (default 8) ResNet-50 bodies side by side on one input, outputs averaged (seeds 100..).
  A plain ResNet-50 compiles in 0.1-0.4 s on this machine, less than the watcher's 0.2 s debounce, which would
  hide the effect measured; 8 bodies (800 MB of weights) compile in about 2 s.
* ``small`` and ``probe``: the tiny ``y = x * 2`` model (``common.tiny_model``, ``x [1,4]``).

The daemon runs with ``--file-system-poll-wait-seconds 1`` (live updates on) from this checkout, or with
``--daemon-path DIR`` from another checkout's ``daemon/`` folder (prepended to the daemon's PYTHONPATH; the
``ovmsd.__file__`` the daemon's interpreter resolves is checked, printed and recorded).

1. **Start-up.** A fresh daemon whose config lists ``r0``..``r3``: seconds from spawning ``python -m ovmsd`` to all
   four AVAILABLE (GetModelStatus polled every 20 ms), and to the first one. Reference: a fresh ``python -c`` process
   that imports OpenVINO and, one after another, reads and compiles the same four files
   (``ov.Core().compile_model(..., "CPU", PLUGIN_CONFIG)``) and creates OPTIMAL_NUMBER_OF_INFER_REQUESTS requests
   for each, as the daemon does: seconds from spawn to done (and the compiles alone). Alternated, once per repeat.
2. **Small model during a big compile.** One daemon serving ``small``, ``big`` and ``probe`` for the rest of the run.
   A version is published by writing its directory beside the base path and renaming it into place (the daemon
   loads a renamed-in directory at once). Measured: publish of ``small``'s next version -> first Predict answered by
   that version (a poller in this process sends one Predict, no version, every ~2 ms):

   * idle: nothing else loading;
   * during a big compile: ``big``'s next version is published first; once GetModelStatus shows it LOADING, plus
     0.2 s, ``small``'s is. Also recorded: how long ``big``'s compile ran (LOADING seen -> AVAILABLE), and whether
     ``small`` served before ``big`` was done.

   Target (issue 8): during a big compile within 1.5x of idle (ratio of the medians; publish -> serving also depends on
   where the rename falls in the daemon's 1 s rescan cycle, so per-repeat ratios pair random draws). Old ``big`` version
   directories are deleted once their version has ended (disk space).
3. **Latency during loads.** Two closed-loop clients (threads of a separate client process, each its own channel)
   send Predict to ``probe``, bounded by ``--max-requests`` each and a time limit:

   * idle: a ``--idle-window`` s window with nothing loading;
   * big compile: the scenario of 2 (big publish, small publish once big is LOADING) under the clients;
   * four models added: the config file is rewritten to add ``r0``..``r3`` (the daemon watches it); afterwards it is
     rewritten without them and the benchmark waits for them to end.

   p50/p99/max of the requests running at some moment between the load's start (publish or config write) and its
   end (everything AVAILABLE), versus idle; failed requests counted.

Every measured stretch records the CPU used outside the benchmark's processes ("other cores"; a repeat is flagged
noisy above 0.25 cores): the machine is shared. Tables show medians of repeats with every run listed.

Usage::

    .venv/bin/python benchmarks/loads.py --quick                     # smoke run, ~40 s
    .venv/bin/python benchmarks/loads.py                             # 5 repeats, ~3 minutes
    .venv/bin/python benchmarks/loads.py --daemon-path /tmp/before/daemon --json benchmarks/results/loads-before.json
    .venv/bin/python benchmarks/loads.py --report benchmarks/results/loads.json --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
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
    cpu_flags,
    daemon_env,
    fmt,
    git_state,
    latency_summary,
    machine_info,
    median,
    named,
    print_table,
    ratio,
    resnet50_model,
    resolve_daemon,
    sigterm_as_interrupt,
    tiny_model,
    write_config,
    write_json,
)
from loadgen import Worker, log_events, serve_commands

PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
DAEMON_ARGS = ["--file-system-poll-wait-seconds", "1"]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "loads.json"
STARTUP_MODELS = ("r0", "r1", "r2", "r3")
TINY_INPUT, TINY_OUTPUT = "x", "y"
STATUS_POLL_S = 0.02
SMALL_AFTER_LOADING_S = 0.2  # small's publish comes this long after big's new version shows LOADING
NOISY_CORES = 0.25
LOAD_TIMEOUT_S = 180.0
# gRPC backs off for 1 s and more after a refused connection; a status poller that starts before the daemon listens
# would then see it up to that late. Reconnect within 20-50 ms instead.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
]

# Target (issue 8).
MAX_SMALL_RATIO = 1.5

# The in-process start-up reference: a bare interpreter that imports only OpenVINO (argv: plugin config, IR paths).
INPROC_STARTUP = r"""
import json, sys, time
t = {"start": time.time()}
import openvino as ov
t["imported"] = time.time()
core = ov.Core()
config = json.loads(sys.argv[1])
kept, loads = [], []
for path in sys.argv[2:]:
    began = time.time()
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    n = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    kept.append((compiled, [compiled.create_infer_request() for _ in range(max(1, n))]))
    loads.append(time.time() - began)
t["done"] = time.time()
t["loads"] = loads
print(json.dumps(t), flush=True)
"""

# -- models ----------------------------------------------------------------------------------------------------------


def big_model(branches: int) -> Any:
    """``branches`` ResNet-50 bodies (``common.resnet50_model``, seeds 100..) on one ``images`` input, their ``probs``
    averaged: ``branches`` times the weights and compile work of one ResNet-50, same input and output."""
    import openvino as ov
    from openvino import opset13 as ops

    models = [resnet50_model(1, seed=100 + i) for i in range(branches)]
    images = models[0].get_parameters()[0]
    outputs = []
    for m in models:
        parameter = m.get_parameters()[0]
        if parameter is not images:
            for target in list(parameter.output(0).get_target_inputs()):
                target.replace_source_output(images.output(0))
        out = m.get_results()[0].input_value(0)
        out.get_tensor().set_names(set())  # every body named its output "probs"
        outputs.append(out)
    y = outputs[0]
    for out in outputs[1:]:
        y = ops.add(y, out).output(0)
    y = ops.multiply(y, ops.constant(np.array(1.0 / branches, dtype=np.float32)))
    return ov.Model([named(y, "probs")], [images], f"resnet50x{branches}")


def save_source(model: Any, folder: Path) -> Path:
    """The IR files of a model in ``folder`` (outside every base path): each version is a copy of them."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    return folder


def stage(base: Path, version: int, source: Path) -> Path:
    """Copy ``source``'s files into a staging folder beside ``base`` (not watched) and flush them to disk."""
    staging = base.parent / f".{base.name}.{version}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging)
    os.sync()
    time.sleep(0.05)  # past coarse timestamp ticks: the rename is strictly newer than the files
    return staging


def publish(staging: Path, base: Path, version: int) -> float:
    """Rename a staged version into place; returns the wall-clock moment just before the rename."""
    t = time.time()
    staging.rename(base / str(version))
    return t


# -- status polling ----------------------------------------------------------------------------------------------


class Status:
    """GetModelStatus on one channel: ``{version: state name}`` of a model ({} while it cannot answer)."""

    def __init__(self, address: str) -> None:
        import grpc

        from ovmsd.api.grpc.proto import get_model_status_pb2, model_service_pb2_grpc

        self._grpc = grpc
        self._pb2 = get_model_status_pb2
        self.channel = grpc.insecure_channel(address, options=FAST_RECONNECT)
        self.stub = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def versions(self, name: str) -> dict[int, str]:
        request = self._pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = self.stub.GetModelStatus(request, timeout=5)
        except self._grpc.RpcError:
            return {}
        state = self._pb2.ModelVersionStatus.State
        return {int(s.version): state.Name(s.state) for s in response.model_version_status}

    def available(self, name: str) -> bool:
        return "AVAILABLE" in self.versions(name).values()

    def close(self) -> None:
        self.channel.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = LOAD_TIMEOUT_S, daemon: Any = None) -> float:
    """Poll ``check`` every 20 ms; returns the wall-clock moment it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.time()
        if daemon is not None and daemon.process.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.process.returncode} waiting for {what}:\n"
                               f"{daemon.log()[-4000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            tail = daemon.log()[-4000:] if daemon is not None else ""
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(STATUS_POLL_S)


class VersionPoller(threading.Thread):
    """Sends ``model`` one Predict (no version) every ~2 ms; ``wait(v)`` returns when a response came from version
    ``v`` (the wall-clock moment that response arrived)."""

    def __init__(self, address: str, model: str) -> None:
        super().__init__(name=f"poller-{model}", daemon=True)
        import grpc

        from ovmsd.api.grpc.proto import predict_pb2, prediction_service_pb2_grpc
        from ovmsd.api.grpc.tensors import numpy_to_tensor

        self.channel = grpc.insecure_channel(address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = model
        numpy_to_tensor(np.ones((1, 4), dtype=np.float32), self.request.inputs[TINY_INPUT])
        self._cond = threading.Condition()
        self._first: dict[int, float] = {}
        self._stopping = threading.Event()
        self.errors = 0
        self.error_codes: dict[str, int] = {}
        self.answered = 0

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                response = self.stub.Predict(self.request, timeout=30)
                done = time.time()
                version = int(response.model_spec.version.value)
                with self._cond:
                    self.answered += 1
                    self._first.setdefault(version, done)
                    self._cond.notify_all()
            except Exception as exc:  # counted (and reported per measurement); the poller goes on
                code = str(exc.code().name) if hasattr(exc, "code") else type(exc).__name__
                with self._cond:
                    self.errors += 1
                    self.error_codes[code] = self.error_codes.get(code, 0) + 1
            time.sleep(0.002)

    def wait(self, version: int, timeout: float = LOAD_TIMEOUT_S) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while version not in self._first:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no response from version {version} after {timeout:.0f} s")
                self._cond.wait(left)
            return self._first[version]

    def wait_answers(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.answered < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the poller got no answers")
                self._cond.wait(left)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=35)
        self.channel.close()


# -- the client worker (a separate process) -------------------------------------------------------------------------


def probe_clients(cmd: dict[str, Any], notify: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """``clients`` closed-loop threads sending Predict to a tiny model until the benchmark writes a stop line, each
    at most ``max_requests`` requests and ``max_s`` seconds. Samples: ``[start, end, version, error]``."""
    import grpc

    from ovmsd.api.grpc.proto import predict_pb2, prediction_service_pb2_grpc
    from ovmsd.api.grpc.tensors import numpy_to_tensor, tensor_to_numpy

    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per client thread
    channels, stubs = [], []
    request = predict_pb2.PredictRequest()
    request.model_spec.name = cmd["model"]
    numpy_to_tensor(np.ones((1, 4), dtype=np.float32), request.inputs[TINY_INPUT])
    try:
        for _ in range(int(cmd["clients"])):
            channel = grpc.insecure_channel(cmd["address"], options=options)
            channels.append(channel)
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(request, timeout=30)
            stubs.append(stub)
        max_requests, max_s = int(cmd["max_requests"]), float(cmd["max_s"])
        stop = threading.Event()
        t0 = time.time() + 0.1
        end = t0 + max_s
        samples: list[list[list[Any]]] = [[] for _ in stubs]

        def client(stub: Any, mine: list[list[Any]]) -> None:
            clock = time.time
            time.sleep(max(0.0, t0 - clock()))
            while not stop.is_set() and len(mine) < max_requests:
                started = clock()
                if started >= end:
                    return
                try:
                    response = stub.Predict(request, timeout=60)
                    tensor_to_numpy(response.outputs[TINY_OUTPUT])
                    mine.append([started, clock(), int(response.model_spec.version.value), None])
                except Exception as exc:  # recorded and counted; the client goes on
                    code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
                    mine.append([started, clock(), 0, str(code)[:100]])
                    time.sleep(0.01)

        threads = [
            threading.Thread(target=client, args=(s, m), daemon=True) for s, m in zip(stubs, samples, strict=True)
        ]
        for t in threads:
            t.start()
        notify({"t0": t0})
        # The benchmark writes one line when the measurement is over (EOF also stops).
        select.select([sys.stdin], [], [], max_s + 60)
        sys.stdin.readline()
        stop.set()
        for t in threads:
            t.join(timeout=70)
    finally:
        for channel in channels:
            channel.close()
    return {
        "t0": t0,
        "samples": [s for per in samples for s in per],
        "hit_count_limit": any(len(m) >= max_requests for m in samples),
        "hit_time_limit": time.time() >= end,
    }


def worker_main(name: str) -> int:
    if name == "clients":
        return serve_commands({"probe": probe_clients})
    raise SystemExit(f"unknown worker {name}")


class Traffic:
    """Runs the two ``probe`` clients around a measured stretch."""

    def __init__(self, worker: Worker, address: str, clients: int, max_requests: int, max_s: float) -> None:
        self.worker, self.address = worker, address
        self.clients, self.max_requests, self.max_s = clients, max_requests, max_s

    def start(self) -> float:
        self.worker.send(op="probe", address=self.address, model="probe", clients=self.clients,
                         max_requests=self.max_requests, max_s=self.max_s)  # fmt: skip
        return self.worker.receive()["t0"]

    def stop(self) -> dict[str, Any]:
        assert self.worker.process.stdin
        self.worker.process.stdin.write("stop\n")
        self.worker.process.stdin.flush()
        return self.worker.receive()


def latency_during(samples: Sequence[list[Any]], start: float, end: float, overlapping: bool) -> dict[str, Any]:
    """Latency of the successful requests running during (or, ``overlapping=False``, completed in) the window."""
    good = [s for s in samples if not s[3]]
    if overlapping:
        chosen = [s for s in good if s[0] < end and s[1] > start]
    else:
        chosen = [s for s in good if start <= s[1] <= end]
    failed = [s for s in samples if s[3] and s[0] < end and s[1] > start]
    out = latency_summary([s[1] - s[0] for s in chosen])
    out["failed"] = len(failed)
    out["failures"] = sorted({s[3] for s in failed})[:5]
    out["window_s"] = end - start
    out["req_s"] = len(chosen) / (end - start) if end > start else math.nan
    return out


# -- CPU accounting ------------------------------------------------------------------------------------------------


def snapshot(pids: dict[str, int]) -> CpuSnapshot:
    """CPU of ``pids`` and of this benchmark process (its status polls and Predict poller are not 'other' load)."""
    return CpuSnapshot.take({"bench": os.getpid(), **pids})


def reaped_children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_reaped_child(cpu: dict[str, float], label: str, used_s: float) -> dict[str, float]:
    """Add the CPU of a child that has exited (and was reaped) inside the window: it is ours, not 'other'."""
    wall = cpu["wall_s"]
    ours = sum(v for k, v in cpu.items() if k.endswith("_cpu_s")) + used_s
    cpu[f"{label}_cpu_s"] = used_s
    cpu["other_busy_cores"] = max(0.0, cpu["machine_busy_cores"] * wall - ours) / wall if wall > 0 else math.nan
    return cpu


# -- 1. start-up ---------------------------------------------------------------------------------------------------


def startup_daemon(
    children: Children, tmp: Path, bases: dict[str, Path], env: Any, r: int, daemon_args: Sequence[str]
) -> dict[str, Any]:
    config = write_config(
        tmp / "conf" / f"startup-{r}.json",
        [{"name": n, "base_path": str(p), "plugin_config": PLUGIN_CONFIG} for n, p in bases.items()],
    )
    spawned = time.time()
    daemon = DaemonProcess(children, config, tmp / "logs" / f"startup-{r}.log", daemon_args, label="startup", env=env)
    before = snapshot({"daemon": daemon.pid})  # the daemon has used next to no CPU yet
    status = Status(daemon.address)
    first_answer = math.nan
    available: dict[str, float] = {}
    try:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while len(available) < len(bases):
            if daemon.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {daemon.process.returncode}:\n{daemon.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"start-up not done after {LOAD_TIMEOUT_S:.0f} s:\n{daemon.log()[-4000:]}")
            for name in bases:
                if name in available:
                    continue
                versions = status.versions(name)
                now = time.time()
                if versions and math.isnan(first_answer):
                    first_answer = now
                if "AVAILABLE" in versions.values():
                    available[name] = now
            time.sleep(STATUS_POLL_S)
        cpu = snapshot({"daemon": daemon.pid}).usage_since(before)
    finally:
        status.close()
        code = daemon.stop()
    if code != 0:
        print(f"warning: start-up daemon exited with {code}", file=sys.stderr)
    starting = log_events(daemon.log(), r"ovmsd starting")
    ready = log_events(daemon.log(), r"\bready\b")
    return {
        "side": "daemon", "repeat": r,
        "all_available_s": max(available.values()) - spawned,
        "first_available_s": min(available.values()) - spawned,
        "per_model_s": {n: t - spawned for n, t in sorted(available.items())},
        "first_status_answer_s": first_answer - spawned,
        "log_starting_s": starting[0][0] - spawned if starting else math.nan,
        "log_ready_s": ready[0][0] - spawned if ready else math.nan,
        "cpu": cpu,
    }  # fmt: skip


def startup_inproc(children: Children, bases: dict[str, Path], r: int) -> dict[str, Any]:
    paths = [str(p / "1" / "model.xml") for p in bases.values()]
    before = snapshot({})
    reaped_before = reaped_children_cpu_s()
    spawned = time.time()
    proc = children.popen(
        "inproc", [sys.executable, "-c", INPROC_STARTUP, json.dumps(PLUGIN_CONFIG), *paths],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=LOAD_TIMEOUT_S)
    finally:
        children.stop(proc)
    finished = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"in-process start-up failed ({proc.returncode}):\n{err[-3000:]}")
    t = json.loads(out.strip().splitlines()[-1])
    cpu = with_reaped_child(snapshot({}).usage_since(before), "inproc", reaped_children_cpu_s() - reaped_before)
    return {
        "side": "in-process", "repeat": r,
        "all_available_s": t["done"] - spawned,
        "first_available_s": t["imported"] - spawned + t["loads"][0],
        "imported_s": t["imported"] - spawned,
        "compiles_s": sum(t["loads"]), "per_model_s": t["loads"],
        "process_exit_s": finished - spawned,
        "cpu": cpu,
    }  # fmt: skip


# -- 2. and 3.: the serving daemon ---------------------------------------------------------------------------------


class Serving:
    """The daemon serving ``small``, ``big`` and ``probe``, and the version counters of its repository."""

    def __init__(
        self, children: Children, tmp: Path, sources: dict[str, Path], env: Any, daemon_args: Sequence[str]
    ) -> None:
        self.tmp = tmp
        self.sources = sources
        self.bases = {name: tmp / "models" / name for name in ("small", "big", "probe")}
        for name, base in self.bases.items():
            base.mkdir(parents=True)
            shutil.copytree(sources["tiny" if name != "big" else "big"], base / "1")
        self.version = {"small": 1, "big": 1}
        self.extra_pids: dict[str, int] = {}
        self.config_path = tmp / "conf" / "config.json"
        self.write_config([])
        self.daemon = DaemonProcess(children, self.config_path, tmp / "logs" / "serving.log", daemon_args, env=env)
        self.status = Status(self.daemon.address)
        started = time.time()
        for name in self.bases:
            wait_for(lambda name=name: self.status.available(name), f"{name} AVAILABLE", daemon=self.daemon)
        self.startup_s = time.time() - started
        self.poller = VersionPoller(self.daemon.address, "small")
        self.poller.start()
        self.poller.wait_answers(3)

    def write_config(self, extra: Sequence[tuple[str, Path]]) -> float:
        """Rewrite the config (write beside it, rename over it); returns the moment of the rename."""
        models = [{"name": n, "base_path": str(p), "plugin_config": PLUGIN_CONFIG} for n, p in self.bases.items()]
        models += [{"name": n, "base_path": str(p), "plugin_config": PLUGIN_CONFIG} for n, p in extra]
        tmp = self.config_path.with_name(".config.json.tmp")
        write_config(tmp, models)
        t = time.time()
        tmp.replace(self.config_path)
        return t

    def pids(self) -> dict[str, int]:
        """The processes whose CPU is ours: the daemon and, while traffic runs, the client worker (``extra_pids``)."""
        return {"daemon": self.daemon.pid, **self.extra_pids}

    def poller_errors(self) -> int:
        return self.poller.errors

    def state(self, name: str, version: int) -> str:
        return self.status.versions(name).get(version, "")

    def small_idle(self) -> dict[str, Any]:
        """Publish small's next version with nothing else loading."""
        v = self.version["small"] + 1
        staging = stage(self.bases["small"], v, self.sources["tiny"])
        time.sleep(0.5)
        errors = self.poller_errors()
        before = snapshot(self.pids())
        t_pub = publish(staging, self.bases["small"], v)
        served = self.poller.wait(v)
        cpu = snapshot(self.pids()).usage_since(before)
        self.version["small"] = v
        row = {"small_s": served - t_pub, "small_version": v, "cpu": cpu,
               "poller_errors": self.poller_errors() - errors}  # fmt: skip
        row.update(self.log_times("small", v, t_pub))
        return row

    def small_during_big(self) -> dict[str, Any]:
        """Publish big's next version; once it is LOADING (+0.2 s), small's next version."""
        vb, vs = self.version["big"] + 1, self.version["small"] + 1
        big_staging = stage(self.bases["big"], vb, self.sources["big"])
        small_staging = stage(self.bases["small"], vs, self.sources["tiny"])
        time.sleep(0.5)
        errors = self.poller_errors()
        before = snapshot(self.pids())
        t_big = publish(big_staging, self.bases["big"], vb)
        t_loading = wait_for(lambda: self.state("big", vb) in ("LOADING", "AVAILABLE"), f"big {vb} LOADING",
                             daemon=self.daemon)  # fmt: skip
        loading_seen = self.state("big", vb) == "LOADING"
        time.sleep(max(0.0, t_loading + SMALL_AFTER_LOADING_S - time.time()))
        big_loading_at_publish = self.state("big", vb) == "LOADING"
        t_small = publish(small_staging, self.bases["small"], vs)
        served = self.poller.wait(vs)
        t_big_done = wait_for(lambda: self.state("big", vb) == "AVAILABLE", f"big {vb} AVAILABLE", daemon=self.daemon)
        cpu = snapshot(self.pids()).usage_since(before)
        self.version["big"], self.version["small"] = vb, vs
        poller_errors = self.poller_errors() - errors
        self.retire_old_big(vb - 1)
        row = {"poller_errors": poller_errors,
            "small_s": served - t_small, "small_version": vs, "big_version": vb,
            "big_publish_to_loading_s": t_loading - t_big,
            "big_loading_s": t_big_done - t_loading,
            "big_publish_to_available_s": t_big_done - t_big,
            "big_left_at_small_publish_s": t_big_done - t_small,
            "big_loading_seen": loading_seen, "big_loading_at_small_publish": big_loading_at_publish,
            "window": [t_big, max(t_big_done, served)], "cpu": cpu,
        }  # fmt: skip
        row.update(self.log_times("small", vs, t_small))
        # Which went live first, from the daemon's own AVAILABLE log lines (ms stamps on one clock); the status
        # polls (every 20 ms, one model after the other) cannot tell 'just before' from 'just after'.
        small_live = t_small + row["log_available_s"]
        big_live = t_big + self.log_times("big", vb, t_big)["log_available_s"]
        if math.isnan(small_live) or math.isnan(big_live):
            small_live, big_live = served, t_big_done
        row["small_lead_s"] = big_live - small_live  # > 0: small was live this long before big
        row["small_before_big"] = small_live < big_live
        return row

    def retire_old_big(self, old: int) -> None:
        """Wait for big's previous version to end, then delete its directory (800 MB each)."""
        wait_for(lambda: self.state("big", old) in ("END", ""), f"big {old} END", timeout=90, daemon=self.daemon)
        shutil.rmtree(self.bases["big"] / str(old), ignore_errors=True)

    def add_four(self, bases: dict[str, Path]) -> dict[str, Any]:
        """Add r0..r3 to the config; returns the moments of the config write and of each model AVAILABLE."""
        before = snapshot(self.pids())
        t_cfg = self.write_config(list(bases.items()))
        done = {}
        for name in bases:
            done[name] = wait_for(lambda name=name: self.status.available(name), f"{name} AVAILABLE",
                                  daemon=self.daemon)  # fmt: skip
        cpu = snapshot(self.pids()).usage_since(before)
        return {"t_cfg": t_cfg, "done": done, "cpu": cpu}

    def remove_four(self, bases: dict[str, Path]) -> None:
        self.write_config([])
        for name in bases:
            wait_for(lambda name=name: "AVAILABLE" not in self.status.versions(name).values(), f"{name} retired",
                     timeout=90, daemon=self.daemon)  # fmt: skip

    def log_times(self, name: str, version: int, since: float) -> dict[str, float]:
        """Seconds from ``since`` to the daemon's LOADING and AVAILABLE log lines of that version (if it logs them)."""
        out = {}
        for key, state in (("log_loading_s", "LOADING"), ("log_available_s", "AVAILABLE")):
            times = [t for t, _ in log_events(self.daemon.log(), rf"model {name} version {version}: {state}")
                     if t >= since - 0.01]  # fmt: skip
            out[key] = times[0] - since if times else math.nan
        return out

    def close(self) -> int:
        self.poller.stop()
        self.status.close()
        return self.daemon.stop()


def traffic_idle(serving: Serving, traffic: Traffic, warmup: float, window: float) -> dict[str, Any]:
    t0 = traffic.start()
    start = t0 + warmup
    time.sleep(max(0.0, start - time.time()))
    before = snapshot(serving.pids())
    time.sleep(window)
    cpu = snapshot(serving.pids()).usage_since(before)
    result = traffic.stop()
    lat = latency_during(result["samples"], start, start + window, overlapping=False)
    return {"case": "idle", "latency": lat, "load_s": math.nan, "cpu": cpu, "limits": limits(result)}


def traffic_big(serving: Serving, traffic: Traffic, warmup: float) -> dict[str, Any]:
    t0 = traffic.start()
    time.sleep(max(0.0, t0 + warmup - time.time()))
    row = serving.small_during_big()
    time.sleep(0.2)
    result = traffic.stop()
    start, end = row["window"]
    lat = latency_during(result["samples"], start, end, overlapping=True)
    return {"case": "big compile", "latency": lat, "load_s": end - start, "cpu": row["cpu"], "limits": limits(result),
            "small_s": row["small_s"], "small_before_big": row["small_before_big"],
            "poller_errors": row["poller_errors"]}  # fmt: skip


def traffic_four(serving: Serving, traffic: Traffic, warmup: float, bases: dict[str, Path]) -> dict[str, Any]:
    t0 = traffic.start()
    time.sleep(max(0.0, t0 + warmup - time.time()))
    added = serving.add_four(bases)
    time.sleep(0.2)
    result = traffic.stop()
    start, end = added["t_cfg"], max(added["done"].values())
    lat = latency_during(result["samples"], start, end, overlapping=True)
    serving.remove_four(bases)
    return {"case": "4 models added", "latency": lat, "load_s": end - start, "cpu": added["cpu"],
            "limits": limits(result), "per_model_s": {n: t - start for n, t in added["done"].items()}}  # fmt: skip


def limits(result: dict[str, Any]) -> dict[str, bool]:
    return {"count": result["hit_count_limit"], "time": result["hit_time_limit"]}


# -- the run ---------------------------------------------------------------------------------------------------------


def other(row: dict[str, Any]) -> float:
    return (row.get("cpu") or {}).get("other_busy_cores", math.nan)


def measure(results: dict[str, Any], children: Children, tmp: Path, args: argparse.Namespace, env: Any) -> None:
    for folder in ("conf", "logs", "models", "src"):
        (tmp / folder).mkdir()
    t = time.monotonic()
    sources = {"tiny": save_source(tiny_model(1), tmp / "src" / "tiny"),
               "big": save_source(big_model(args.big_branches), tmp / "src" / "big")}  # fmt: skip
    startup_bases = {}
    for i, name in enumerate(STARTUP_MODELS[: args.startup_models]):
        source = save_source(resnet50_model(1, seed=i), tmp / "src" / name)
        startup_bases[name] = tmp / "models" / name
        startup_bases[name].mkdir()
        shutil.copytree(source, startup_bases[name] / "1")
    os.sync()
    print(f"models built and saved in {time.monotonic() - t:.1f} s", flush=True)

    # 1. start-up, alternating sides.
    for r in range(args.repeats):
        for side in ("daemon", "in-process") if r % 2 == 0 else ("in-process", "daemon"):
            if side == "daemon":
                row = startup_daemon(children, tmp, startup_bases, env, r, args.daemon_args)
            else:
                row = startup_inproc(children, startup_bases, r)
            results["startup"].append(row)
            extra = (
                f"first {row['first_available_s']:.2f} s, log 'starting' {row['log_starting_s']:.2f} s"
                if side == "daemon"
                else f"import {row['imported_s']:.2f} s, compiles {row['compiles_s']:.2f} s"
            )
            ready = f"all {len(startup_bases)} ready after {row['all_available_s']:.2f} s"
            load = f"other load {other(row):.2f} cores"
            print(f"  start-up {r + 1}/{args.repeats} {side:<10}: {ready} ({extra}) | {load}", flush=True)

    # 2. and 3. on one serving daemon.
    serving = Serving(children, tmp, sources, env, args.daemon_args)
    print(f"serving daemon up ({serving.startup_s:.1f} s after the status port answered)", flush=True)
    clients = Worker(children, Path(__file__), "clients", tmp / "logs" / "clients.log")
    serving.extra_pids = {"clients": clients.pid}  # idle between stretches: its CPU is ours whenever it runs
    traffic = Traffic(clients, serving.daemon.address, 2, args.max_requests, args.max_seconds)
    try:
        for r in range(args.repeats):
            pair = {}
            for case in ("idle", "during big compile") if r % 2 == 0 else ("during big compile", "idle"):
                row = serving.small_idle() if case == "idle" else serving.small_during_big()
                row.update({"case": case, "repeat": r})
                results["small"].append(row)
                pair[case] = row
                more = (
                    ""
                    if case == "idle"
                    else (
                        f" | big LOADING {row['big_loading_s']:.2f} s, left at publish "
                        f"{row['big_left_at_small_publish_s']:.2f} s, small live {row['small_lead_s']:.2f} s before big"
                    )
                )
                print(f"  small publish {r + 1}/{args.repeats} {case:<18}: serves after {row['small_s']:.3f} s"
                      f"{more} | other load {other(row):.2f} cores", flush=True)  # fmt: skip
                time.sleep(1.0)
            for case in ("idle", "big compile", "4 models added"):
                if case == "idle":
                    row = traffic_idle(serving, traffic, args.warmup, args.idle_window)
                elif case == "big compile":
                    row = traffic_big(serving, traffic, args.warmup)
                else:
                    row = traffic_four(serving, traffic, args.warmup, startup_bases)
                row["repeat"] = r
                results["traffic"].append(row)
                lat = row["latency"]
                print(f"  probe x2 {r + 1}/{args.repeats} {case:<14}: n {lat['n']} p50 {lat['p50_ms']:.1f} p99 "
                      f"{lat['p99_ms']:.1f} max {lat.get('max_ms', math.nan):.0f} ms over {lat['window_s']:.2f} s, "
                      f"failed {lat['failed']} | other load {other(row):.2f} cores", flush=True)  # fmt: skip
                time.sleep(1.0)
    finally:
        clients.stop()
        code = serving.close()
        if code != 0:
            print(f"warning: serving daemon exited with {code}", file=sys.stderr)


# -- summary ---------------------------------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    def runs(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] for r in rows]

    startup = []
    for side in ("daemon", "in-process"):
        rows = [r for r in results["startup"] if r["side"] == side]
        if rows:
            startup.append({
                "side": side, "repeats": len(rows),
                "all_available_s": median(runs(rows, "all_available_s")), "runs": runs(rows, "all_available_s"),
                "first_available_s": median(runs(rows, "first_available_s")),
                "compiles_s": median(r.get("compiles_s", math.nan) for r in rows),
                "imported_s": median(r.get("imported_s", math.nan) for r in rows),
                "log_starting_s": median(r.get("log_starting_s", math.nan) for r in rows),
                # The loads alone: after the daemon's first log line (its imports done), after import openvino.
                "loads_s": median(r["all_available_s"] - r.get("log_starting_s" if side == "daemon" else "imported_s",
                                                               math.nan) for r in rows),
                "other_cores": median(other(r) for r in rows),
                "noisy": sum(other(r) > NOISY_CORES for r in rows),
            })  # fmt: skip
    d = {r["repeat"]: r["all_available_s"] for r in results["startup"] if r["side"] == "daemon"}
    i = {r["repeat"]: r["all_available_s"] for r in results["startup"] if r["side"] == "in-process"}
    startup_ratio = median(ratio(d[k], i[k]) for k in d if k in i)

    small = []
    for case in ("idle", "during big compile"):
        rows = [r for r in results["small"] if r["case"] == case]
        if rows:
            small.append({
                "case": case, "repeats": len(rows),
                "small_s": median(runs(rows, "small_s")), "runs": runs(rows, "small_s"),
                "log_available_s": median(r.get("log_available_s", math.nan) for r in rows),
                "big_loading_s": median(r.get("big_loading_s", math.nan) for r in rows),
                "big_left_at_small_publish_s": median(r.get("big_left_at_small_publish_s", math.nan) for r in rows),
                "small_before_big": sum(bool(r.get("small_before_big")) for r in rows),
                "small_lead_s": median(r.get("small_lead_s", math.nan) for r in rows),
                "poller_errors": sum(r.get("poller_errors", 0) for r in rows),
                "big_loading_at_small_publish": sum(bool(r.get("big_loading_at_small_publish")) for r in rows),
                "other_cores": median(other(r) for r in rows),
                "noisy": sum(other(r) > NOISY_CORES for r in rows),
            })  # fmt: skip
    idle = {r["repeat"]: r["small_s"] for r in results["small"] if r["case"] == "idle"}
    busy = {r["repeat"]: r["small_s"] for r in results["small"] if r["case"] == "during big compile"}
    small_ratios = [ratio(busy[k], idle[k]) for k in busy if k in idle]

    traffic = []
    idle_p99 = {r["repeat"]: r["latency"]["p99_ms"] for r in results["traffic"] if r["case"] == "idle"}
    for case in ("idle", "big compile", "4 models added"):
        rows = [r for r in results["traffic"] if r["case"] == case]
        if rows:
            ratios = [ratio(r["latency"]["p99_ms"], idle_p99.get(r["repeat"], math.nan)) for r in rows]
            traffic.append({
                "case": case, "repeats": len(rows),
                "n": median(r["latency"]["n"] for r in rows),
                "p50_ms": median(r["latency"]["p50_ms"] for r in rows),
                "p99_ms": median(r["latency"]["p99_ms"] for r in rows),
                "p99_runs": [r["latency"]["p99_ms"] for r in rows],
                "max_ms": median(r["latency"].get("max_ms", math.nan) for r in rows),
                "p99_ratio": median(ratios), "p99_ratios": ratios,
                "load_s": median(r["load_s"] for r in rows),
                "failed": sum(r["latency"]["failed"] for r in rows),
                "other_cores": median(other(r) for r in rows),
                "noisy": sum(other(r) > NOISY_CORES for r in rows),
                "limits_hit": sum(r["limits"]["count"] or r["limits"]["time"] for r in rows),
            })  # fmt: skip
    return {
        "startup": startup, "startup_ratio": startup_ratio,
        "small": small, "small_ratios": small_ratios, "small_ratio_of_pairs": median(small_ratios),
        # The target's figure: median during a big compile / median idle. Publish -> serving depends on where in the
        # daemon's 1 s rescan cycle the rename falls (0.05-0.25 s idle), so per-repeat ratios pair random draws.
        "small_ratio": ratio(median(busy.values()), median(idle.values())),
        "traffic": traffic,
    }  # fmt: skip


def evaluate_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    v = summary.get("small_ratio", math.nan)
    return [{
        "target": f"small model's publish -> serving during a big compile <= {MAX_SMALL_RATIO}x idle (medians)",
        "measured": v, "unit": "ratio",
        "status": "N/A" if math.isnan(v) else ("PASS" if v <= MAX_SMALL_RATIO else "MISS"),
    }]  # fmt: skip


def print_results(summary: dict[str, Any], targets: list[dict[str, Any]], markdown: bool = False) -> None:
    runs = lambda values, d=2: ", ".join(fmt(x, d) for x in values)  # noqa: E731
    if summary.get("startup"):
        print_table(
            ["side", "all ready s", "runs", "first ready s", "imports s", "loads s", "other cores", "noisy"],
            [[s["side"], fmt(s["all_available_s"], 2), runs(s["runs"]), fmt(s["first_available_s"], 2),
              fmt(s["imported_s"] if s["side"] == "in-process" else s["log_starting_s"], 2),
              fmt(s.get("loads_s", s["compiles_s"]), 2),
              fmt(s["other_cores"], 2), f"{s['noisy']}/{s['repeats']}"] for s in summary["startup"]],
            markdown=markdown,
            title=f"Start-up: spawn -> every model AVAILABLE (medians; daemon/in-process "
            f"x{fmt(summary['startup_ratio'], 2)}; imports: spawn -> the daemon's first log line, or -> import "
            "openvino done; loads: the rest)",
        )  # fmt: skip
    if summary.get("small"):
        print_table(
            ["small model's publish", "-> new version serves s", "runs", "log AVAILABLE s", "big LOADING s",
             "big left at publish s", "small live first", "small lead s", "failed polls", "other cores", "noisy"],
            [[s["case"], fmt(s["small_s"], 3), runs(s["runs"], 3), fmt(s["log_available_s"], 3),
              fmt(s["big_loading_s"], 2), fmt(s["big_left_at_small_publish_s"], 2),
              "-" if s["case"] == "idle" else f"{s['small_before_big']}/{s['repeats']}",
              "-" if s["case"] == "idle" else fmt(s.get("small_lead_s", math.nan), 2),
              s.get("poller_errors", "-"), fmt(s["other_cores"], 2), f"{s['noisy']}/{s['repeats']}"]
             for s in summary["small"]],
            markdown=markdown,
            title="Small model published during a big compile (medians; ratio to idle "
            f"x{fmt(summary['small_ratio'], 2)}; per-repeat ratios {runs(summary['small_ratios'])})",
        )  # fmt: skip
    if summary.get("traffic"):
        print_table(
            ["2 clients on probe", "n", "p50 ms", "p99 ms", "p99 runs", "max ms", "p99 / idle", "load s", "failed",
             "other cores", "noisy"],
            [[s["case"], fmt(s["n"], 0), fmt(s["p50_ms"], 2), fmt(s["p99_ms"], 1), runs(s["p99_runs"], 1),
              fmt(s["max_ms"], 0), "-" if s["case"] == "idle" else fmt(s["p99_ratio"], 2), fmt(s["load_s"], 2),
              s["failed"], fmt(s["other_cores"], 2), f"{s['noisy']}/{s['repeats']}"] for s in summary["traffic"]],
            markdown=markdown,
            title="Requests to a serving model during loads (medians; requests running between the load's start and "
            "its last AVAILABLE)",
        )  # fmt: skip
    if targets:
        print_table(
            ["target", "measured", "status"],
            [[t["target"], fmt(t["measured"], 2), t["status"]] for t in targets],
            markdown=markdown,
            title="Targets",
        )


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="repeats of every measurement; medians reported (default 5)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repeat, 2 start-up models, big = 3 ResNet-50 bodies, 1 s idle window",
    )
    p.add_argument(
        "--daemon-path",
        type=Path,
        metavar="DIR",
        help="run the daemon from another checkout's daemon/ folder (prepended to its PYTHONPATH)",
    )
    p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                   help="extra daemon argument, repeatable (e.g. --daemon-arg=--load-workers=1)")  # fmt: skip
    p.add_argument("--big-branches", type=int, help="ResNet-50 bodies in the big model (default 8; 3 with --quick)")
    p.add_argument("--startup-models", type=int, help="ResNet-50 models at start-up, 1-4 (default 4; 2 with --quick)")
    p.add_argument("--idle-window", type=float, help="seconds of the idle latency window (default 3; 1 with --quick)")
    p.add_argument("--warmup", type=float, default=0.5, help="client warm-up seconds before a window (default 0.5)")
    p.add_argument("--max-requests", type=int, default=100_000, help="requests per client at most (default 100000)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="seconds per client run at most (default 120)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file (default results/loads.json)")
    p.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier results file")
    p.add_argument("--markdown", action="store_true", help="print tables as GitHub markdown")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.daemon_args = [*DAEMON_ARGS, *args.daemon_arg]
    args.big_branches = args.big_branches or (3 if args.quick else 8)
    args.startup_models = max(1, min(4, args.startup_models or (2 if args.quick else 4)))
    args.idle_window = args.idle_window if args.idle_window is not None else (1.0 if args.quick else 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        summary = summarize(saved)  # from the raw runs, so a report always has today's columns
        print_results(summary, evaluate_targets(summary), markdown=args.markdown)
        return 0
    env = daemon_env(args.daemon_path)
    daemon = resolve_daemon(args.daemon_path, env)
    machine = machine_info()
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}; {','.join(machine['isa'])}), openvino "
        f"{machine['openvino']}, load average {' '.join(machine['loadavg_at_start'])}\n"
        f"daemon: ovmsd.__file__ = {daemon['ovmsd_file']} (commit {daemon['commit']}, "
        f"{daemon['uncommitted_files']} uncommitted files there)\nplan: {args.repeats} repeats; "
        f"start-up with {args.startup_models} ResNet-50; big = {args.big_branches} ResNet-50 bodies; probe idle window "
        f"{args.idle_window:g} s; daemon args {' '.join(args.daemon_args)}",
        flush=True,
    )
    results: dict[str, Any] = {
        "benchmark": "loads",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "git": git_state(),
        "daemon": daemon,
        "machine": machine,
        "cpu_flags": sorted(cpu_flags()),
        "setup": {
            "plugin_config": PLUGIN_CONFIG,
            "daemon_args": args.daemon_args,
            "big_branches": args.big_branches,
            "startup_models": args.startup_models,
        },
        "startup": [],
        "small": [],
        "traffic": [],
    }
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ovmsd-loads-")))
            children = stack.enter_context(Children())
            measure(results, children, tmp, args, env)
        results["status"] = "complete"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        print("\ninterrupted: stopped every process this benchmark started", file=sys.stderr)
    except Exception as exc:
        results["status"] = f"failed: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        results["elapsed_s"] = time.monotonic() - started
        results["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        summary = summarize(results)
        targets = evaluate_targets(summary)
        results["summary"] = summary
        results["targets"] = targets
        print_results(summary, targets, markdown=args.markdown)
        path = write_json(args.json, results)
        print(f"\n{results['status']} in {results['elapsed_s']:.0f} s; results: {path}")
    return 0 if results["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
