"""Idle CPU of the once-a-second rescan with a version directory of many files (issue 12: 5,000 files cost 20-26%
of a core before the fingerprint cache).

One tiny model whose version directory also holds ``--files`` small files, live updates on (rescan every 1 s); the
daemon's CPU seconds over ``--window`` seconds of no traffic, median of ``--repeats`` windows, for this checkout and
optionally for another checkout's daemon (``--before DIR``: its ``daemon/`` folder, e.g. a ``git worktree``).

    .venv/bin/python benchmarks/rescan.py [--files 5000] [--window 10] [--repeats 3] [--before /tmp/before/daemon]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (
    Children,
    DaemonProcess,
    daemon_env,
    machine_info,
    median,
    print_table,
    process_cpu_s,
    save_ir,
    tiny_model,
    write_config,
    write_json,
)


def idle_cpu(children: Children, root: Path, label: str, daemon_path: Path | None, args: argparse.Namespace) -> dict:
    config = write_config(root / "config.json", [{"name": "tiny", "base_path": str(root / "tiny")}])
    daemon = DaemonProcess(
        children,
        config,
        root / f"{label}.log",
        ["--file-system-poll-wait-seconds", "1"],
        label=label,
        env=daemon_env(daemon_path),
    )
    try:
        daemon.wait_available(["tiny"])
        time.sleep(3)  # start-up and the first scans are over
        shares = []
        for _ in range(args.repeats):
            before, started = process_cpu_s(daemon.pid), time.monotonic()
            time.sleep(args.window)
            shares.append((process_cpu_s(daemon.pid) - before) / (time.monotonic() - started))
        return {"label": label, "core_share": median(shares), "runs": shares}
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout's daemon/ folder, measured first")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "rescan.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rescan-") as folder, Children() as children:
        root = Path(folder)
        version = save_ir(tiny_model(1), root / "tiny").parent
        for index in range(args.files):
            (version / "extra" / f"{index // 1000}").mkdir(parents=True, exist_ok=True)
            (version / "extra" / f"{index // 1000}" / f"f{index}.bin").write_bytes(b"x")
        results = []
        if args.before is not None:
            results.append(idle_cpu(children, root, "before", args.before, args))
        results.append(idle_cpu(children, root, "this checkout", None, args))
    rows = [
        [r["label"], f"{100 * r['core_share']:.1f} %", ", ".join(f"{100 * v:.1f}" for v in r["runs"])] for r in results
    ]
    print_table(["daemon", "idle CPU (median)", "windows (%)"], rows, title=f"rescan, {args.files} files, 1 s polls")
    write_json(args.json, {"files": args.files, "window_s": args.window, "results": results, "machine": machine_info()})


if __name__ == "__main__":
    main()
