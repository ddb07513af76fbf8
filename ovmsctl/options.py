"""Options shared by commands: the daemon's options (with OVMS's spellings as aliases) and ``--state-dir``.

``ovmsctl start`` and ``ovmsctl service`` turn the same options into the canonical ``python -m ovmsd`` command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ovmsd.runtime.statedir import default_state_dir

F = TypeVar("F", bound=Callable[..., Any])

# (canonical ovmsd option, extra spellings accepted here, click type, help)
SERVER_OPTIONS: list[tuple[str, tuple[str, ...], Any, str]] = [
    (
        "--port",
        ("--grpc-port", "--grpc_port"),
        click.IntRange(0, 65535),
        "gRPC port (0: any free port) [default: 9000].",
    ),
    (
        "--bind-address",
        ("--bind_address", "--grpc-bind-address", "--grpc_bind_address"),
        str,
        "Address to listen on (gRPC and metrics) [default: 127.0.0.1].",
    ),
    (
        "--metrics-port",
        ("--metrics_port",),
        click.IntRange(0, 65535),
        "Serve Prometheus metrics on this port at /metrics [default: off].",
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
        "Log to this file instead of stderr (the state dir's ovmsd.log in the background).",
    ),
    ("--grpc-workers", ("--grpc_workers",), click.IntRange(1), "gRPC threads [default: 2 per core, >= 4]."),
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
        "--file-system-poll-wait-seconds",
        ("--file_system_poll_wait_seconds",),
        click.FloatRange(0),
        "Watch model directories and the config file; rescan at this interval (0: no live updates) [default: 1].",
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

PATH_OPTIONS = ("--log-file", "--cache-dir", "--model-path")  # made absolute: the daemon runs from /


def dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def state_dir_option(func: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="OVMSCTL_STATE_DIR",
        show_envvar=True,
        help="The daemon's state dir (pidfile, control socket) [default: /run/ovmsctl for root, "
        "else $XDG_RUNTIME_DIR/ovmsctl].",
    )(func)


def resolve_state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).absolute()


def daemon_options(func: F) -> F:
    """``--config``, the single-model options and the server options."""
    for name, aliases, kind, help_text in reversed(SERVER_OPTIONS):
        func = click.option(name, *aliases, dest(name), type=kind, help=help_text)(func)
    for name, aliases, help_text in reversed(MODEL_OPTIONS):
        func = click.option(name, *aliases, dest(name), help=help_text)(func)
    func = click.option(
        "--poll",
        is_flag=True,
        default=None,
        help="Watch by polling instead of inotify (for NFS and other file systems whose events go missing).",
    )(func)
    return click.option(
        "--config",
        "--config-path",
        "--config_path",
        "config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Model config file (OVMS config.json format, JSON or YAML).",
    )(func)


def check_model_source(config: Path | None, options: dict[str, Any]) -> None:
    """Exactly one of: --config, or --model-name with --model-path."""
    given = sorted(dest(n) for n, _, _ in MODEL_OPTIONS if options.get(dest(n)) is not None)
    if config is not None and given:
        raise click.UsageError(f"--config cannot be combined with single-model options ({', '.join(given)})")
    if config is None and not {"model_name", "model_path"} <= set(given):
        raise click.UsageError("give --config PATH, or --model-name NAME with --model-path DIR")


def daemon_argv(config: Path | None, options: dict[str, Any]) -> list[str]:
    """The canonical ``python -m ovmsd`` command line for these options (paths made absolute)."""
    argv: list[str] = []
    if config is not None:
        argv += ["--config", str(config.resolve())]
    for name, *_ in [*SERVER_OPTIONS, *MODEL_OPTIONS]:
        value = options.get(dest(name))
        if value is None:
            continue
        if name in PATH_OPTIONS and "://" not in str(value):
            value = Path(value).expanduser().absolute()
        argv += [name, str(value)]
    if options.get("poll"):
        argv.append("--poll")
    return argv
