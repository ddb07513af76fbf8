"""On-demand reshape benchmark (issue 3): a ``batch_size: auto`` ResNet-50 served by the daemon, with in-process
OpenVINO baselines measured in the same run.

Model: the ResNet-50-sized network of ``common.resnet50_model`` (batch 1 IR, f32 weights), configured with
``batch_size: auto`` and ``plugin_config {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}``; the
in-process side compiles with the same config.

(a) First request of a new shape. A fresh daemon serves batch 1 (3 requests), then gets its first batch-8 request:
    the latency of that request (reshape + compile + first inference + gRPC) against a fresh OpenVINO process that
    compiled batch 1 and ran it 3 times, then timed clone + reshape + compile + create_infer_request + first infer of
    batch 8. Fresh processes on both sides each repeat, so every measurement is a real compile with the same history.
    Target: daemon / in-process <= 1.2 (median of per-repeat ratios).
(b) Alternating batch sizes. ``--clients`` closed-loop clients send 1,8,1,8,... (client i starts at the i-th size)
    against the same clients sending batch 1 only, on one daemon with the default shape cache, and on one started
    with ``--shape-cache-size 1`` (only the configured shape is kept, so every batch-8 request recompiles: the
    upstream behaviour). Throughput is counted in images/s (the target's unit: the work served) and requests/s.
    Target: alternating / steady >= 0.8 in images/s with the cache.
(c) Cached-shape latency while new shapes compile. ``--clients`` clients send batch 1 (a cached shape); a third
    thread sends batch sizes 2,3,4,5 in a loop, each a cache miss (the cache keeps the configured shape and 3 more),
    so the daemon compiles one after the other. p50/p99 of the batch-1 requests that were running while a compile was
    (compile: from the trigger request's start to the daemon's "compiled shape" log line), and of all batch-1
    requests of the window, against the same clients with no trigger. The in-process reference runs the same
    workload in one process (2 threads on their own infer requests, a third cycling clone + reshape + compile +
    infer). Target: p50 ratio <= 1.5; p99: as low as possible (reported).

Every case warms up, then measures for ``--duration`` s; the whole set repeats ``--repeats`` times and tables show
medians (ratios: medians of per-repeat ratios). Client threads run in one separate client process on the same cores.

Usage::

    .venv/bin/python benchmarks/reshape.py --quick     # smoke run, ~70 s
    .venv/bin/python benchmarks/reshape.py             # full run, ~7.5 minutes on 2 cores
    .venv/bin/python benchmarks/reshape.py --knobs     # in-process (c) only: compile-thread nice levels 0,5,10,19
    .venv/bin/python benchmarks/reshape.py --report benchmarks/results/reshape.json --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import (
    REPO,
    Children,
    DaemonProcess,
    fmt,
    git_state,
    machine_info,
    median,
    print_table,
    ratio,
    resnet50_model,
    save_ir,
    sigterm_as_interrupt,
    write_config,
    write_json,
)
from loadgen import (
    GRPC_OPTIONS,
    Sample,
    Worker,
    completed_in,
    cpu_marks,
    images,
    latency_of,
    log_events,
    overlapping,
    predict_once,
    predict_request,
    run_load,
    serve_commands,
    throughput,
)

PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
MODEL = "resnet50"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "reshape.json"
NEW_BATCH = 8  # (a) and (b): the new shape after batch 1
CACHE_SIZE = 4  # the daemon's default --shape-cache-size, passed explicitly: the configured shape + 3 variants
TRIGGER_BATCHES = [2, 3, 4, 5]  # (c): more sizes than the cache holds besides the configured one: every one compiles
COMPILED_LINE = r"compiled shape"  # the daemon's INFO line once per on-demand compile
NOISY_CORES = 0.25
COMPILING, COMPILE_ONLY, MIXED = "compiling", "compile only", "mixed, cached"  # (c) phases besides "steady"

# Targets.
FIRST_MAX_RATIO = 1.2
ALTERNATING_MIN_RATIO = 0.8
COMPILE_P50_MAX_RATIO = 1.5


# -- in-process workers ----------------------------------------------------------------------------------------------


def inproc_first(cmd: dict[str, Any], _notify: Any) -> dict[str, Any]:
    """A fresh process: compile batch 1 and serve it 3 times, then time the first request of batch ``new_batch``."""
    import openvino as ov

    clock = time.perf_counter
    core = ov.Core()
    t = clock()
    model = core.read_model(cmd["model_path"])
    base = core.compile_model(model, "CPU", PLUGIN_CONFIG)
    load_ms = (clock() - t) * 1e3
    request = base.create_infer_request()
    for _ in range(3):
        request.infer([images(1)])
    batch = int(cmd["new_batch"])
    data = images(batch)
    t0 = clock()
    variant = model.clone()
    variant.reshape({"images": [batch, 3, 224, 224]})
    t1 = clock()
    compiled = core.compile_model(variant, "CPU", PLUGIN_CONFIG)
    t2 = clock()
    new_request = compiled.create_infer_request()
    t3 = clock()
    new_request.infer([data])
    t4 = clock()
    new_request.infer([data])
    t5 = clock()
    return {
        "load_b1_ms": load_ms,
        "reshape_ms": (t1 - t0) * 1e3,
        "compile_ms": (t2 - t1) * 1e3,
        "create_request_ms": (t3 - t2) * 1e3,
        "first_infer_ms": (t4 - t3) * 1e3,
        "first_ms": (t4 - t0) * 1e3,
        "second_ms": (t5 - t4) * 1e3,
    }


class InprocLoad:
    """(b) and (c) in one process. Client threads cycle through ``batches`` (client i from the i-th), each on its own
    infer request of a model compiled once per batch size and kept (a perfect cache); with ``trigger_batches``, one
    more thread cycles through those sizes (at nice level ``nice``), by ``trigger_mode``: "compile" (clone + reshape
    + compile + first inference, what the daemon does on a miss), "compile-only", or "cached" (compiled beforehand,
    inference only)."""

    def __init__(self) -> None:
        self.core: Any = None
        self.model: Any = None
        self.compiled: dict[int, Any] = {}
        self.requests: dict[tuple[int, int], Any] = {}  # (client, batch) -> infer request

    def request_for(self, client: int, batch: int) -> Any:
        if batch not in self.compiled:
            variant = self.model.clone()
            variant.reshape({"images": [batch, 3, 224, 224]})
            self.compiled[batch] = self.core.compile_model(variant, "CPU", PLUGIN_CONFIG)
        if (client, batch) not in self.requests:
            request = self.compiled[batch].create_infer_request()
            request.infer([images(batch)])
            self.requests[client, batch] = request
        return self.requests[client, batch]

    def __call__(self, cmd: dict[str, Any], _notify: Any) -> dict[str, Any]:
        import openvino as ov

        if self.core is None:
            self.core = ov.Core()
            self.model = self.core.read_model(cmd["model_path"])
        clients, batches = int(cmd["clients"]), [int(b) for b in cmd.get("batches", [1])]
        trigger_batches = [int(b) for b in cmd.get("trigger_batches") or []]
        plans = []
        for i in range(clients):
            cycle = batches[i % len(batches) :] + batches[: i % len(batches)]
            plans.append([(b, self.request_for(i, b), images(b)) for b in cycle])
        mode = cmd.get("trigger_mode") or "compile"  # compile (+ first inference), compile-only, cached
        prepared = {b: self.request_for(-1, b) for b in trigger_batches} if mode == "cached" else {}
        warmup, duration = float(cmd["warmup"]), float(cmd["duration"])
        t0 = time.time() + 0.1
        end = t0 + warmup + duration
        samples: list[list[Sample]] = [[] for _ in range(clients)]
        triggers: list[Sample] = []
        compiles: list[list[float]] = []
        trigger_data = {b: images(b) for b in trigger_batches}
        errors: list[str] = []

        def client(plan: list[tuple[int, Any, np.ndarray]], mine: list[Sample]) -> None:
            time.sleep(max(0.0, t0 - time.time()))
            n = 0
            while (start := time.time()) < end:
                batch, request, data = plan[n % len(plan)]
                n += 1
                request.infer([data])
                mine.append([start, time.time(), batch, 1, None])

        def trigger() -> None:
            core, model = self.core, self.model
            try:
                if cmd.get("nice"):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(cmd["nice"]))
                time.sleep(max(0.0, t0 - time.time()))
                n = 0
                while (start := time.time()) < end:
                    batch = trigger_batches[n % len(trigger_batches)]
                    n += 1
                    if mode == "cached":
                        prepared[batch].infer([trigger_data[batch]])
                    else:
                        variant = model.clone()
                        variant.reshape({"images": [batch, 3, 224, 224]})
                        compiled_variant = core.compile_model(variant, "CPU", PLUGIN_CONFIG)
                        compiles.append([start, time.time()])
                        if mode == "compile":
                            compiled_variant.create_infer_request().infer([trigger_data[batch]])
                        del compiled_variant
                    triggers.append([start, time.time(), batch, 1, None])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client, args=pair) for pair in zip(plans, samples, strict=True)]
        if trigger_batches:
            threads.append(threading.Thread(target=trigger))
        for t in threads:
            t.start()
        cpu = cpu_marks({"self": os.getpid()}, [t0 + warmup, end])
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(errors[0])
        return {
            "t0": t0,
            "window": [t0 + warmup, end],
            "samples": {"cached": [s for per in samples for s in per], "trigger": triggers},
            "compiles": compiles,
            "cpu": cpu,
            "errors": 0,
        }


PLUGIN_CONFIG_ENV = "RESHAPE_BENCH_PLUGIN_CONFIG"  # --plugin-config, passed on to the in-process workers


def worker_main(name: str) -> int:
    PLUGIN_CONFIG.update(json.loads(os.environ.get(PLUGIN_CONFIG_ENV, "{}")))
    if name == "client":
        return serve_commands({"load": run_load})
    if name == "first":
        return serve_commands({"first": inproc_first})
    if name == "inproc":
        return serve_commands({"load": InprocLoad()})
    raise SystemExit(f"unknown worker {name}")


# -- (a) first request of a new shape ------------------------------------------------------------------------------


def measure_first(
    children: Children, tmp: Path, config: Path, model_path: str, repeats: int, daemon_args: list[str]
) -> list[dict[str, Any]]:
    runs = []
    for r in range(repeats):
        row: dict[str, Any] = {"repeat": r}
        for side in ("daemon", "inproc") if r % 2 == 0 else ("inproc", "daemon"):  # alternate which goes first
            if side == "daemon":
                row.update(first_daemon(children, config, tmp / f"first-{r}.log", daemon_args))
            else:
                row.update(first_inproc(children, model_path, tmp / f"first-inproc-{r}.log"))
        row["ratio"] = ratio(row["daemon_first_ms"], row["inproc_first_ms"])
        runs.append(row)
        print(
            f"  (a) {r + 1}/{repeats}: first batch-{NEW_BATCH} request: daemon {row['daemon_first_ms']:.0f} ms "
            f"(compile ~{row['daemon_compile_ms']:.0f}, next {row['daemon_second_ms']:.0f}) | in-process "
            f"{row['inproc_first_ms']:.0f} ms (compile {row['inproc_compile_ms']:.0f}, first infer "
            f"{row['inproc_first_infer_ms']:.0f}, next {row['inproc_second_ms']:.0f}) | ratio {row['ratio']:.2f}",
            flush=True,
        )
    return runs


def first_daemon(children: Children, config: Path, log_path: Path, daemon_args: list[str]) -> dict[str, float]:
    """A fresh daemon: 3 batch-1 requests, then the first and second batch-``NEW_BATCH`` requests."""
    import grpc

    from ovmsd.api.grpc.proto import prediction_service_pb2_grpc

    b1 = predict_request(MODEL, images(1))
    bn = predict_request(MODEL, images(NEW_BATCH))
    daemon = DaemonProcess(children, config, log_path, daemon_args, label="daemon-first")
    try:
        load_s = daemon.wait_available([MODEL])
        with grpc.insecure_channel(daemon.address, options=GRPC_OPTIONS) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(3):
                predict_once(stub, b1)
            sent = time.time()
            first, _, shape = predict_once(stub, bn)
            second, _, _ = predict_once(stub, bn)
        if shape != (NEW_BATCH, 1000):
            raise AssertionError(f"batch {NEW_BATCH} answered with shape {shape}")
        compiled_at = [t for t, _ in log_events(daemon.log(), COMPILED_LINE) if t >= sent - 0.01]
    finally:
        daemon.stop()
    return {
        "daemon_load_s": load_s,
        "daemon_first_ms": first * 1e3,
        "daemon_second_ms": second * 1e3,
        # from sending the request to the daemon's "compiled shape" log line (ms resolution)
        "daemon_compile_ms": (compiled_at[0] - sent) * 1e3 if compiled_at else math.nan,
    }


def first_inproc(children: Children, model_path: str, log_path: Path) -> dict[str, float]:
    worker = Worker(children, Path(__file__), "first", log_path)
    try:
        result = worker.call(op="first", model_path=model_path, new_batch=NEW_BATCH)
    finally:
        worker.stop()
    return {f"inproc_{k}": v for k, v in result.items()}


# -- (b) alternating batch sizes -------------------------------------------------------------------------------------


STEADY = "steady batch 1"
INPROC_STEADY = "in-process: steady batch 1"


def measure_alternating(
    clients_proc: Worker,
    inproc: Worker | None,
    daemons: dict[str, DaemonProcess],
    model_path: str,
    clients: int,
    repeats: int,
    warmup: float,
    duration: float,
) -> list[dict[str, Any]]:
    cases = [  # (label, where, batches, the steady case it is compared with)
        (STEADY, "cache", [1], STEADY),
        (f"alternating 1,{NEW_BATCH}", "cache", [1, NEW_BATCH], STEADY),
        (f"alternating 1,{NEW_BATCH}, --shape-cache-size 1", "nocache", [1, NEW_BATCH], STEADY),
    ]
    if inproc is not None:
        cases += [
            (INPROC_STEADY, "inproc", [1], INPROC_STEADY),
            (f"in-process: alternating 1,{NEW_BATCH} (2 compiled models)", "inproc", [1, NEW_BATCH], INPROC_STEADY),
        ]
    runs = []
    for r in range(repeats):
        for label, where, batches, steady in cases:
            if where == "inproc":
                assert inproc is not None
                result = inproc.call(op="load", model_path=model_path, clients=clients, batches=batches,
                                     warmup=warmup, duration=duration)  # fmt: skip
                samples, compiles = result["samples"]["cached"], []
            else:
                daemon = daemons[where]
                result = clients_proc.call(
                    op="load", address=daemon.address, daemon_pid=daemon.pid, model=MODEL, warmup=warmup,
                    duration=duration, groups=[{"label": "load", "clients": clients, "batches": batches}],
                )  # fmt: skip
                samples = result["samples"]["load"]
            start, end = result["window"]
            if where != "inproc":
                compiles = [t for t, _ in log_events(daemon.log(), COMPILED_LINE) if start <= t <= end]
            thr = throughput(samples, start, end)
            by_batch = {
                str(b): latency_of([s for s in completed_in(samples, start, end) if s[2] == b])["p50_ms"]
                for b in sorted(set(batches))
            }
            cpu = result["cpu"][0] if result["cpu"] else {}
            runs.append({
                "repeat": r, "case": label, "where": where, "steady_case": steady, "batches": batches, **thr,
                "completed": len(completed_in(samples, start, end)), "errors": result["errors"],
                "compiles_in_window": len(compiles), "p50_ms_by_batch": by_batch, "cpu": cpu,
            })  # fmt: skip
            print(
                f"  (b) {r + 1}/{repeats} {label:<50} {thr['img_s']:5.1f} img/s {thr['req_s']:6.2f} req/s "
                f"compiles {len(compiles):3d}; p50 {', '.join(f'b{b} {v:.0f}' for b, v in by_batch.items())} ms"
                f" | other load {cpu.get('other_busy_cores', math.nan):.2f} cores",
                flush=True,
            )
            if result["errors"]:
                raise RuntimeError(f"{result['errors']} failed requests in {label}")
    return runs


# -- (c) cached-shape latency while new shapes compile ---------------------------------------------------------------


def interference_row(side: str, phase: str, r: int, result: dict[str, Any], compiles: list[list[float]]):
    start, end = result["window"]
    cached = result["samples"]["cached"]
    in_window = completed_in(cached, start, end)
    windows = [(a, b) for a, b in compiles if b >= start and a <= end]
    during = [s for s in overlapping(cached, windows) if start <= s[1] <= end + 5]
    compile_ms = [(b - a) * 1e3 for a, b in windows] if phase != MIXED else []
    cpu = result["cpu"][0] if result["cpu"] else {}
    return {
        "repeat": r, "side": side, "phase": phase,
        "window": latency_of(in_window), "during_compile": latency_of(during),
        "req_s": throughput(cached, start, end)["req_s"],
        "compiles": len(compile_ms), "compile_ms_median": median(compile_ms),
        "trigger_ms_median": median((s[1] - s[0]) * 1e3 for s in result["samples"].get("trigger", [])),
        "during_latencies_ms": [(s[1] - s[0]) * 1e3 for s in during],
        "window_latencies_ms": [(s[1] - s[0]) * 1e3 for s in in_window],
        "cpu": cpu,
    }  # fmt: skip


def daemon_compile_windows(result: dict[str, Any], log_text: str) -> tuple[list[list[float]], int]:
    """Each trigger request's compile: from its start to the next "compiled shape" log line before it ended (the
    whole request where the log line is missing). Returns the windows and how many had no log line."""
    events = sorted(t for t, _ in log_events(log_text, COMPILED_LINE))
    windows, missing = [], 0
    for t0, t1, *_ in result["samples"].get("trigger", []):
        done = next((t for t in events if t0 - 0.005 <= t <= t1 + 0.005), None)
        if done is None:
            missing += 1
        windows.append([t0, done if done is not None else t1])
    return windows, missing


def measure_interference(
    clients_proc: Worker,
    inproc: Worker | None,
    daemon: DaemonProcess,
    mixed_daemon: DaemonProcess | None,
    model_path: str,
    clients: int,
    repeats: int,
    warmup: float,
    duration: float,
) -> list[dict[str, Any]]:
    """Phases: steady (batch-1 clients only); compiling (plus a thread whose every request compiles a new shape);
    mixed (the same trigger sizes, all compiled beforehand on a daemon whose cache holds them: the cost of serving
    the other sizes, without compiling)."""
    runs = []
    cached = {"label": "cached", "clients": clients, "batches": [1]}
    trigger = {"label": "trigger", "clients": 1, "batches": TRIGGER_BATCHES, "prime": False}
    phases = ["steady", COMPILING] + ([MIXED] if mixed_daemon is not None else [])
    for r in range(repeats):
        for phase in phases:
            target = mixed_daemon if phase == MIXED else daemon
            assert target is not None
            groups = {"steady": [cached], COMPILING: [cached, trigger], MIXED: [cached, {**trigger, "prime": True}]}
            result = clients_proc.call(
                op="load", address=target.address, daemon_pid=target.pid, model=MODEL, warmup=warmup,
                duration=duration, groups=groups[phase],
            )  # fmt: skip
            if result["errors"]:
                raise RuntimeError(f"{result['errors']} failed requests in (c) {phase}")
            missing = 0
            if phase == COMPILING:
                windows, missing = daemon_compile_windows(result, target.log())
            else:  # mixed: the trigger requests themselves (inference of the other sizes)
                windows = [s[:2] for s in result["samples"].get("trigger", [])]
            row = interference_row("daemon", phase, r, result, windows)
            row["compiles_without_log_line"] = missing
            if phase == MIXED:
                start, end = result["window"]
                row["compiles"] = len([t for t, _ in log_events(target.log(), COMPILED_LINE) if start <= t <= end])
            runs.append(row)
            print_interference(row, r, repeats)
            if inproc is not None:
                mode = {"steady": None, COMPILING: "compile", MIXED: "cached"}[phase]
                result = inproc.call(
                    op="load", model_path=model_path, clients=clients, warmup=warmup, duration=duration,
                    trigger_batches=TRIGGER_BATCHES if mode else [], trigger_mode=mode,
                )  # fmt: skip
                windows = result["compiles"] if phase == COMPILING else [s[:2] for s in result["samples"]["trigger"]]
                row = interference_row("in-process", phase, r, result, windows)
                runs.append(row)
                print_interference(row, r, repeats)
    return runs


def print_interference(row: dict[str, Any], r: int, repeats: int) -> None:
    w, d = row["window"], row["during_compile"]
    what = "compiles" if row["phase"] != MIXED else "trigger requests"
    extra = (
        f" | during {what}: n {d['n']} p50 {d['p50_ms']:.0f} p99 {d['p99_ms']:.0f} ms; {row['compiles']} compiles, "
        f"median {row['compile_ms_median']:.0f} ms"
        if row["phase"] != "steady"
        else ""
    )
    nice = f" nice {row['nice']}" if row.get("nice") is not None else ""
    print(
        f"  (c) {r + 1}/{repeats} {row['side']:<10} {row['phase'] + nice:<13} batch 1: n {w['n']} p50 "
        f"{w['p50_ms']:.0f} p99 {w['p99_ms']:.0f} ms{extra} | other load "
        f"{row['cpu'].get('other_busy_cores', math.nan):.2f} cores",
        flush=True,
    )


def measure_knobs(
    inproc: Worker, model_path: str, clients: int, repeats: int, warmup: float, duration: float, nices: list[int]
) -> list[dict[str, Any]]:
    """(c) in-process only: the compiling thread at each nice level (compile + first inference of the new shape, as
    the daemon does), compile only at the lowest and highest nice level, and the same sizes already compiled."""
    cases = [("steady", None, None)] + [(COMPILING, "compile", n) for n in nices]
    cases += [(COMPILE_ONLY, "compile-only", n) for n in sorted({min(nices), max(nices)})]
    cases += [(MIXED, "cached", None)]
    runs = []
    for r in range(repeats):
        for phase, mode, nice in cases:
            result = inproc.call(op="load", model_path=model_path, clients=clients, warmup=warmup, duration=duration,
                                 trigger_batches=TRIGGER_BATCHES if mode else [], trigger_mode=mode,
                                 nice=nice)  # fmt: skip
            windows = result["compiles"] if phase != MIXED else [s[:2] for s in result["samples"]["trigger"]]
            row = interference_row("in-process", phase, r, result, windows)
            row["nice"] = nice
            runs.append(row)
            print_interference(row, r, repeats)
    return runs


# -- summary ---------------------------------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = results.get("first") or []
    if first:
        keys = [k for k in first[0] if k != "repeat"]
        out["first"] = {k: median(r[k] for r in first) for k in keys}
        out["first"]["ratios"] = [r["ratio"] for r in first]
    alt = results.get("alternating") or []
    if alt:
        cases = []
        for label in dict.fromkeys(r["case"] for r in alt):
            rows = [r for r in alt if r["case"] == label]
            steady = {r["repeat"]: r for r in alt if r["case"] == rows[0]["steady_case"]}
            img_ratios = [ratio(r["img_s"], steady[r["repeat"]]["img_s"]) for r in rows if r["repeat"] in steady]
            req_ratios = [ratio(r["req_s"], steady[r["repeat"]]["req_s"]) for r in rows if r["repeat"] in steady]
            cases.append({
                "case": label, "img_s": median(r["img_s"] for r in rows), "req_s": median(r["req_s"] for r in rows),
                "img_ratio": median(img_ratios), "req_ratio": median(req_ratios), "img_ratios": img_ratios,
                "compiles_in_window": median(r["compiles_in_window"] for r in rows),
                "p50_ms_by_batch": {b: median(r["p50_ms_by_batch"][b] for r in rows)
                                    for b in rows[0]["p50_ms_by_batch"]},
                "other_busy_cores": median(r["cpu"].get("other_busy_cores", math.nan) for r in rows),
            })  # fmt: skip
        out["alternating"] = cases
    for key in ("interference", "knobs"):
        rows_all = results.get(key) or []
        if not rows_all:
            continue
        groups = []
        for side, phase, nice in dict.fromkeys((r["side"], r["phase"], r.get("nice")) for r in rows_all):
            rows = [r for r in rows_all if r["side"] == side and r["phase"] == phase and r.get("nice") == nice]
            steady = {r["repeat"]: r for r in rows_all if r["side"] == side and r["phase"] == "steady"}

            def per_repeat(metric: str, part: str, rows: list[dict[str, Any]] = rows, steady: dict = steady):
                return [ratio(r[part][metric], steady[r["repeat"]]["window"][metric])
                        for r in rows if r["repeat"] in steady]  # fmt: skip

            pooled_during = [x for r in rows for x in r["during_latencies_ms"]]
            pooled_window = [x for r in rows for x in r["window_latencies_ms"]]
            groups.append({
                "side": side, "phase": phase, "nice": nice,
                "window_n": median(r["window"]["n"] for r in rows),
                "window_p50_ms": median(r["window"]["p50_ms"] for r in rows),
                "window_p99_ms": median(r["window"]["p99_ms"] for r in rows),
                "during_n": median(r["during_compile"]["n"] for r in rows),
                "during_p50_ms": median(r["during_compile"]["p50_ms"] for r in rows),
                "during_p99_ms": median(r["during_compile"]["p99_ms"] for r in rows),
                "pooled_during_p99_ms": float(np.percentile(pooled_during, 99)) if pooled_during else math.nan,
                "pooled_window_p99_ms": float(np.percentile(pooled_window, 99)) if pooled_window else math.nan,
                "p50_ratio_during": median(per_repeat("p50_ms", "during_compile")),
                "p99_ratio_during": median(per_repeat("p99_ms", "during_compile")),
                "p50_ratio_window": median(per_repeat("p50_ms", "window")),
                "p99_ratio_window": median(per_repeat("p99_ms", "window")),
                "p50_ratios_during": per_repeat("p50_ms", "during_compile"),
                "req_s": median(r["req_s"] for r in rows),
                "compiles": median(r["compiles"] for r in rows),
                "compile_ms": median(r["compile_ms_median"] for r in rows),
                "trigger_ms": median(r["trigger_ms_median"] for r in rows),
                "other_busy_cores": median(r["cpu"].get("other_busy_cores", math.nan) for r in rows),
                "noisy_runs": sum(r["cpu"].get("other_busy_cores", 0.0) > NOISY_CORES for r in rows),
            })  # fmt: skip
        out[key] = groups
    return out


def evaluate_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []

    def status(value: float, ok: bool) -> str:
        return "N/A" if value is None or math.isnan(value) else ("PASS" if ok else "MISS")

    first = summary.get("first")
    if first:
        v = first["ratio"]
        targets.append({"target": f"(a) first batch-{NEW_BATCH} request: daemon / in-process reshape+compile+infer "
                        f"<= {FIRST_MAX_RATIO}", "measured": v, "status": status(v, v <= FIRST_MAX_RATIO)})  # fmt: skip
    for case in summary.get("alternating", []):
        if "steady" in case["case"] or case["case"].startswith("in-process"):
            continue
        v = case["img_ratio"]
        cached = "size 1" not in case["case"]
        targets.append({
            "target": f"(b) {case['case']}: images/s vs steady batch 1 >= {ALTERNATING_MIN_RATIO}"
            + ("" if cached else " (upstream behaviour, reported)"),
            "measured": v,
            "status": status(v, v >= ALTERNATING_MIN_RATIO) if cached else "info",
        })  # fmt: skip
    for g in summary.get("interference", []):
        if g["side"] == "daemon" and g["phase"] == "compiling":
            v = g["p50_ratio_during"]
            targets.append({"target": f"(c) batch-1 p50 while compiling vs steady <= {COMPILE_P50_MAX_RATIO}",
                            "measured": v, "status": status(v, v <= COMPILE_P50_MAX_RATIO)})  # fmt: skip
            targets.append({"target": "(c) batch-1 p99 while compiling vs steady (as low as possible)",
                            "measured": g["p99_ratio_during"], "status": "info"})  # fmt: skip
        if g["side"] == "daemon" and g["phase"] == MIXED:
            targets.append({"target": "(c) reference: batch-1 p99 while the same sizes are served from the cache",
                            "measured": g["p99_ratio_during"], "status": "info"})  # fmt: skip
    return targets


def print_results(summary: dict[str, Any], targets: list[dict[str, Any]], markdown: bool = False) -> None:
    first = summary.get("first")
    if first:
        print_table(
            ["", "first request ms", "of which compile ms", "first infer ms", "next request ms"],
            [
                ["daemon (gRPC)", fmt(first["daemon_first_ms"], 0), fmt(first["daemon_compile_ms"], 0) + " (log)",
                 "-", fmt(first["daemon_second_ms"], 0)],
                ["in-process", fmt(first["inproc_first_ms"], 0),
                 fmt(first["inproc_reshape_ms"] + first["inproc_compile_ms"] + first["inproc_create_request_ms"], 0),
                 fmt(first["inproc_first_infer_ms"], 0), fmt(first["inproc_second_ms"], 0)],
                ["ratio", fmt(first["ratio"], 2) + " (runs " + ", ".join(f"{x:.2f}" for x in first["ratios"]) + ")",
                 "", "", fmt(ratio(first["daemon_second_ms"], first["inproc_second_ms"]), 2)],
            ],
            markdown=markdown,
            title=f"(a) First request of batch {NEW_BATCH} after batch 1 (fresh processes; medians)",
        )  # fmt: skip
    if summary.get("alternating"):
        print_table(
            ["workload", "img/s", "req/s", "img/s vs steady", "req/s vs steady", "compiles in window",
             "p50 ms batch 1", f"p50 ms batch {NEW_BATCH}", "other cores"],
            [[c["case"], fmt(c["img_s"]), fmt(c["req_s"], 2), fmt(c["img_ratio"], 2), fmt(c["req_ratio"], 2),
              fmt(c["compiles_in_window"], 0), fmt(c["p50_ms_by_batch"].get("1", math.nan), 0),
              fmt(c["p50_ms_by_batch"].get(str(NEW_BATCH), math.nan), 0), fmt(c["other_busy_cores"], 2)]
             for c in summary["alternating"]],
            markdown=markdown,
            title="(b) Alternating batch sizes vs steady batch 1 (medians; ratios: medians of per-repeat ratios)",
        )  # fmt: skip
    for key, title in (
        (
            "interference",
            "(c) Batch-1 (cached shape) latency while new shapes compile (medians of repeats; 'during': "
            "batch-1 requests running during a compile, or during a trigger request in the mixed, cached phase)",
        ),
        ("knobs", "In-process (c) with the compiling thread at a nice level (medians of repeats)"),
    ):
        if not summary.get(key):
            continue
        print_table(
            ["side", "phase", "nice", "req/s", "p50 ms", "p99 ms", "p50 during", "p99 during",
             "n during", "p50 ratio", "p99 ratio", "pooled p99", "compiles", "compile ms", "other cores"],
            [[g["side"], g["phase"], "-" if g["nice"] is None else g["nice"], fmt(g["req_s"]),
              fmt(g["window_p50_ms"], 0), fmt(g["window_p99_ms"], 0), fmt(g["during_p50_ms"], 0),
              fmt(g["during_p99_ms"], 0), fmt(g["during_n"], 0), fmt(g["p50_ratio_during"], 2),
              fmt(g["p99_ratio_during"], 2),
              fmt(g["pooled_during_p99_ms"] if g["phase"] != "steady" else g["pooled_window_p99_ms"], 0),
              fmt(g["compiles"], 0), fmt(g["compile_ms"], 0), fmt(g["other_busy_cores"], 2)]
             for g in summary[key]],
            markdown=markdown,
            title=title,
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
    p.add_argument("--repeats", type=int, help="repeats of (b) and (c); medians reported (default 3; 1 with --quick)")
    p.add_argument("--first-repeats", type=int, help="repeats of (a), each with fresh processes (default 5)")
    p.add_argument("--duration", type=float, help="measured seconds per window (default 10; 3 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per window (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--parts", default="a,b,c", help="which parts to run (default a,b,c)")
    p.add_argument("--clients", type=int, default=2, help="client threads of (b) and (c) (default 2)")
    p.add_argument("--no-inproc", action="store_true", help="(b), (c): skip the in-process references")
    p.add_argument("--knobs", action="store_true", help="run only the in-process (c) with compile-thread nice levels")
    p.add_argument("--nice", default="0,5,10,19", help="nice levels for --knobs (default 0,5,10,19)")
    p.add_argument("--plugin-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra plugin_config for both sides, repeatable (e.g. ENABLE_CPU_PINNING=False)")  # fmt: skip
    p.add_argument("--json", type=Path, help="results file (default benchmarks/results/reshape.json)")
    p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                   help="extra daemon argument, repeatable (e.g. --daemon-arg=--grpc-workers=4)")  # fmt: skip
    p.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier results file")
    p.add_argument("--markdown", action="store_true", help="print tables as GitHub markdown")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.first_repeats = args.first_repeats or (1 if args.quick else 5)
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    if args.json is None:
        args.json = DEFAULT_JSON.with_name("reshape-knobs.json") if args.knobs else DEFAULT_JSON
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print_results(saved["summary"], saved["targets"], markdown=args.markdown)
        return 0
    extra = dict(kv.split("=", 1) for kv in args.plugin_config)
    PLUGIN_CONFIG.update(extra)
    os.environ[PLUGIN_CONFIG_ENV] = json.dumps(extra)
    parts = set() if args.knobs else {p.strip() for p in args.parts.split(",") if p.strip()}
    machine = machine_info()
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), openvino {machine['openvino']}, load average "
        f"{' '.join(machine['loadavg_at_start'])}\nplan: parts {','.join(sorted(parts)) or 'knobs'}, "
        f"{args.clients} clients, {args.repeats} repeats ((a): {args.first_repeats}), warm-up {args.warmup:g} s + "
        f"{args.duration:g} s per window; plugin_config {PLUGIN_CONFIG}; daemon args {args.daemon_arg or 'default'}",
        flush=True,
    )
    results: dict[str, Any] = {
        "benchmark": "reshape",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "git": git_state(),
        "machine": machine,
        "setup": {
            "plugin_config": PLUGIN_CONFIG,
            "model": "resnet50 (common.resnet50_model), batch_size auto",
            "new_batch": NEW_BATCH,
            "shape_cache_size": CACHE_SIZE,
            "trigger_batches": TRIGGER_BATCHES,
        },
    }
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ovmsd-reshape-")))
            children = stack.enter_context(Children())
            model_path = str(save_ir(resnet50_model(1, seed=0), tmp / "models" / MODEL, 1))
            config = write_config(
                tmp / "config.json",
                [{"name": MODEL, "base_path": str(tmp / "models" / MODEL), "batch_size": "auto",
                  "plugin_config": PLUGIN_CONFIG}],
            )  # fmt: skip
            if args.knobs:
                inproc = Worker(children, Path(__file__), "inproc", tmp / "inproc.log")
                nices = [int(n) for n in args.nice.split(",")]
                results["knobs"] = measure_knobs(
                    inproc, model_path, args.clients, args.repeats, args.warmup, args.duration, nices
                )
                inproc.stop()
            if "a" in parts:
                results["first"] = measure_first(
                    children, tmp, config, model_path, args.first_repeats,
                    ["--shape-cache-size", str(CACHE_SIZE), *args.daemon_arg],
                )  # fmt: skip
            if parts & {"b", "c"}:
                clients_proc = Worker(children, Path(__file__), "client", tmp / "clients.log")
                cache_args = ["--shape-cache-size", str(CACHE_SIZE), *args.daemon_arg]
                daemons = {"cache": DaemonProcess(children, config, tmp / "daemon.log", cache_args)}
                if "b" in parts:
                    daemons["nocache"] = DaemonProcess(
                        children, config, tmp / "daemon-nocache.log", ["--shape-cache-size", "1", *args.daemon_arg],
                        label="daemon-nocache",
                    )  # fmt: skip
                for d in daemons.values():
                    d.wait_available([MODEL])
                inproc = None if args.no_inproc else Worker(children, Path(__file__), "inproc", tmp / "inproc.log")
                if "b" in parts:
                    results["alternating"] = measure_alternating(
                        clients_proc, inproc, daemons, model_path, args.clients, args.repeats, args.warmup,
                        args.duration,
                    )  # fmt: skip
                    daemons.pop("nocache").stop()
                if "c" in parts:
                    mixed = DaemonProcess(
                        children, config, tmp / "daemon-mixed.log",
                        ["--shape-cache-size", str(len(TRIGGER_BATCHES) + 1), *args.daemon_arg], label="daemon-mixed",
                    )  # fmt: skip
                    daemons["mixed"] = mixed
                    mixed.wait_available([MODEL])
                    results["interference"] = measure_interference(
                        clients_proc, inproc, daemons["cache"], mixed, model_path, args.clients, args.repeats,
                        args.warmup, args.duration,
                    )  # fmt: skip
                if inproc is not None:
                    inproc.stop()
                for d in daemons.values():
                    d.stop()
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
