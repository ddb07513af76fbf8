"""Daemon settings: the canonical command line of ``python -m ovmsd`` (``ovmsctl start`` builds it).

The options, their defaults and their range checks come from :mod:`ovmsd.options`; this module only turns them
into an argparse parser and a :class:`Settings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovmsd.options import OPTIONS, Option, default_of, factory_of, in_group

SINGLE_MODEL_OPTIONS = tuple(o.dest for o in in_group("model"))


@dataclass(frozen=True)
class Settings:
    """What the daemon runs with. Every default is the option table's (a test checks that they agree)."""

    config_path: Path | None
    single_model: dict[str, str]  # the single-model options given, by their canonical names
    port: int = default_of("port")
    bind_address: str = default_of("bind_address")
    log_level: str = default_of("log_level")
    log_file: Path | None = default_of("log_file")  # noqa: RUF009 (None)
    grpc_workers: int = field(default_factory=factory_of("grpc_workers"))
    load_workers: int = field(default_factory=factory_of("load_workers"))  # model versions loading at once
    max_connections: int = default_of("max_connections")  # per port
    idle_timeout_s: float = default_of("idle_timeout_s")
    max_message_bytes: int = default_of("max_message_bytes")
    max_config_bytes: int = default_of("max_config_bytes")  # a larger config file is a config error
    max_image_pixels: int = default_of("max_image_pixels")  # per binary input image (decompression bombs)
    shape_cache_size: int = default_of("shape_cache_size")
    # request limits (ovmsd.serving.limits), for models whose config sets none
    max_input_bytes: int = default_of("max_input_bytes")
    max_auto_batch: int = default_of("max_auto_batch")
    max_auto_dim: int = default_of("max_auto_dim")
    shape_cache_bytes: int = default_of("shape_cache_bytes")
    max_concurrent_requests: int | None = default_of("max_concurrent_requests")  # None: half of grpc_workers
    reshape_timeout_s: float = default_of("reshape_timeout_s")
    cache_dir: Path | None = default_of("cache_dir")  # noqa: RUF009 (None)
    # mirrors of s3:// base paths; None: the state dir's object-store folder, else a temporary dir
    object_store_cache_dir: Path | None = default_of("object_store_cache_dir")  # noqa: RUF009 (None)
    drain_timeout_s: float = default_of("drain_timeout_s")
    # pidfile and control socket; None: neither (a bare `python -m ovmsd`)
    state_dir: Path | None = default_of("state_dir")  # noqa: RUF009 (None)
    rest_port: int | None = default_of("rest_port")  # REST APIs; None: off
    rest_bind_address: str | None = default_of("rest_bind_address")  # None: bind_address
    rest_workers: int = field(default_factory=factory_of("rest_workers"))
    metrics_enable: bool = default_of("metrics_enable")  # /metrics on the REST port
    ssl_config_file: Path | None = default_of("ssl_config_file")  # noqa: RUF009 (None)
    tls_cert: Path | None = default_of("tls_cert")  # noqa: RUF009 (None)
    tls_key: Path | None = default_of("tls_key")  # noqa: RUF009 (None)
    tls_client_ca: Path | None = default_of("tls_client_ca")  # noqa: RUF009 (None)
    api_key_file: Path | None = default_of("api_key_file")  # noqa: RUF009 (None)
    metrics_port: int | None = default_of("metrics_port")  # Prometheus /metrics on bind_address; None: off
    stage_timers: bool = default_of("stage_timers")  # ovmsd.stages, exported with the metrics
    file_system_poll_wait_s: float = default_of("file_system_poll_wait_s")  # 0 turns watching off
    force_polling: bool = default_of("force_polling")  # watch by polling (NFS, bind mounts) instead of inotify
    ready_fd: int | None = default_of("ready_fd")  # set by `ovmsctl start`: where to say READY or FAILED


def _checked(option: Option) -> Callable[[str], Any]:
    """An argparse ``type`` applying the table's conversion and range check, with the table's message."""

    def convert(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None

    return convert


def _help(option: Option) -> str:
    if option.hidden:
        return argparse.SUPPRESS
    extra = option.range_text()
    text = option.help_text()
    return f"{text} [{extra}]" if extra else text


def parser() -> argparse.ArgumentParser:
    """Every option of the table, under all its spellings. Absent options stay absent: Settings has the defaults."""
    p = argparse.ArgumentParser(
        prog="ovmsd",
        description="OpenVINO model server daemon (TF Serving gRPC API)",
        argument_default=argparse.SUPPRESS,
    )
    for option in OPTIONS:
        if option.kind == "flag":
            p.add_argument(*option.spellings, dest=option.dest, action="store_true", help=_help(option))
        else:
            p.add_argument(
                *option.spellings,
                dest=option.dest,
                type=_checked(option),
                metavar=option.key.upper(),
                help=_help(option),
            )
    return p


def parse(argv: list[str]) -> Settings:
    p = parser()
    args = vars(p.parse_args(argv))
    single = {k: args.pop(k) for k in SINGLE_MODEL_OPTIONS if k in args}
    config_path = args.pop("config_path", None)
    if config_path is not None and single:
        p.error("--config cannot be combined with single-model options (" + ", ".join(sorted(single)) + ")")
    if config_path is None and not {"model_name", "model_path"} <= set(single):
        p.error("give --config PATH, or --model-name NAME with --model-path DIR")
    return Settings(config_path=config_path, single_model=single, **args)
