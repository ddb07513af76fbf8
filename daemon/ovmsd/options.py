"""The daemon's command-line options, each defined once: spellings, type, default, range and help.

``python -m ovmsd`` (argparse, :mod:`ovmsd.settings`), ``ovmsctl start`` and ``ovmsctl service`` (click,
``ovmsctl/options.py``) and the defaults of :class:`ovmsd.settings.Settings` are all derived from :data:`OPTIONS`, so
a default, a range check or an OVMS spelling cannot differ between the CLI, the daemon and the docs' ``--help``.

To add an option: append an :class:`Option` here, add the field to ``Settings`` (its default from
:func:`default_of`), and read it where it is used. The CLI passes it on to the daemon by itself. Only the standard
library is imported: the CLI imports this module and must never import OpenVINO or the serving code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["int", "float", "str", "path", "choice", "flag"]
# source: --config; model: the single-model options (passed to the config loader as strings); server: settings of
# the daemon; daemon: only `python -m ovmsd` takes them (ovmsctl sets them itself: --state-dir, --ready-fd)
Group = Literal["source", "model", "server", "daemon"]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset`` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_grpc_workers() -> int:
    """Twice the usable cores, at least 4.

    Fewer threads serve small models much faster (less contention for the GIL: about 2,500-2,900 vs 2,180 requests/s
    for a tiny model on 2 cores with 4 vs 16 workers; see BENCHMARKS.md) while keeping every OpenVINO stream busy.
    """
    return max(4, 2 * usable_cores())


def default_load_workers() -> int:
    """The usable cores, 2 to 8: a compile already uses several cores, so more loads at once than cores only
    queue inside OpenVINO, while two keep one slow model from holding back every other one on a small machine."""
    return max(2, min(8, usable_cores()))


@dataclass(frozen=True)
class Computed:
    """A default that depends on the machine: computed when the daemon starts, described in words in ``--help``."""

    compute: Callable[[], Any]
    description: str


@dataclass(frozen=True)
class Option:
    """One option. ``minimum``/``maximum`` bound numbers (``above``: the minimum itself is refused)."""

    name: str  # the canonical spelling: what `ovmsctl start` passes to the daemon
    help: str
    aliases: tuple[str, ...] = ()  # OVMS's spellings and older names, accepted by both parsers
    kind: Kind = "str"
    default: Any = None  # a value, a Computed, or None (off / not given); becomes the Settings default
    field: str | None = None  # the Settings field; None: the name, underscored
    group: Group = "server"
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    choices: tuple[str, ...] = ()
    path: Literal["file", "dir"] | None = None  # for kind "path": what the path names
    absolute: bool = False  # ovmsctl makes the value absolute (the daemon runs from /); URLs are left alone
    shown_default: str | None = None  # for help when the default is not a Settings value (e.g. "off")
    hidden: bool = False

    @property
    def key(self) -> str:
        """The option's name as a Python identifier: click's parameter name (``--reshape-timeout``: reshape_timeout)."""
        return self.name.lstrip("-").replace("-", "_")

    @property
    def dest(self) -> str:
        """The :class:`~ovmsd.settings.Settings` field the value lands in."""
        return self.field or self.key

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def default_value(self) -> Any:
        return self.default.compute() if isinstance(self.default, Computed) else self.default

    def default_text(self) -> str | None:
        """How ``--help`` shows the default; None when there is nothing to show."""
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, Computed):
            return f"{self.default.description} ({self.default.compute()} here)"
        if self.default is None or self.kind == "flag":
            return None
        return format_value(self.default)

    def range_text(self) -> str | None:
        """The accepted range in click's notation (``0<=x<=65535``, ``x>=1``, ``x>0``), None for other kinds."""
        if self.kind not in ("int", "float") or (self.minimum is None and self.maximum is None):
            return None
        low = "" if self.minimum is None else f"{format_value(self.minimum)}{'<' if self.above else '<='}"
        high = "" if self.maximum is None else f"<={format_value(self.maximum)}"
        if self.minimum is not None and self.maximum is None:
            return f"x{'>' if self.above else '>='}{format_value(self.minimum)}"
        return f"{low}x{high}"

    def help_text(self) -> str:
        """The help with the default from this table; the range is left to each parser (click adds its own)."""
        default = self.default_text()
        return f"{self.help} [default: {default}]" if default is not None else self.help

    def parse(self, text: str) -> Any:
        """The value of ``text`` for this option, range-checked. Raises ValueError with click's wording."""
        if self.kind == "int":
            try:
                value: Any = int(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a valid integer.") from None
            return self._in_range(value)
        if self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a valid float.") from None
            if math.isnan(value):
                raise ValueError(f"{text!r} is not a valid float.")
            return self._in_range(value)
        if self.kind == "choice":
            for choice in self.choices:
                if text.upper() == choice.upper():
                    return choice
            raise ValueError(f"{text!r} is not one of {', '.join(repr(c) for c in self.choices)}.")
        if self.kind == "path":
            return Path(text)
        return text

    def _in_range(self, value: float) -> float:
        low_ok = self.minimum is None or (value > self.minimum if self.above else value >= self.minimum)
        high_ok = self.maximum is None or value <= self.maximum
        if not (low_ok and high_ok):
            raise ValueError(f"{value} is not in the range {self.range_text()}.")
        return value


def format_value(value: Any) -> str:
    """``30`` rather than ``30.0``; other values as they are."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


OPTIONS: tuple[Option, ...] = (
    Option(
        "--config",
        "Model config file (OVMS config.json format, JSON or YAML).",
        aliases=("--config-path", "--config_path"),
        kind="path",
        path="file",
        field="config_path",
        group="source",
        absolute=True,
    ),
    # The single-model options: strings, checked by the config loader like the fields of a config file.
    Option(
        "--model-name",
        "Serve one model under this name (instead of --config).",
        aliases=("--model_name",),
        group="model",
    ),
    Option(
        "--model-path",
        "The model's base path, holding numeric version directories.",
        aliases=("--model_path",),
        group="model",
        absolute=True,
    ),
    Option("--batch-size", "N, -1, MIN:MAX or auto.", aliases=("--batch_size",), group="model"),
    Option("--shape", "auto, (1,3,224,224), or a JSON map of input name to shape.", group="model"),
    Option("--layout", "NCHW, NHWC:NCHW, or a JSON map of input name to layout.", group="model"),
    Option(
        "--model-version-policy",
        'JSON, e.g. {"latest": {"num_versions": 2}}.',
        aliases=("--model_version_policy",),
        group="model",
        shown_default='{"latest": {"num_versions": 1}}',
    ),
    Option("--nireq", "Infer requests in the pool.", group="model", shown_default="0, OpenVINO's optimal number"),
    Option("--target-device", "OpenVINO device.", aliases=("--target_device",), group="model", shown_default="CPU"),
    Option(
        "--plugin-config",
        'JSON, e.g. {"PERFORMANCE_HINT": "LATENCY"}.',
        aliases=("--plugin_config",),
        group="model",
        shown_default='{"PERFORMANCE_HINT": "THROUGHPUT"}',
    ),
    # Server settings.
    Option(
        "--port",
        "gRPC port (0: any free port).",
        aliases=("--grpc-port", "--grpc_port"),
        kind="int",
        default=9000,
        minimum=0,
        maximum=65535,
    ),
    Option(
        "--bind-address",
        "Address to listen on (gRPC and metrics).",
        aliases=("--bind_address", "--grpc-bind-address", "--grpc_bind_address"),
        default="127.0.0.1",
    ),
    Option(
        "--rest-port",
        "Serve the REST APIs (TF Serving REST and KServe v2 REST) on this port (0: any free port).",
        aliases=("--rest_port",),
        kind="int",
        minimum=0,
        maximum=65535,
        shown_default="off",
    ),
    Option(
        "--rest-bind-address",
        "Address the REST port listens on.",
        aliases=("--rest_bind_address",),
        shown_default="the gRPC bind address",
    ),
    Option(
        "--rest-workers",
        "REST threads that run requests (connections themselves cost no thread: idle ones are cheap).",
        aliases=("--rest_workers",),
        kind="int",
        default=Computed(default_grpc_workers, "2 per usable core, at least 4"),
        minimum=1,
    ),
    Option(
        "--metrics-enable",
        "Serve /metrics on the REST port too (OVMS's --metrics_enable); --metrics-port also turns metrics on.",
        aliases=("--metrics_enable",),
        kind="flag",
        default=False,
    ),
    Option(
        "--ssl-config-file",
        "TLS on every port from TF Serving's SSLConfig text file (server_key, server_cert, custom_ca, "
        "client_verify: PEM text); re-read on SIGHUP and `ovmsctl reload`.",
        aliases=("--ssl_config_file",),
        kind="path",
        path="file",
        absolute=True,
        shown_default="off",
    ),
    Option(
        "--tls-cert",
        "TLS on every port: the server certificate (chain), PEM; with --tls-key. Re-read on SIGHUP and "
        "`ovmsctl reload`.",
        aliases=("--tls_cert",),
        kind="path",
        path="file",
        absolute=True,
        shown_default="off",
    ),
    Option(
        "--tls-key",
        "The private key of --tls-cert, PEM.",
        aliases=("--tls_key",),
        kind="path",
        path="file",
        absolute=True,
        shown_default="off",
    ),
    Option(
        "--tls-client-ca",
        "Mutual TLS: clients must present a certificate signed by this CA (PEM).",
        aliases=("--tls_client_ca",),
        kind="path",
        path="file",
        absolute=True,
        shown_default="off",
    ),
    Option(
        "--api-key-file",
        "Every inference, metadata and reload call must send `Authorization: Bearer KEY` with the key in this "
        "file (or in the OVMSCTL_API_KEY environment variable); health and readiness stay open.",
        aliases=("--api_key_file",),
        kind="path",
        path="file",
        absolute=True,
        shown_default="off",
    ),
    Option(
        "--metrics-port",
        "Serve Prometheus metrics on this port at /metrics (0: any free port); the config's monitoring section "
        "may turn them off or choose which are exported.",
        aliases=("--metrics_port",),
        kind="int",
        minimum=0,
        maximum=65535,
        shown_default="off",
    ),
    Option(
        "--stage-timers",
        "Time each stage of the request path (parse, decode, wait, infer, encode...) and export the totals as "
        "ovmsctl_request_stage_* metrics, for profiling; costs about 4 microseconds per request. Needs metrics on.",
        kind="flag",
        default=False,
    ),
    Option(
        "--log-level",
        "Log level.",
        aliases=("--log_level",),
        kind="choice",
        choices=LOG_LEVELS,
        default="INFO",
    ),
    Option(
        "--log-file",
        "Log to this file instead of stderr (`ovmsctl start` in the background: the state dir's ovmsd.log).",
        aliases=("--log_file", "--log-path", "--log_path"),
        kind="path",
        path="file",
        absolute=True,
        shown_default="stderr",
    ),
    Option(
        "--grpc-workers",
        "gRPC threads.",
        aliases=("--grpc_workers",),
        kind="int",
        default=Computed(default_grpc_workers, "2 per usable core, at least 4"),
        minimum=1,
    ),
    Option(
        "--load-workers",
        "Model versions loaded at the same time (different models load concurrently; versions of one model stay "
        "ordered).",
        aliases=("--load_workers",),
        kind="int",
        default=Computed(default_load_workers, "the usable cores, 2 to 8"),
        minimum=1,
    ),
    Option(
        "--max-connections",
        "Open client connections accepted per port (gRPC, REST); past it gRPC refuses new connections and REST "
        "answers 503. The limit on open files is raised to its hard limit at start to fit them.",
        aliases=("--max_connections",),
        kind="int",
        default=10_000,
        minimum=1,
    ),
    Option(
        "--idle-timeout",
        "Seconds an idle client connection stays open (REST keep-alive; gRPC closes idle connections with "
        "GOAWAY, clients reconnect by themselves).",
        aliases=("--idle_timeout",),
        kind="float",
        default=75.0,
        minimum=1,
        field="idle_timeout_s",
    ),
    Option(
        "--max-message-bytes",
        "Largest gRPC message accepted, in bytes (1 GiB, like OVMS).",
        aliases=("--max_message_bytes",),
        kind="int",
        default=1024 * 1024 * 1024,
        minimum=1,
    ),
    Option(
        "--max-image-pixels",
        "Largest binary input image accepted, in pixels (width x height, read from its header before decoding: "
        "larger ones, decompression bombs included, are refused with INVALID_ARGUMENT).",
        aliases=("--max_image_pixels",),
        kind="int",
        default=50_000_000,
        minimum=1,
    ),
    Option(
        "--max-config-bytes",
        "Largest config file accepted, in bytes (16 MiB; a config of 10,000 models is about 5 MB); a larger one is "
        "a config error, at start-up and on reload.",
        aliases=("--max_config_bytes",),
        kind="int",
        default=16 * 1024 * 1024,
        minimum=1,
    ),
    # Request limits (ovmsd.serving.limits): each is also a model config key of the same name, which overrides it.
    Option(
        "--max-input-bytes",
        "Largest input tensor a request may describe, in bytes (elements x element size, whatever it sent: one "
        "float_val for a whole shape counts as the whole shape); a model configured for larger inputs takes those. "
        "Over it: RESOURCE_EXHAUSTED / 413, before anything is allocated.",
        aliases=("--max_input_bytes",),
        kind="int",
        default=128 * 1024 * 1024,
        minimum=1,
    ),
    Option(
        "--max-auto-batch",
        "Largest batch batch_size auto compiles for; larger ones are refused before any compile.",
        aliases=("--max_auto_batch",),
        kind="int",
        default=256,
        minimum=1,
    ),
    Option(
        "--max-auto-dim",
        "Largest dimension shape auto compiles for (any but the batch); larger ones are refused before any compile.",
        aliases=("--max_auto_dim",),
        kind="int",
        default=16384,
        minimum=1,
    ),
    Option(
        "--shape-cache-bytes",
        "Memory the compiled shapes of a model version may hold, in bytes (measured as each compiles); the least "
        "recently used go first, the configured shape never.",
        aliases=("--shape_cache_bytes",),
        kind="int",
        default=2 * 1024 * 1024 * 1024,
        minimum=1,
    ),
    Option(
        "--max-concurrent-requests",
        "Requests of one model inside it at once (the others wait for a place without holding a worker thread, so "
        "one model's slow requests cannot take every worker).",
        aliases=("--max_concurrent_requests",),
        kind="int",
        minimum=1,
        shown_default="half of --grpc-workers, at least 1",
    ),
    Option(
        "--shape-cache-size",
        "Compiled shapes kept per model version.",
        aliases=("--shape_cache_size",),
        kind="int",
        default=4,
        minimum=1,
    ),
    Option(
        "--reshape-timeout",
        "Seconds a request waits for a reshape.",
        aliases=("--reshape_timeout",),
        kind="float",
        default=30.0,
        field="reshape_timeout_s",
        minimum=0,
        above=True,
    ),
    Option(
        "--cache-dir",
        "OpenVINO model cache for models with allow_cache.",
        aliases=("--cache_dir",),
        kind="path",
        path="dir",
        absolute=True,
        shown_default="none",
    ),
    Option(
        "--object-store-cache-dir",
        "Where models with s3:// base paths are mirrored (one folder per base path, each version downloaded whole "
        "before it is renamed into place); kept across restarts.",
        aliases=("--object_store_cache_dir",),
        kind="path",
        path="dir",
        absolute=True,
        shown_default="the state dir's object-store folder, else a temporary dir removed on exit",
    ),
    Option(
        "--file-system-poll-wait-seconds",
        "Watch model directories and the config file; rescan (and list object stores) at this interval (0: no "
        "live updates; object stores are listed at start-up only).",
        aliases=("--file_system_poll_wait_seconds",),
        kind="float",
        default=1.0,
        field="file_system_poll_wait_s",
        minimum=0,
    ),
    Option(
        "--poll",
        "Watch by polling instead of inotify (for NFS and other file systems whose events go missing).",
        kind="flag",
        default=False,
        field="force_polling",
    ),
    Option(
        "--drain-timeout",
        "Seconds to finish in-flight requests on stop.",
        aliases=("--drain_timeout",),
        kind="float",
        default=30.0,
        field="drain_timeout_s",
        minimum=0,
    ),
    # Set by ovmsctl, which has its own --state-dir (with $OVMSCTL_STATE_DIR and a default).
    Option(
        "--state-dir",
        "The state dir: pidfile and control socket, for ovmsctl status/stop/reload.",
        kind="path",
        path="dir",
        group="daemon",
        shown_default="none (no pidfile, no control socket)",
    ),
    Option(
        "--ready-fd",
        "Where to say READY or FAILED (set by ovmsctl start).",
        kind="int",
        minimum=0,
        group="daemon",
        hidden=True,
    ),
)

BY_DEST: Mapping[str, Option] = {option.dest: option for option in OPTIONS}


def option(dest: str) -> Option:
    """The option whose Settings field is ``dest``."""
    return BY_DEST[dest]


def default_of(dest: str) -> Any:
    """The table's default for the Settings field ``dest`` (computed ones are for ``default_factory``)."""
    default = BY_DEST[dest].default
    if isinstance(default, Computed):
        raise TypeError(f"{dest}'s default is computed: use factory_of({dest!r})")
    return default


def factory_of(dest: str) -> Callable[[], Any]:
    """The ``default_factory`` of a Settings field whose default depends on the machine."""
    default = BY_DEST[dest].default
    if not isinstance(default, Computed):
        raise TypeError(f"{dest}'s default is a plain value: use default_of({dest!r})")
    return default.compute


def in_group(*groups: Group) -> tuple[Option, ...]:
    return tuple(o for o in OPTIONS if o.group in groups)
