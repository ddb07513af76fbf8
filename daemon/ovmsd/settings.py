"""Daemon settings: the canonical command line of ``python -m ovmsd`` (``ovmsctl start`` builds it)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 9000


def default_grpc_workers() -> int:
    """Twice the usable cores, at least 4.

    Fewer threads serve small models much faster (less contention for the GIL: about 2,500-2,900 vs 2,180 requests/s
    for a tiny model on 2 cores with 4 vs 16 workers; see BENCHMARKS.md) while keeping every OpenVINO stream busy.
    """
    return max(4, 2 * len(os.sched_getaffinity(0)))


DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 * 1024  # 1 GiB, like OVMS

SINGLE_MODEL_OPTIONS = (
    "model_name",
    "model_path",
    "batch_size",
    "shape",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
)


@dataclass(frozen=True)
class Settings:
    config_path: Path | None
    single_model: dict[str, str]  # the single-model options given, by their canonical names
    port: int = DEFAULT_PORT
    bind_address: str = "127.0.0.1"
    log_level: str = "INFO"
    log_file: Path | None = None
    grpc_workers: int = field(default_factory=default_grpc_workers)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    shape_cache_size: int = 4
    reshape_timeout_s: float = 30.0
    cache_dir: Path | None = None
    drain_timeout_s: float = 30.0
    state_dir: Path | None = None  # pidfile and control socket; None: neither (a bare `python -m ovmsd`)
    metrics_port: int | None = None  # Prometheus /metrics on bind_address; None: off
    file_system_poll_wait_s: float = 1.0  # live updates: rescan interval; 0 turns watching off
    force_polling: bool = False  # watch by polling (NFS, bind mounts) instead of inotify
    ready_fd: int | None = None  # set by `ovmsctl start`: where to say READY or FAILED (ovmsd.runtime.readyfd)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ovmsd", description="OpenVINO model server daemon (TF Serving gRPC API)")
    p.add_argument("--config", type=Path, dest="config_path")
    for name in SINGLE_MODEL_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--log-file", type=Path)
    p.add_argument("--grpc-workers", type=int, default=default_grpc_workers())
    p.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    p.add_argument("--shape-cache-size", type=int, default=4)
    p.add_argument("--reshape-timeout", type=float, default=30.0, dest="reshape_timeout_s")
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--drain-timeout", type=float, default=30.0, dest="drain_timeout_s")
    p.add_argument("--state-dir", type=Path, help="pidfile and control socket (for ovmsctl status/stop/reload)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (off by default)")
    p.add_argument(
        "--file-system-poll-wait-seconds",
        type=float,
        default=1.0,
        dest="file_system_poll_wait_s",
        help="watch model directories and the config file, rescanning at this interval; 0: off",
    )
    p.add_argument(
        "--poll",
        action="store_true",
        dest="force_polling",
        help="watch by polling instead of inotify (NFS and other file systems whose events go missing)",
    )
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return p


def parse(argv: list[str]) -> Settings:
    p = parser()
    args = vars(p.parse_args(argv))
    single = {k: args.pop(k) for k in SINGLE_MODEL_OPTIONS}
    single = {k: v for k, v in single.items() if v is not None}
    if args["config_path"] is not None and single:
        p.error("--config cannot be combined with single-model options (" + ", ".join(sorted(single)) + ")")
    if args["config_path"] is None and not {"model_name", "model_path"} <= set(single):
        p.error("give --config PATH, or --model-name NAME with --model-path DIR")
    return Settings(single_model=single, **args)
