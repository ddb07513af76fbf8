"""``ovmsctl start``: run the daemon. Accepts OVMS's option spellings so OVMS command lines work unchanged."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

# (canonical ovmsd option, extra spellings accepted here, click type, help)
SERVER_OPTIONS: list[tuple[str, tuple[str, ...], Any, str]] = [
    ("--port", ("--grpc-port", "--grpc_port"), int, "gRPC port [default: 9000]."),
    (
        "--bind-address",
        ("--bind_address", "--grpc-bind-address", "--grpc_bind_address"),
        str,
        "Address to listen on [default: 127.0.0.1].",
    ),
    (
        "--log-level",
        ("--log_level",),
        click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        "Log level [default: INFO].",
    ),
    (
        "--log-file",
        ("--log_file", "--log-path", "--log_path"),
        click.Path(dir_okay=False, path_type=Path),
        "Log to this file instead of stderr.",
    ),
    ("--grpc-workers", ("--grpc_workers",), click.IntRange(1), "gRPC worker threads [default: 16]."),
    (
        "--max-message-bytes",
        ("--max_message_bytes",),
        click.IntRange(1),
        "Largest gRPC message accepted [default: 1 GiB].",
    ),
    (
        "--shape-cache-size",
        ("--shape_cache_size",),
        click.IntRange(1),
        "Compiled shapes kept per model version [default: 4].",
    ),
    (
        "--reshape-timeout",
        ("--reshape_timeout",),
        click.FloatRange(0, min_open=True),
        "Seconds a request waits for a reshape [default: 30].",
    ),
    (
        "--cache-dir",
        ("--cache_dir",),
        click.Path(file_okay=False, path_type=Path),
        "OpenVINO model cache for models with allow_cache.",
    ),
    (
        "--drain-timeout",
        ("--drain_timeout",),
        click.FloatRange(0),
        "Seconds to finish in-flight requests on stop [default: 30].",
    ),
]

MODEL_OPTIONS: list[tuple[str, tuple[str, ...], str]] = [
    ("--model-name", ("--model_name",), "Serve one model under this name (instead of --config)."),
    ("--model-path", ("--model_path",), "The model's base path, holding numeric version directories."),
    ("--batch-size", ("--batch_size",), "N, -1, MIN:MAX or auto."),
    ("--shape", (), "auto, (1,3,224,224), or a JSON map of input name to shape."),
    ("--layout", (), "NCHW, NHWC:NCHW, or a JSON map of input name to layout."),
    ("--model-version-policy", ("--model_version_policy",), 'JSON, e.g. {"latest": {"num_versions": 2}}.'),
    ("--nireq", (), "Infer requests in the pool [default: OpenVINO's optimal number]."),
    ("--target-device", ("--target_device",), "OpenVINO device [default: CPU]."),
    ("--plugin-config", ("--plugin_config",), 'JSON, e.g. {"PERFORMANCE_HINT": "LATENCY"}.'),
]


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _daemon_options(func: Any) -> Any:
    for name, aliases, kind, help_text in reversed(SERVER_OPTIONS):
        func = click.option(name, *aliases, _dest(name), type=kind, help=help_text)(func)
    for name, aliases, help_text in reversed(MODEL_OPTIONS):
        func = click.option(name, *aliases, _dest(name), help=help_text)(func)
    return func


@click.command()
@click.option(
    "--config",
    "--config-path",
    "--config_path",
    "config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Model config file (OVMS config.json format, JSON or YAML).",
)
@click.option("--foreground", is_flag=True, help="Run in the foreground (for systemd and containers).")
@_daemon_options
def start(config: Path | None, foreground: bool, **options: Any) -> None:
    """Start the model server daemon."""
    model_given = sorted(_dest(n) for n, _, _ in MODEL_OPTIONS if options.get(_dest(n)) is not None)
    if config is not None and model_given:
        raise click.UsageError(f"--config cannot be combined with single-model options ({', '.join(model_given)})")
    if config is None and not {"model_name", "model_path"} <= set(model_given):
        raise click.UsageError("give --config PATH, or --model-name NAME with --model-path DIR")
    if not foreground:
        raise click.UsageError("only --foreground is supported so far: run `ovmsctl start --foreground ...`")
    argv = daemon_argv(config, options)
    os.execv(sys.executable, [sys.executable, "-m", "ovmsd", *argv])


def daemon_argv(config: Path | None, options: dict[str, Any]) -> list[str]:
    """The canonical ``python -m ovmsd`` command line for these options."""
    argv: list[str] = []
    if config is not None:
        argv += ["--config", str(config.resolve())]
    for name, *_ in [*SERVER_OPTIONS, *MODEL_OPTIONS]:
        value = options.get(_dest(name))
        if value is not None:
            argv += [name, str(value)]
    return argv
