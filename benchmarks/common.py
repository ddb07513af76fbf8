"""Shared helpers for the benchmarks: statistics, tables, JSON results, machine facts, child processes (the daemon
on a free 127.0.0.1 port, always stopped), CPU and memory readings from /proc, and model builders (opset API, IR).

Nothing here imports the daemon's internals except its gRPC stubs (``ovmsd.api.grpc.proto``) and
``ovmsd.serving.states``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- statistics ----------------------------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return math.nan
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p90, p99 and max of latencies given in seconds, reported in milliseconds."""
    arr = np.asarray(latencies_s, dtype=np.float64) * 1e3
    if arr.size == 0:
        return {"n": 0, "mean_ms": math.nan, "p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan}
    return {
        "n": int(arr.size),
        "mean_ms": float(arr.mean()),
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
    }


def window_stats(samples: Sequence[tuple[float, float]], start: float, end: float) -> dict[str, Any]:
    """Closed-loop requests ``(started, done)`` measured over the window ``[start, end]``.

    ``work`` counts each request by the fraction of its duration inside the window, so requests that straddle an
    edge count partly: with requests as long as ResNet-50 at batch 8 (~0.5-1 s), counting whole completions would
    quantize throughput to +-1 request per window. Latency: the requests that completed inside the window.
    """
    work = 0.0
    latencies = []
    for started, done in samples:
        took = done - started
        if took > 0:
            work += max(0.0, min(done, end) - max(started, start)) / took
        if start <= done <= end:
            latencies.append(took)
    return {"work": work, "completed": len(latencies), "window_s": end - start, "latency": latency_summary(latencies)}


def ratio(a: float, b: float) -> float:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


# -- output --------------------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: floats with ``digits`` decimals (NaN as '-'), everything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """A plain-text (or GitHub markdown) table; numeric-looking cells are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def numeric(text: str) -> bool:
        return bool(text) and (text.replace(",", "").replace(".", "").replace("-", "").replace("x", "").isdigit())

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=False)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    out = [line(list(headers))]
    if markdown:
        rules = [("-" * (w + 1) + ":") if i > 0 else "-" * (w + 2) for i, w in enumerate(widths)]
        out.append("|" + "|".join(rules) + "|")
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in cells]
    return "\n".join(out)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, markdown: bool = False
) -> None:
    if title:
        print(f"\n**{title}**\n" if markdown else f"\n{title}")
    print(format_table(headers, rows, markdown=markdown), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN becomes null), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_nan_to_none(data), indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


# -- machine -------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def machine_info() -> dict[str, Any]:
    def version(module: str) -> str:
        try:
            from importlib.metadata import version as v

            return v(module)
        except Exception:
            return "?"

    flags = cpu_flags()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"}),
        "mem_total_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openvino": version("openvino"),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "numpy": version("numpy"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# -- /proc readings ------------------------------------------------------------------------------------------------


def proc_status_kib(pid: int, *fields: str) -> dict[str, int]:
    """Fields of /proc/<pid>/status given in kB (VmRSS, VmHWM, RssAnon, RssFile, ...), in KiB."""
    wanted = set(fields or ("VmRSS", "VmHWM"))
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            found[key] = int(rest.split()[0])
    return found


def rss_kib(pid: int) -> int:
    return proc_status_kib(pid, "VmRSS")["VmRSS"]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_cpu_s() -> dict[str, float]:
    """Machine-wide CPU seconds so far: busy (all but idle and iowait) and steal (taken by the hypervisor)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return {"busy": busy / CLK_TCK, "steal": steal / CLK_TCK}


@dataclass
class CpuSnapshot:
    """CPU time of some processes and of the whole machine at one moment; subtract two to get usage."""

    t: float
    pids: dict[str, float]
    system: dict[str, float]

    @classmethod
    def take(cls, pids: Mapping[str, int]) -> CpuSnapshot:
        readings = {}
        for label, pid in pids.items():
            with contextlib.suppress(OSError, ValueError):
                readings[label] = process_cpu_s(pid)
        return cls(time.perf_counter(), readings, system_cpu_s())

    def usage_since(self, start: CpuSnapshot) -> dict[str, float]:
        """Per process and machine-wide: CPU seconds used and cores busy on average; 'other' is the rest."""
        wall = self.t - start.t
        out: dict[str, float] = {"wall_s": wall}
        ours = 0.0
        for label, value in self.pids.items():
            if label in start.pids:
                used = value - start.pids[label]
                ours += used
                out[f"{label}_cpu_s"] = used
        busy = self.system["busy"] - start.system["busy"]
        out["machine_busy_cores"] = busy / wall if wall > 0 else math.nan
        out["steal_cores"] = (self.system["steal"] - start.system["steal"]) / wall if wall > 0 else math.nan
        out["other_busy_cores"] = max(0.0, busy - ours) / wall if wall > 0 else math.nan
        return out


# -- child processes -----------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Every process a benchmark starts. Children run in their own session (Ctrl-C reaches only the benchmark, which
    then stops them in order) and get SIGTERM from the kernel if the benchmark dies without cleaning up."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen]] = []

    def popen(self, label: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("cwd", REPO)
        proc = subprocess.Popen(list(args), start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
        self._procs.append((label, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._procs = [(lbl, p) for lbl, p in self._procs if p is not proc]
        return proc.returncode

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._procs)):
            self.stop(proc)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (and SIGHUP) like Ctrl-C inside the block, so ``finally`` clauses stop the children."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    """An OVMS-style config.json with one ``config`` entry per model."""
    path.write_text(json.dumps({"model_config_list": [{"config": m} for m in models]}, indent=2))
    return path


class DaemonProcess:
    """``python -m ovmsd`` on a free 127.0.0.1 port, started through ``children`` (so it is always stopped)."""

    def __init__(
        self,
        children: Children,
        config: Path,
        log_path: Path,
        extra_args: Sequence[str] = (),
        label: str = "daemon",
        env: Mapping[str, str] | None = None,  # the daemon's environment (None: this process's)
    ) -> None:
        self.children = children
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = [
            sys.executable, "-m", "ovmsd", "--config", str(config),
            "--port", str(self.port), "--bind-address", "127.0.0.1", *extra_args,
        ]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = children.popen(label, self.args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_available(self, names: Sequence[str], timeout: float = 120) -> float:
        """Until every model has an AVAILABLE version; returns the seconds it took."""
        import grpc

        from ovmsd.api.grpc.proto import get_model_status_pb2, model_service_pb2_grpc
        from ovmsd.serving.states import State

        start = time.monotonic()
        pending = list(names)
        with grpc.insecure_channel(self.address) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while pending:
                if self.process.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log()[-4000:]}")
                if time.monotonic() - start > timeout:
                    raise RuntimeError(f"models {pending} not available after {timeout:.0f} s:\n{self.log()[-4000:]}")
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = pending[0]
                try:
                    states = [s.state for s in stub.GetModelStatus(request, timeout=5).model_version_status]
                    if State.AVAILABLE in states:
                        pending.pop(0)
                        continue
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        return time.monotonic() - start

    def stop(self) -> int:
        code = self.children.stop(self.process, timeout=60)
        self._log.close()
        return code


# -- models --------------------------------------------------------------------------------------------------------


def named(node: Any, name: str) -> Any:
    node.set_friendly_name(name)
    node.output(0).get_tensor().set_names({name})
    return node


def tiny_model(batch: int, width: int = 4, factor: float = 2.0) -> Any:
    """y = x * factor on ``x [batch, width]`` f32: no compute, so a request costs only the serving overhead."""
    import openvino as ov
    from openvino import opset13 as ops

    x = named(ops.parameter([batch, width], np.float32, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.array(factor, dtype=np.float32))), "y")
    return ov.Model([y], [x], f"tiny_b{batch}")


RESNET50_STAGES = ((64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2))  # mid, out, blocks, stride


def resnet50_model(batch: int, seed: int = 0, classes: int = 1000) -> Any:
    """ResNet-50 v1 (stride in the first 1x1 of a down-sampling block), batch norm folded into conv weights + bias.

    ``images [batch,3,224,224]`` f32 -> ``probs [batch,classes]``. Random He-initialised weights from ``seed``
    (the residual branch's last conv is scaled by 0.5 so activations stay O(1): no inf/NaN, no denormals).
    25.5 M parameters and ~3.9 G multiply-adds per image, like the real network.
    """
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(seed)

    def conv(inp: Any, cin: int, cout: int, k: int, stride: int, relu: bool = True, scale: float = 1.0) -> Any:
        std = np.float32(math.sqrt(2.0 / (cin * k * k)) * scale)
        w = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * std
        b = rng.standard_normal((1, cout, 1, 1), dtype=np.float32) * np.float32(0.01)
        pad = k // 2
        y = ops.convolution(inp, ops.constant(w), [stride, stride], [pad, pad], [pad, pad], [1, 1])
        y = ops.add(y, ops.constant(b))
        return ops.relu(y) if relu else y

    def bottleneck(inp: Any, cin: int, mid: int, cout: int, stride: int) -> Any:
        y = conv(inp, cin, mid, 1, stride)
        y = conv(y, mid, mid, 3, 1)
        y = conv(y, mid, cout, 1, 1, relu=False, scale=0.5)
        shortcut = conv(inp, cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else inp
        return ops.relu(ops.add(y, shortcut))

    images = named(ops.parameter([batch, 3, 224, 224], np.float32, name="images"), "images")
    y = conv(images, 3, 64, 7, 2)
    y = ops.max_pool(y, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3]).output(0)
    cin = 64
    for mid, cout, blocks, stride in RESNET50_STAGES:
        for i in range(blocks):
            y = bottleneck(y, cin, mid, cout, stride if i == 0 else 1)
            cin = cout
    y = ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    w = rng.standard_normal((cin, classes), dtype=np.float32) * np.float32(math.sqrt(1.0 / cin))
    y = ops.add(ops.matmul(y, ops.constant(w), False, False), ops.constant(np.zeros(classes, dtype=np.float32)))
    probs = named(ops.softmax(y, 1), "probs")
    return ov.Model([probs], [images], f"resnet50_b{batch}")


def conv3_model(batch: int, seed: int = 0) -> Any:
    """Three 3x3 convolutions (3->16, 16->32, 32->64 channels, each stride 2 with ReLU), then a global average pool.

    ``x [batch,3,64,64]`` f32 (48 KiB per image) -> ``y [batch,64]``: about 2.8 M multiply-adds, a few tens of
    microseconds of compute, so a request's cost is mostly the transport's and the server's (issue 13's workload).
    """
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(seed)
    x = named(ops.parameter([batch, 3, 64, 64], np.float32, name="x"), "x")
    y, cin = x, 3
    for cout in (16, 32, 64):
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(math.sqrt(2.0 / (cin * 9)))
        y = ops.relu(ops.convolution(y, ops.constant(w), [2, 2], [1, 1], [1, 1], [1, 1]))
        cin = cout
    y = named(ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False), "y")
    return ov.Model([y], [x], f"conv3_b{batch}")


# MobileNet v2's inverted residual stages: expansion, output channels, blocks, stride of the first block.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))  # fmt: skip


def classifier_model(batch: int, seed: int = 0, classes: int = 1000) -> Any:
    """An image classifier of EfficientNet-Lite0's size: the MobileNet v2 1.0 topology (inverted residual blocks of
    1x1 expand, 3x3 depthwise and 1x1 project convolutions, ReLU6, batch norm folded into the weights).

    ``images [batch,3,224,224]`` f32 -> ``probs [batch,classes]``: 3.5 M parameters and ~0.3 G multiply-adds per
    image (EfficientNet-Lite0: 4.7 M and 0.4 G), a few milliseconds per image on one core. Random weights from
    ``seed``, scaled so activations stay O(1).
    """
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(seed)

    def relu6(y: Any) -> Any:
        return ops.clamp(y, 0.0, 6.0)

    def conv(inp: Any, cin: int, cout: int, k: int, stride: int, act: bool = True, scale: float = 1.0) -> Any:
        w = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * np.float32(
            math.sqrt(2.0 / (cin * k * k)) * scale
        )
        pad = k // 2
        y = ops.convolution(inp, ops.constant(w), [stride, stride], [pad, pad], [pad, pad], [1, 1])
        y = ops.add(y, ops.constant(rng.standard_normal((1, cout, 1, 1), dtype=np.float32) * np.float32(0.01)))
        return relu6(y) if act else y

    def depthwise(inp: Any, channels: int, stride: int) -> Any:
        w = rng.standard_normal((channels, 1, 1, 3, 3), dtype=np.float32) * np.float32(math.sqrt(2.0 / 9))
        y = ops.group_convolution(inp, ops.constant(w), [stride, stride], [1, 1], [1, 1], [1, 1])
        return relu6(ops.add(y, ops.constant(np.zeros((1, channels, 1, 1), dtype=np.float32))))

    images = named(ops.parameter([batch, 3, 224, 224], np.float32, name="images"), "images")
    y, cin = conv(images, 3, 32, 3, 2), 32
    for expansion, cout, blocks, stride in MOBILENET_V2_STAGES:
        for i in range(blocks):
            s = stride if i == 0 else 1
            mid = cin * expansion
            z = conv(y, cin, mid, 1, 1) if expansion != 1 else y
            z = depthwise(z, mid, s)
            z = conv(z, mid, cout, 1, 1, act=False, scale=0.5)
            y = ops.add(z, y) if (s == 1 and cin == cout) else z
            cin = cout
    y = conv(y, cin, 1280, 1, 1)
    y = ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    w = rng.standard_normal((1280, classes), dtype=np.float32) * np.float32(math.sqrt(1.0 / 1280))
    probs = named(ops.softmax(ops.matmul(y, ops.constant(w), False, False), 1), "probs")
    return ov.Model([probs], [images], f"classifier_b{batch}")


def count_parameters(model: Any) -> int:
    total = 0
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            total += int(np.prod(op.get_output_shape(0))) if len(op.get_output_shape(0)) else 1
    return total


def save_ir(model: Any, base_path: Path, version: int = 1) -> Path:
    """``base_path/<version>/model.xml`` (+ .bin), weights kept f32 (no fp16 compression).

    Published atomically: written into a staging folder beside ``base_path``, then renamed into place. The daemon
    loads a version directory at once when it was renamed after its files were written; a directory whose files
    changed less than a second ago is otherwise treated as still being copied and skipped for now.
    """
    import openvino as ov

    base_path = Path(base_path)
    target = base_path / str(version)
    staging = base_path.parent / f".{base_path.name}.{version}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
    base_path.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    time.sleep(0.02)  # past the file system's coarse timestamp tick, so the rename is strictly newer
    staging.rename(target)
    return target / "model.xml"


def git_state() -> dict[str, Any]:
    """The commit measured, and how many daemon files differ from it (results name what they measured)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line for line in git("status", "--short", "daemon").splitlines() if line.strip()]
    return {"head": git("rev-parse", "--short", "HEAD"), "daemon_uncommitted_files": len(changed)}


# -- which daemon ---------------------------------------------------------------------------------------------------


def daemon_env(daemon_path: Path | None) -> dict[str, str] | None:
    """The daemon's environment for ``DaemonProcess(env=...)``: this one with ``daemon_path`` (another checkout's
    ``daemon/`` folder) first on PYTHONPATH; None (this process's environment) without one."""
    if daemon_path is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(daemon_path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def resolve_daemon(daemon_path: Path | None, env: dict[str, str] | None) -> dict[str, Any]:
    """Where the daemon's interpreter imports ``ovmsd`` from (same interpreter, environment and working directory as
    ``python -m ovmsd``), and that checkout's commit; refuses a ``--daemon-path`` that is not what gets imported.
    Without one, the daemon is whatever ``ovmsd`` this process's environment imports (PYTHONPATH, else the editable
    install of this checkout)."""
    out = subprocess.run(
        [sys.executable, "-c", "import ovmsd; print(ovmsd.__file__)"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    ovmsd_file = Path(out).resolve()
    checkout = (daemon_path or ovmsd_file.parents[1]).resolve()
    if not ovmsd_file.is_relative_to(checkout):
        raise SystemExit(f"the daemon would import ovmsd from {ovmsd_file}, not from {checkout}")

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line for line in git("status", "--short", ".").splitlines() if line.strip()]
    return {
        "daemon_path": str(checkout),
        "ovmsd_file": str(ovmsd_file),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(dirty),
    }
