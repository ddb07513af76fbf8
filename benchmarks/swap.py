"""Live version swap benchmark (issue 4): a new ResNet-50-sized version published while the daemon serves the old
one under load, with an in-process OpenVINO reference measured in the same run.

Setup: the model of ``common.resnet50_model`` (batch 1 IR, f32 weights) as version 1 of ``resnet50`` (latest policy,
1 version), ``plugin_config {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}``; the daemon runs
with its defaults (watching the base path, ``--file-system-poll-wait-seconds`` 1).

Each repeat, for each client count: ``N`` closed-loop clients (threads of one separate client process, each its own
TCP connection) send batch-1 requests without a version (the default: latest). The next version's files are copied
into a staging folder beside the base path before the run; after the warm-up and ``--steady`` seconds, the folder is
renamed into ``<base>/<next>`` (the publish), and the clients go on for ``--window`` more seconds. Measured:

* steady: requests completed between the end of the warm-up and the publish; p50/p99;
* during the load: requests running at some moment between the publish and the first response served by the new
  version (``model_spec.version``); p50/p99 (target: p99 within 2x of steady, median of per-repeat ratios). Also
  all requests completed in the ``--window`` s after the publish;
* switch time: from the publish to the first response from the new version (and to the daemon's LOADING, AVAILABLE
  and old-version END log lines);
* failed requests, all of them (target: 0).

In-process reference: one OpenVINO process with ``N`` threads inferring on their own requests of the loaded model; at
the publish a loader thread reads and compiles the new version's files, creates ``N`` requests and switches the
threads over. Same metrics (no file watching, so its switch time is pure read + compile).

Usage::

    .venv/bin/python benchmarks/swap.py --quick     # smoke run, ~20 s
    .venv/bin/python benchmarks/swap.py             # full run, 3 repeats x 2 and 4 clients, ~3.5 minutes
    .venv/bin/python benchmarks/swap.py --report benchmarks/results/swap.json --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
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
    Sample,
    Worker,
    completed_in,
    cpu_marks,
    images,
    latency_of,
    log_events,
    ok,
    overlapping,
    run_load,
    serve_commands,
    throughput,
)

PLUGIN_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
MODEL = "resnet50"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "swap.json"
NOISY_CORES = 0.25

# Targets.
MAX_P99_RATIO = 2.0
MAX_FAILED = 0


# -- in-process reference ------------------------------------------------------------------------------------------


class InprocSwap:
    """Threads inferring batch 1 on the current compiled model; at ``publish`` a loader thread compiles the new one."""

    def __init__(self) -> None:
        self.core: Any = None
        self.current: tuple[int, list[Any]] | None = None  # (version, infer requests)

    def load(self, path: str, version: int, clients: int) -> tuple[int, list[Any]]:
        compiled = self.core.compile_model(self.core.read_model(path), "CPU", PLUGIN_CONFIG)
        return version, [compiled.create_infer_request() for _ in range(clients)]

    def __call__(self, cmd: dict[str, Any], notify: Any) -> dict[str, Any]:
        import openvino as ov

        if self.core is None:
            self.core = ov.Core()
        clients = int(cmd["clients"])
        if self.current is None or len(self.current[1]) != clients:
            self.current = self.load(cmd["old_path"], int(cmd["old_version"]), clients)
            for r in self.current[1]:
                r.infer([images(1)])
        warmup, steady, window = float(cmd["warmup"]), float(cmd["steady"]), float(cmd["window"])
        t0 = time.time() + 0.1
        publish, end = t0 + warmup + steady, t0 + warmup + steady + window
        samples: list[list[Sample]] = [[] for _ in range(clients)]
        events: dict[str, float] = {}
        errors: list[str] = []
        x1 = images(1)

        def client(i: int) -> None:
            time.sleep(max(0.0, t0 - time.time()))
            while (start := time.time()) < end:
                version, requests = self.current
                requests[i].infer([x1])
                samples[i].append([start, time.time(), 1, version, None])

        def loader() -> None:
            try:
                time.sleep(max(0.0, publish - time.time()))
                events["publish"] = time.time()
                new = self.load(cmd["new_path"], int(cmd["new_version"]), clients)
                events["available"] = time.time()
                self.current = new
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=loader))
        for t in threads:
            t.start()
        cpu = cpu_marks({"self": os.getpid()}, [t0 + warmup, publish, end])
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(errors[0])
        return {
            "t0": t0,
            "publish": events["publish"],
            "events": events,
            "window": [t0 + warmup, end],
            "samples": {"load": [s for per in samples for s in per]},
            "cpu": cpu,
            "errors": 0,
        }


def worker_main(name: str) -> int:
    if name == "client":
        return serve_commands({"load": run_load})
    if name == "inproc":
        return serve_commands({"swap": InprocSwap()})
    raise SystemExit(f"unknown worker {name}")


# -- measurement -----------------------------------------------------------------------------------------------------


def analyse(side: str, clients: int, r: int, result: dict[str, Any], publish: float, new_version: int) -> dict:
    samples = result["samples"]["load"]
    steady_start, end = result["window"][0], result["window"][1]
    steady = completed_in(samples, steady_start, publish)
    new = [s for s in ok(samples) if s[3] == new_version]
    first_new = min(new, key=lambda s: s[1]) if new else None
    switch_end = first_new[1] if first_new else end
    during = overlapping(samples, [(publish, switch_end)])
    after = completed_in(samples, publish, end)
    failed = [s for s in samples if s[4]]
    steady_lat, during_lat, after_lat = latency_of(steady), latency_of(during), latency_of(after)
    cpu = result.get("cpu") or []
    return {
        "side": side, "clients": clients, "repeat": r, "new_version": new_version,
        "steady": steady_lat, "during": during_lat, "after_publish": after_lat,
        "steady_req_s": throughput(samples, steady_start, publish)["req_s"],
        "during_req_s": throughput(samples, publish, switch_end)["req_s"],
        "switch_s": (first_new[1] - publish) if first_new else math.nan,
        "first_new_started_s": (first_new[0] - publish) if first_new else math.nan,
        "old_served_after_switch": sum(1 for s in ok(samples) if s[3] != new_version and s[0] > switch_end),
        "p99_ratio": ratio(during_lat["p99_ms"], steady_lat["p99_ms"]),
        "p50_ratio": ratio(during_lat["p50_ms"], steady_lat["p50_ms"]),
        "p99_ratio_after_publish": ratio(after_lat["p99_ms"], steady_lat["p99_ms"]),
        "failed": len(failed), "failures": sorted({s[4] for s in failed})[:5], "requests": len(samples),
        "during_latencies_ms": [(s[1] - s[0]) * 1e3 for s in during],
        "steady_latencies_ms": [(s[1] - s[0]) * 1e3 for s in steady],
        "cpu_steady": cpu[0] if cpu else {}, "cpu_after_publish": cpu[1] if len(cpu) > 1 else {},
    }  # fmt: skip


def daemon_events(log_text: str, version: int, publish: float) -> dict[str, float]:
    """Seconds from the publish to the daemon's log lines about the new version (and the old one's END)."""
    out = {}
    for key, pattern in (
        ("loading_s", rf"version {version}: LOADING"),
        ("available_s", rf"version {version}: AVAILABLE"),
        ("old_end_s", rf"version {version - 1}: END"),
    ):
        times = [t for t, _ in log_events(log_text, pattern) if t >= publish - 0.01]
        out[key] = times[0] - publish if times else math.nan
    return out


def stage(base: Path, source: Path, version: int) -> Path:
    """Copy ``source``'s files into a staging folder beside the base path (the daemon does not watch it)."""
    staging = base.parent / f".{base.name}.{version}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging)
    os.sync()
    return staging


def measure(
    runs: list[dict[str, Any]],
    children: Children,
    tmp: Path,
    clients_list: list[int],
    repeats: int,
    warmup: float,
    steady: float,
    window: float,
    daemon_args: list[str],
    with_inproc: bool,
) -> None:
    """Appends one row per publish (daemon, then in-process) to ``runs``."""
    base = tmp / "models" / MODEL
    save_ir(resnet50_model(1, seed=0), base, 1)
    v1 = base / "1"
    config = write_config(
        tmp / "config.json", [{"name": MODEL, "base_path": str(base), "plugin_config": PLUGIN_CONFIG}]
    )
    daemon = DaemonProcess(children, config, tmp / "daemon.log", daemon_args)
    clients_proc = Worker(children, Path(__file__), "client", tmp / "clients.log")
    inproc = Worker(children, Path(__file__), "inproc", tmp / "inproc.log") if with_inproc else None
    daemon.wait_available([MODEL])
    version = 1
    inproc_version = 1
    try:
        for r in range(repeats):
            for clients in clients_list:
                version += 1
                staging = stage(base, v1, version)
                clients_proc.send(
                    op="load", address=daemon.address, daemon_pid=daemon.pid, model=MODEL, warmup=warmup,
                    duration=steady + window, groups=[{"label": "load", "clients": clients, "batches": [1]}],
                    marks=[warmup, warmup + steady, warmup + steady + window], announce=True,
                )  # fmt: skip
                t0 = clients_proc.receive()["t0"]
                time.sleep(max(0.0, t0 + warmup + steady - time.time()))
                publish = time.time()
                staging.rename(base / str(version))
                result = clients_proc.receive()
                row = analyse("daemon", clients, r, result, publish, version)
                row.update(daemon_events(daemon.log(), version, publish))
                runs.append(row)
                report(row, r, repeats)
                if inproc is not None:
                    result = inproc.call(
                        op="swap", clients=clients, warmup=warmup, steady=steady, window=window,
                        old_path=str(base / str(inproc_version) / "model.xml"), old_version=inproc_version,
                        new_path=str(base / str(version) / "model.xml"), new_version=version,
                    )  # fmt: skip
                    inproc_version = version
                    row = analyse("in-process", clients, r, result, result["publish"], version)
                    row["available_s"] = result["events"]["available"] - result["publish"]
                    runs.append(row)
                    report(row, r, repeats)
    finally:
        if inproc is not None:
            inproc.stop()
        clients_proc.stop()
        code = daemon.stop()
        if code != 0:
            print(f"warning: daemon exited with {code}", file=sys.stderr)


def report(row: dict[str, Any], r: int, repeats: int) -> None:
    s, d = row["steady"], row["during"]
    print(
        f"  {r + 1}/{repeats} {row['side']:<10} x{row['clients']}: steady p50 {s['p50_ms']:.0f} "
        f"p99 {s['p99_ms']:.0f} ms"
        f" | during load (n {d['n']}) p50 {d['p50_ms']:.0f} p99 {d['p99_ms']:.0f} ms (p99 x{row['p99_ratio']:.2f}) | "
        f"v{row['new_version']} serves after {row['switch_s']:.2f} s (available {row.get('available_s', math.nan):.2f}"
        f" s) | failed {row['failed']} | other load {row['cpu_steady'].get('other_busy_cores', math.nan):.2f}/"
        f"{row['cpu_after_publish'].get('other_busy_cores', math.nan):.2f} cores",
        flush=True,
    )
    if row["failures"]:
        print(f"    failures: {row['failures']}", flush=True)


# -- summary ---------------------------------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for side, clients in dict.fromkeys((r["side"], r["clients"]) for r in runs):
        rows = [r for r in runs if r["side"] == side and r["clients"] == clients]

        def med(fn: Any, rows: list[dict[str, Any]] = rows) -> float:
            return median(fn(r) for r in rows)

        pooled_during = [x for r in rows for x in r["during_latencies_ms"]]
        pooled_steady = [x for r in rows for x in r["steady_latencies_ms"]]
        out.append({
            "side": side, "clients": clients, "repeats": len(rows),
            "steady_p50_ms": med(lambda r: r["steady"]["p50_ms"]),
            "steady_p99_ms": med(lambda r: r["steady"]["p99_ms"]),
            "during_p50_ms": med(lambda r: r["during"]["p50_ms"]),
            "during_p99_ms": med(lambda r: r["during"]["p99_ms"]),
            "during_n": med(lambda r: r["during"]["n"]),
            "during_max_ms": med(lambda r: r["during"].get("max_ms", math.nan)),
            "after_publish_p99_ms": med(lambda r: r["after_publish"]["p99_ms"]),
            "p99_ratio": med(lambda r: r["p99_ratio"]), "p99_ratios": [r["p99_ratio"] for r in rows],
            "p50_ratio": med(lambda r: r["p50_ratio"]),
            "p99_ratio_after_publish": med(lambda r: r["p99_ratio_after_publish"]),
            "pooled_steady_p99_ms": float(np.percentile(pooled_steady, 99)) if pooled_steady else math.nan,
            "pooled_during_p99_ms": float(np.percentile(pooled_during, 99)) if pooled_during else math.nan,
            "steady_req_s": med(lambda r: r["steady_req_s"]), "during_req_s": med(lambda r: r["during_req_s"]),
            "switch_s": med(lambda r: r["switch_s"]), "switch_s_runs": [r["switch_s"] for r in rows],
            "loading_s": med(lambda r: r.get("loading_s", math.nan)),
            "available_s": med(lambda r: r.get("available_s", math.nan)),
            "old_end_s": med(lambda r: r.get("old_end_s", math.nan)),
            "failed_total": sum(r["failed"] for r in rows), "requests_total": sum(r["requests"] for r in rows),
            "other_busy_cores": median(c.get("other_busy_cores", math.nan)
                                       for r in rows for c in (r["cpu_steady"], r["cpu_after_publish"])),
            "noisy_runs": sum(max(r["cpu_steady"].get("other_busy_cores", 0.0),
                                  r["cpu_after_publish"].get("other_busy_cores", 0.0)) > NOISY_CORES for r in rows),
        })  # fmt: skip
    return out


def evaluate_targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for s in summary:
        if s["side"] != "daemon":
            continue
        v = s["p99_ratio"]
        targets.append({
            "target": f"{s['clients']} clients: p99 while the new version loads <= {MAX_P99_RATIO}x steady",
            "measured": v, "unit": "ratio",
            "status": "N/A" if math.isnan(v) else ("PASS" if v <= MAX_P99_RATIO else "MISS"),
        })  # fmt: skip
        targets.append({
            "target": f"{s['clients']} clients: failed requests = {MAX_FAILED}",
            "measured": s["failed_total"], "unit": "count",
            "status": "PASS" if s["failed_total"] <= MAX_FAILED else "MISS",
        })  # fmt: skip
        targets.append({
            "target": f"{s['clients']} clients: publish -> first response from the new version (reported)",
            "measured": s["switch_s"], "unit": "s", "status": "info",
        })  # fmt: skip
    return targets


def print_results(summary: list[dict[str, Any]], targets: list[dict[str, Any]], markdown: bool = False) -> None:
    if summary:
        print_table(
            ["side", "clients", "steady p50 ms", "steady p99 ms", "during-load p50 ms", "during-load p99 ms",
             "n during", "p99 ratio", "runs", "pooled p99 steady/during", "p99 after publish (window)",
             "req/s steady/during", "failed / requests"],
            [[s["side"], s["clients"], fmt(s["steady_p50_ms"], 0), fmt(s["steady_p99_ms"], 0),
              fmt(s["during_p50_ms"], 0), fmt(s["during_p99_ms"], 0), fmt(s["during_n"], 0), fmt(s["p99_ratio"], 2),
              ", ".join(fmt(x, 2) for x in s["p99_ratios"]),
              f"{fmt(s['pooled_steady_p99_ms'], 0)} / {fmt(s['pooled_during_p99_ms'], 0)}",
              fmt(s["after_publish_p99_ms"], 0), f"{fmt(s['steady_req_s'])} / {fmt(s['during_req_s'])}",
              f"{s['failed_total']} / {s['requests_total']}"]
             for s in summary],
            markdown=markdown,
            title="Latency while a new version loads (medians of repeats; ratio: median of per-repeat p99 ratios)",
        )  # fmt: skip
        print_table(
            ["side", "clients", "first response from new version s", "runs", "LOADING s", "AVAILABLE s",
             "old version END s", "other cores", "noisy runs"],
            [[s["side"], s["clients"], fmt(s["switch_s"], 2), ", ".join(fmt(x, 2) for x in s["switch_s_runs"]),
              fmt(s["loading_s"], 2), fmt(s["available_s"], 2), fmt(s["old_end_s"], 2),
              fmt(s["other_busy_cores"], 2), f"{s['noisy_runs']}/{s['repeats']}"]
             for s in summary],
            markdown=markdown,
            title="Switch: seconds after the publish (rename) (medians; the in-process side has no watcher: it starts "
            "loading at the publish)",
        )  # fmt: skip
    if targets:
        print_table(
            ["target", "measured", "status"],
            [[t["target"], fmt(t["measured"], 2 if t["unit"] != "count" else 0), t["status"]] for t in targets],
            markdown=markdown,
            title="Targets",
        )


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="publishes per client count; medians reported (default 3)")
    p.add_argument("--clients", default="2,4", help="concurrent clients, comma-separated (default 2,4)")
    p.add_argument("--steady", type=float, help="steady seconds before the publish (default 8; 3 with --quick)")
    p.add_argument("--window", type=float, help="seconds measured after the publish (default 6; 4 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="short smoke run: 1 repeat, 2 clients")
    p.add_argument("--no-inproc", action="store_true", help="skip the in-process reference")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file (default results/swap.json)")
    p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                   help="extra daemon argument, repeatable (e.g. --daemon-arg=--drain-timeout=10)")  # fmt: skip
    p.add_argument("--report", type=Path, metavar="JSON", help="print the tables of an earlier results file")
    p.add_argument("--markdown", action="store_true", help="print tables as GitHub markdown")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.quick and args.clients == "2,4":
        args.clients = "2"
    args.steady = args.steady if args.steady is not None else (3.0 if args.quick else 8.0)
    args.window = args.window if args.window is not None else (4.0 if args.quick else 6.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print_results(saved["summary"], saved["targets"], markdown=args.markdown)
        return 0
    clients_list = [int(c) for c in args.clients.split(",")]
    machine = machine_info()
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), openvino {machine['openvino']}, load average "
        f"{' '.join(machine['loadavg_at_start'])}\nplan: clients {clients_list} x {args.repeats} repeats, warm-up "
        f"{args.warmup:g} s + steady {args.steady:g} s, publish, + {args.window:g} s; plugin_config {PLUGIN_CONFIG}; "
        f"daemon args {args.daemon_arg or 'default'}",
        flush=True,
    )
    results: dict[str, Any] = {
        "benchmark": "swap",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "git": git_state(),
        "machine": machine,
        "setup": {"plugin_config": PLUGIN_CONFIG, "model": "resnet50 (common.resnet50_model), latest policy"},
        "runs": [],
    }
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ovmsd-swap-")))
            children = stack.enter_context(Children())
            measure(
                results["runs"], children, tmp, clients_list, args.repeats, args.warmup, args.steady, args.window,
                args.daemon_arg, not args.no_inproc,
            )  # fmt: skip
        results["status"] = "complete"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        print("\ninterrupted: stopped every process this benchmark started", file=sys.stderr)
    except Exception as exc:
        results["status"] = f"failed: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        results["elapsed_s"] = time.monotonic() - started
        summary = summarize(results["runs"])
        targets = evaluate_targets(summary)
        results["summary"] = summary
        results["targets"] = targets
        print_results(summary, targets, markdown=args.markdown)
        path = write_json(args.json, results)
        print(f"\n{results['status']} in {results['elapsed_s']:.0f} s; results: {path}")
    return 0 if results["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
