"""Binary image inputs benchmark (issue 10): photos sent as JPEG files (the server decodes them) versus the same
photos sent as float32 tensors decoded client-side, through the daemon (``python -m ovmsd``).

The model is ResNet-50 (``common.resnet50_model``, ``images [B,3,224,224]`` f32, NCHW as the OVMS resnet) configured
``layout: NHWC:NCHW``, one model per batch size, with ``{"PERFORMANCE_HINT": "THROUGHPUT",
"INFERENCE_PRECISION_HINT": "f32"}`` as in ``benchmarks/serving.py``. Both payloads reach the same compiled model:

* ``jpeg``: the photo files as they are, a ``[B]`` string tensor (TF Serving: ``DT_STRING`` in ``string_val``, as
  ``tf.make_tensor_proto(list_of_bytes, shape=[B])`` builds it); the daemon decodes (OpenCV), resizes to 224x224
  and converts (``ovmsd.serving.images``).
* ``float32``: the same photos decoded and resized by the client with the same OpenCV calls, ``[B,224,224,3]`` f32
  NHWC in ``tensor_content``. Decoded once, before the clock starts: the float32 client does none of its decode
  work inside the window, so the comparison favours it.

Photos: the JPEGs at the top of ``../shared/assets/images`` (ImageNet samples, ~20-120 KB), or ``--images DIR``;
without either, scikit-image's sample photos encoded as JPEG (quality 90). Each request of a client carries other
photos than the last (rotating through the set).

Cases: front end x payload x batch (1, 8) x clients (1, 4). Clients are closed-loop threads of ONE separate client
process (each its own channel and TCP connection, its requests built once, each response decoded to numpy); they
compete with the daemon for the machine's cores and the numbers include them. Each case warms up, then measures for
``--duration`` seconds; images/s counts the work done inside the window (``common.window_stats``), p50/p99 the
requests completed in it. Cases are interleaved (jpeg, float32, jpeg, ...; float32 first in odd repeats) and the
set is repeated ``--repeats`` times; tables show medians across repeats, ratios are medians of per-repeat
jpeg/float32 ratios. The CPU the daemon, the client process and the rest of the machine used is recorded for every
window (the machine is shared).

Front ends are a dimension (``FRONT_ENDS``): ``tfs-grpc`` today. Another (KServe gRPC ``BYTES``, KServe REST binary
extension, TF Serving REST ``b64``) is one class with ``requests``/``call``/``wire_bytes``, listed there.

Usage::

    .venv/bin/python benchmarks/binary.py --quick        # smoke run, ~1 minute
    .venv/bin/python benchmarks/binary.py                # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/binary.py --report benchmarks/results/binary.json --markdown

Results: ``benchmarks/results/binary.json``. Every process it starts is stopped on exit, Ctrl-C and failure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import (
    REPO,
    Children,
    CpuSnapshot,
    DaemonProcess,
    cpu_flags,
    fmt,
    git_state,
    machine_info,
    median,
    print_table,
    ratio,
    resnet50_model,
    save_ir,
    sigterm_as_interrupt,
    window_stats,
    write_config,
    write_json,
)

PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
DEFAULT_JSON = REPO / "benchmarks" / "results" / "binary.json"
ASSETS = REPO.parent / "shared" / "assets" / "images"
SIZE = 224
INPUT, OUTPUT = "images", "probs"
PAYLOADS = ("jpeg", "float32")
TIMEOUT_S = 300
NOISY_CORES = 0.25  # a window is noisy when processes outside the benchmark kept this many cores busy
MIN_QUIET_PAIRS = 3  # the target is judged on the pairs of quiet windows when there are this many, else on all
TARGET_RATIO = 0.90  # jpeg throughput / float32 throughput, ResNet-50 at batch 1, 4 clients


# -- photos --------------------------------------------------------------------------------------------------------


def load_photos(folder: Path | None) -> tuple[list[bytes], str]:
    """The JPEG files to send, and where they came from."""
    folder = folder or ASSETS
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if folder.is_dir() else []
    if files:
        return [p.read_bytes() for p in files], f"{folder} ({len(files)} JPEGs)"
    import skimage.data
    from PIL import Image

    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"):
        out = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(out, format="JPEG", quality=90)
        photos.append(out.getvalue())
    return photos, "scikit-image sample photos (JPEG quality 90)"


def decode_client_side(data: bytes) -> np.ndarray:
    """What a float32 client does: OpenCV decode (BGR), bilinear resize to 224x224, float32; NHWC."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def batches(photos: list[bytes], batch: int, count: int) -> list[list[int]]:
    """``count`` batches of photo indices, rotating through the photos."""
    return [[(k * batch + j) % len(photos) for j in range(batch)] for k in range(count)]


# -- front ends ----------------------------------------------------------------------------------------------------


class FrontEnd:
    """One wire protocol: builds request messages for a payload once, sends them, decodes the output."""

    name: ClassVar[str]

    def __init__(self, address: str, model: str) -> None:
        self.address = address
        self.model = model

    def request(self, payload: str, photos: list[bytes], decoded: list[np.ndarray], indices: list[int]) -> Any:
        raise NotImplementedError

    def wire_bytes(self, request: Any) -> int:
        """The request's size on the wire (the message, without transport framing)."""
        raise NotImplementedError

    def call(self, request: Any) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TfsGrpc(FrontEnd):
    """TF Serving gRPC Predict: ``DT_STRING`` ``string_val`` for jpeg, ``tensor_content`` for float32."""

    name = "tfs-grpc"
    OPTIONS: ClassVar[list[tuple[str, int]]] = [
        ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per client, like separate client processes
        ("grpc.max_send_message_length", 1 << 30),
        ("grpc.max_receive_message_length", 1 << 30),
    ]

    def __init__(self, address: str, model: str) -> None:
        import grpc

        from ovmsd.api.grpc.proto import prediction_service_pb2_grpc

        super().__init__(address, model)
        self.channel = grpc.insecure_channel(address, options=self.OPTIONS)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def request(self, payload: str, photos: list[bytes], decoded: list[np.ndarray], indices: list[int]) -> Any:
        from ovmsd.api.grpc.proto import predict_pb2, types_pb2
        from ovmsd.api.grpc.tensors import numpy_to_tensor

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        tensor = request.inputs[INPUT]
        if payload == "jpeg":
            tensor.dtype = types_pb2.DT_STRING
            tensor.tensor_shape.dim.add().size = len(indices)
            tensor.string_val.extend(photos[i] for i in indices)
        else:
            numpy_to_tensor(np.stack([decoded[i] for i in indices]), tensor)
        return request

    def wire_bytes(self, request: Any) -> int:
        return request.ByteSize()

    def call(self, request: Any) -> np.ndarray:
        from ovmsd.api.grpc.tensors import tensor_to_numpy

        return tensor_to_numpy(self.stub.Predict(request, timeout=TIMEOUT_S).outputs[OUTPUT])

    def close(self) -> None:
        self.channel.close()


FRONT_ENDS: dict[str, type[FrontEnd]] = {cls.name: cls for cls in (TfsGrpc,)}


# -- client worker process -----------------------------------------------------------------------------------------


class ClientState:
    """The client process's photos, decoded once (the float32 payload)."""

    def __init__(self, photo_files: list[str]) -> None:
        self.photos = [Path(p).read_bytes() for p in photo_files]
        self.decoded = [decode_client_side(p) for p in self.photos]


def check_outputs(state: ClientState, cmd: dict[str, Any]) -> dict[str, Any]:
    """Every photo at batch 1 both ways: the same top-1, and how far the outputs are apart."""
    front = FRONT_ENDS[cmd["front_end"]](cmd["address"], cmd["model"])
    try:
        diffs, same = [], 0
        for i in range(len(state.photos)):
            jpeg = front.call(front.request("jpeg", state.photos, state.decoded, [i]))
            dense = front.call(front.request("float32", state.photos, state.decoded, [i]))
            diffs.append(float(np.abs(jpeg - dense).max()))
            same += int(jpeg.argmax() == dense.argmax())
    finally:
        front.close()
    return {"photos": len(state.photos), "same_top1": same, "max_abs_diff": max(diffs)}


def run_clients(state: ClientState, cmd: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop clients as threads of this process; counts, latencies, wire bytes and CPU of the window."""
    clients, batch = int(cmd["clients"]), int(cmd["batch"])
    fronts = [FRONT_ENDS[cmd["front_end"]](cmd["address"], cmd["model"]) for _ in range(clients)]
    try:
        per_client = max(1, len(state.photos))
        requests = [
            [
                front.request(cmd["payload"], state.photos, state.decoded, b)
                for b in batches(state.photos, batch, per_client)
            ]
            for front in fronts
        ]
        wire = [front.wire_bytes(r) / batch for front, rs in zip(fronts, requests, strict=True) for r in rs]
        for front, rs in zip(fronts, requests, strict=True):  # connect and check the answer before timing anything
            out = front.call(rs[0])
            if out.shape[0] != batch or not np.isfinite(out).all():
                raise AssertionError(f"wrong answer from the daemon: shape {out.shape}")

        window: dict[str, float] = {}
        samples: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
        errors: list[str] = []
        barrier = threading.Barrier(clients + 1)

        def client(i: int) -> None:
            front, mine, rs = fronts[i], samples[i], requests[i]
            barrier.wait()
            end, clock, k = window["end"], time.perf_counter, i  # clients start at different photos
            while True:
                start = clock()
                if start >= end:
                    return
                try:
                    front.call(rs[k % len(rs)])
                except Exception as exc:  # grpc.RpcError mostly
                    errors.append(f"{type(exc).__name__}: {exc}"[:500])
                    return
                mine.append((start, clock()))
                k += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        pids = {"daemon": int(cmd["daemon_pid"]), "client": os.getpid()}
        window["warm_end"] = time.perf_counter() + float(cmd["warmup"])
        window["end"] = window["warm_end"] + float(cmd["duration"])
        barrier.wait()
        time.sleep(max(0.0, window["warm_end"] - time.perf_counter()))
        before = CpuSnapshot.take(pids)
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        after = CpuSnapshot.take(pids)
        for t in threads:
            t.join()
    finally:
        for front in fronts:
            front.close()
    flat = [x for per in samples for x in per]
    return {
        **window_stats(flat, window["warm_end"], window["end"]),
        "wire_bytes_per_image": sum(wire) / len(wire),
        "cpu": after.usage_since(before),
        "errors": errors[:5],
    }


def client_worker(photo_files: list[str]) -> int:
    """``--worker client``: JSON commands on stdin, one JSON result line each on stdout."""
    state = ClientState(photo_files)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            result = check_outputs(state, cmd) if cmd.get("op") == "check" else run_clients(state, cmd)
        except Exception as exc:
            result = {"fatal": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


class ClientProcess:
    def __init__(self, children: Children, log_path: Path, photo_files: list[str]) -> None:
        self.children = children
        self._log = log_path.open("wb")
        self.log_path = log_path
        args = [sys.executable, str(Path(__file__).resolve()), "--worker", "client", "--photo-files", *photo_files]
        self.process = children.popen(
            "clients", args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
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
        if result.get("errors"):
            raise RuntimeError(f"requests failed during {cmd}: {result['errors']}")
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


# -- results -------------------------------------------------------------------------------------------------------


def row_of(case: dict[str, Any], repeat: int, raw: dict[str, Any]) -> dict[str, Any]:
    images = raw["work"] * case["batch"]
    cpu = raw.get("cpu", {})

    def per_image(key: str) -> float:
        return cpu.get(key, math.nan) * 1e3 / images if images else math.nan

    return {
        **case,
        "repeat": repeat,
        "requests": raw["work"],
        "completed": raw["completed"],
        "window_s": raw["window_s"],
        "img_s": images / raw["window_s"],
        **{k: v for k, v in raw["latency"].items() if k != "n"},
        "wire_bytes_per_image": raw["wire_bytes_per_image"],
        "daemon_cpu_ms_per_image": per_image("daemon_cpu_s"),
        "client_cpu_ms_per_image": per_image("client_cpu_s"),
        "other_busy_cores": cpu.get("other_busy_cores", math.nan),
        "cpu": cpu,
    }


KEYS = ("img_s", "p50_ms", "p99_ms", "wire_bytes_per_image", "daemon_cpu_ms_per_image", "client_cpu_ms_per_image")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    cases = sorted({(r["front_end"], r["batch"], r["clients"]) for r in rows})
    for front_end, batch, clients in cases:
        same = [r for r in rows if (r["front_end"], r["batch"], r["clients"]) == (front_end, batch, clients)]
        by_payload = {p: [r for r in same if r["payload"] == p] for p in PAYLOADS}
        dense = {r["repeat"]: r for r in by_payload["float32"]}
        pairs = [(r, dense[r["repeat"]]) for r in by_payload["jpeg"] if r["repeat"] in dense]
        ratios = [ratio(j["img_s"], f["img_s"]) for j, f in pairs]
        quiet = [
            ratio(j["img_s"], f["img_s"])
            for j, f in pairs
            if max(j["other_busy_cores"], f["other_busy_cores"]) <= NOISY_CORES
        ]
        out.append({
            "front_end": front_end, "batch": batch, "clients": clients, "repeats": len(by_payload["jpeg"]),
            **{p: {k: median(r[k] for r in rs) for k in KEYS} for p, rs in by_payload.items()},
            "throughput_ratio": median(ratios), "throughput_ratios": ratios,
            "quiet_ratio": median(quiet), "quiet_ratios": quiet,  # pairs whose both windows were quiet
            "other_busy_cores": median(r["other_busy_cores"] for r in same),
            "noisy_runs": sum(r["other_busy_cores"] > NOISY_CORES for r in same), "runs": len(same),
        })  # fmt: skip
    return out


def evaluate_targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for s in summary:
        if s["batch"] == 1 and s["clients"] == 4:
            quiet = len(s["quiet_ratios"]) >= MIN_QUIET_PAIRS
            measured = s["quiet_ratio"] if quiet else s["throughput_ratio"]
            which = f"{len(s['quiet_ratios'])} quiet pairs" if quiet else f"all {len(s['throughput_ratios'])} pairs"
            targets.append({
                "target": f"{s['front_end']}, ResNet-50 batch 1, 4 clients: jpeg images/s >= {TARGET_RATIO:.0%} of "
                f"float32 (median of {which})",
                "measured": measured,
                "status": "N/A" if math.isnan(measured) else ("PASS" if measured >= TARGET_RATIO else "MISS"),
            })  # fmt: skip
    return targets


def print_results(results: dict[str, Any], markdown: bool = False) -> None:
    summary, targets = results["medians"], results["targets"]
    rows = []
    for s in summary:
        for p in PAYLOADS:
            m = s[p]
            rows.append([
                s["front_end"], p, s["batch"], s["clients"], fmt(m["img_s"]), fmt(m["p50_ms"]), fmt(m["p99_ms"]),
                fmt(m["wire_bytes_per_image"] / 1024), fmt(m["daemon_cpu_ms_per_image"]),
                fmt(m["client_cpu_ms_per_image"]),
                fmt(s["throughput_ratio"], 2) if p == "jpeg" else "",
            ])  # fmt: skip
    repeats = summary[0]["repeats"] if summary else 0
    print_table(
        ["front end", "payload", "batch", "clients", "images/s", "p50 ms", "p99 ms", "KiB/image on the wire",
         "daemon CPU ms/image", "client CPU ms/image", "jpeg/float32"],
        rows,
        markdown=markdown,
        title=f"ResNet-50 (layout NHWC:NCHW), medians of {repeats} repeats; jpeg/float32: median of per-repeat "
        "images/s ratios",
    )  # fmt: skip
    noise = [
        [s["front_end"], s["batch"], s["clients"], fmt(s["other_busy_cores"], 2), f"{s['noisy_runs']}/{s['runs']}",
         " ".join(fmt(r, 2) for r in s["throughput_ratios"]),
         f"{fmt(s['quiet_ratio'], 2)} ({len(s['quiet_ratios'])})"]
        for s in summary
    ]  # fmt: skip
    print_table(
        [
            "front end",
            "batch",
            "clients",
            "other cores busy",
            "noisy runs",
            "jpeg/float32 per repeat",
            "quiet pairs' median (n)",
        ],
        noise,
        markdown=markdown,
        title=f"Machine noise (CPU used by processes outside the benchmark; noisy: > {NOISY_CORES} cores)",
    )
    print_table(
        ["target", "measured", "status"],
        [[t["target"], fmt(t["measured"], 2), t["status"]] for t in targets],
        markdown=markdown,
        title="Targets",
    )


# -- orchestration -------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="repeats of every case; medians reported (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, help="measured seconds per case (default 8; 2 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per case (default 2; 0.5 with --quick)")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--front-ends", default="tfs-grpc", help=f"comma-separated, of {', '.join(FRONT_ENDS)}")
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--clients", default="1,4", help="concurrent clients per case (default 1,4)")
    p.add_argument("--images", type=Path, help=f"a folder of JPEGs to send (default {ASSETS}, if present)")
    p.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="results file (default benchmarks/results/binary.json)"
    )
    p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="extra daemon argument, repeatable")
    p.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier results file")
    p.add_argument("--markdown", action="store_true", help="print tables as GitHub markdown")
    p.add_argument("--worker", choices=["client"], help=argparse.SUPPRESS)
    p.add_argument("--photo-files", nargs="*", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration if args.duration is not None else (2.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "client":
        return client_worker(args.photo_files)
    if args.report is not None:  # medians and targets recomputed from the raw runs
        saved = json.loads(args.report.read_text())
        medians = summarize(saved["runs"])
        print_results({"medians": medians, "targets": evaluate_targets(medians)}, markdown=args.markdown)
        return 0
    front_ends = [f.strip() for f in args.front_ends.split(",") if f.strip()]
    unknown = [f for f in front_ends if f not in FRONT_ENDS]
    if unknown:
        raise SystemExit(f"unknown front end {unknown[0]!r} (known: {', '.join(FRONT_ENDS)})")
    batch_sizes = [int(b) for b in args.batches.split(",")]
    clients_list = [int(c) for c in args.clients.split(",")]
    photos, source = load_photos(args.images)
    machine = machine_info()
    machine["cpu_flags"] = sorted(cpu_flags())
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}; {' '.join(machine['isa'])}), openvino "
        f"{machine['openvino']}, load average {' '.join(machine['loadavg_at_start'])}\nphotos: {source}, "
        f"{sum(map(len, photos)) / len(photos) / 1024:.0f} KiB on average\nplan: {front_ends} x {list(PAYLOADS)} x "
        f"batch {batch_sizes} x clients {clients_list}, {args.repeats} repeats, "
        f"{args.warmup:g} s + {args.duration:g} s each",
        flush=True,
    )
    results: dict[str, Any] = {
        "benchmark": "binary",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "args": {k: str(v) for k, v in vars(args).items() if k not in ("worker", "photo_files")},
        "git": git_state(),
        "machine": machine,
        "setup": {"plugin_config": PLUGIN_CONFIG, "layout": "NHWC:NCHW", "photos": source, "count": len(photos)},
        "runs": [],
        "medians": [],
        "targets": [],
    }
    rows: list[dict[str, Any]] = results["runs"]
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ovmsd-binary-")))
            children = stack.enter_context(Children())
            photo_files = []
            for i, data in enumerate(photos):
                path = tmp / "photos" / f"{i:03d}.jpg"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(data)
                photo_files.append(str(path))
            models = {}
            for b in batch_sizes:
                path = save_ir(resnet50_model(b, seed=0), tmp / "models" / f"resnet50_b{b}", 1)
                models[b] = f"resnet50_b{b}"
            config = write_config(
                tmp / "config.json",
                [{"name": name, "base_path": str(tmp / "models" / name), "layout": "NHWC:NCHW",
                  "plugin_config": PLUGIN_CONFIG} for name in models.values()],
            )  # fmt: skip
            daemon = DaemonProcess(children, config, tmp / "daemon.log", args.daemon_arg)
            clients_proc = ClientProcess(children, tmp / "clients.log", photo_files)
            load_s = daemon.wait_available(list(models.values()))
            print(f"daemon pid {daemon.pid} on {daemon.address}: available after {load_s:.1f} s", flush=True)

            checks = {}
            for front in front_ends:
                check = clients_proc.run(
                    op="check", front_end=front, address=daemon.address, model=models[batch_sizes[0]]
                )
                checks[front] = check
                print(f"check {front}: jpeg and float32 agree on top-1 for {check['same_top1']}/{check['photos']} "
                      f"photos, max |diff| {check['max_abs_diff']:.2e}", flush=True)  # fmt: skip
                if check["same_top1"] != check["photos"]:
                    raise RuntimeError(f"jpeg and float32 requests disagree: {check}")
            results["checks"] = checks

            def case_run(case: dict[str, Any], warmup: float, duration: float) -> dict[str, Any]:
                return clients_proc.run(
                    address=daemon.address, daemon_pid=daemon.pid, model=models[case["batch"]], warmup=warmup,
                    duration=duration, **case,
                )  # fmt: skip

            def cases_of(repeat: int) -> list[dict[str, Any]]:
                """Every case, each payload pair side by side; which payload goes first alternates by repeat."""
                order = PAYLOADS if repeat % 2 == 0 else PAYLOADS[::-1]
                return [
                    {"front_end": f, "payload": p, "batch": b, "clients": c}
                    for f in front_ends
                    for b in batch_sizes
                    for c in clients_list
                    for p in order
                ]

            cases = cases_of(0)
            for case in cases:  # prime every infer request and stream, outside any measurement
                if case["payload"] == "jpeg":
                    case_run({**case, "clients": max(clients_list)}, 0.0, 0.5 if args.quick else 1.5)
            total, done, started = args.repeats * len(cases), 0, time.monotonic()
            for r in range(args.repeats):
                for case in cases_of(r):
                    raw = case_run(case, args.warmup, args.duration)
                    row = row_of(case, r, raw)
                    rows.append(row)
                    done += 1
                    print(f"  [{done}/{total}] repeat {r + 1} {case['front_end']} {case['payload']:7} "
                          f"b{case['batch']} x{case['clients']}: {row['img_s']:.1f} img/s, p50 {row['p50_ms']:.1f} "
                          f"p99 {row['p99_ms']:.1f} ms, {row['wire_bytes_per_image'] / 1024:.1f} KiB/img, other "
                          f"cores {row['other_busy_cores']:.2f} ({time.monotonic() - started:.0f} s)",
                          flush=True)  # fmt: skip
            clients_proc.stop()
            daemon.stop()
        results["status"] = "done"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        print("interrupted: writing what was measured", file=sys.stderr)
    finally:
        results["medians"] = summarize(rows) if rows else []
        results["targets"] = evaluate_targets(results["medians"])
        results["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        write_json(args.json, results)
    if results["medians"]:
        print_results(results, markdown=args.markdown)
    print(f"\nresults: {args.json}")
    return 0 if results["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
