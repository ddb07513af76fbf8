"""Typed model-server configuration (the OVMS ``model_config_list`` format).

These frozen dataclasses are what the rest of the daemon sees: the loader turns a validated document into them, the
manager compares them to decide what to reload, and the serving layer reads shapes and policies from them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

UNBOUNDED = -1


@dataclass(frozen=True)
class Dim:
    """One dimension of a configured shape: static (lo == hi), a range lo..hi, or fully dynamic (-1)."""

    lo: int
    hi: int

    @classmethod
    def static(cls, n: int) -> Dim:
        return cls(n, n)

    @classmethod
    def dynamic(cls) -> Dim:
        return cls(0, UNBOUNDED)

    @property
    def is_static(self) -> bool:
        return self.lo == self.hi and self.lo > 0

    @property
    def is_dynamic(self) -> bool:
        return not self.is_static

    def accepts(self, n: int) -> bool:
        return n >= self.lo and (self.hi == UNBOUNDED or n <= self.hi)

    def __str__(self) -> str:
        if self.is_static:
            return str(self.lo)
        if self.lo <= 0 and self.hi == UNBOUNDED:
            return "-1"
        return f"{self.lo}:{self.hi if self.hi != UNBOUNDED else -1}"


Shape = tuple[Dim, ...]


def format_shape(shape: Shape | tuple[int, ...]) -> str:
    """OVMS spelling of a shape, e.g. ``(1,3,224,224)`` or ``(1,3,-1,-1)``."""
    return "(" + ",".join(str(d) for d in shape) + ")"


_DIM = r"\s*(-?\d+)(?:\s*:\s*(-?\d+))?\s*"


def parse_dim(text: str) -> Dim:
    """``8`` -> static, ``-1`` -> dynamic, ``1:16`` -> range. Raises ValueError with a plain sentence."""
    m = re.fullmatch(_DIM, text)
    if not m:
        raise ValueError(f"'{text}' is not a dimension (expected N, -1 or MIN:MAX)")
    lo = int(m.group(1))
    if m.group(2) is None:
        if lo == -1:
            return Dim.dynamic()
        if lo <= 0:
            raise ValueError(f"dimension {lo} must be positive or -1")
        return Dim.static(lo)
    hi = int(m.group(2))
    if lo < 0 or (hi != UNBOUNDED and (hi <= 0 or hi < lo)):
        raise ValueError(f"range {text.strip()} must satisfy 0 <= MIN <= MAX (MAX -1 for unbounded)")
    return Dim(lo, hi)


def parse_shape(text: str) -> Shape:
    """``(1,3,224,224)`` or ``[1,3,-1,-1]`` or ``(1,3,200:300,200:300)``."""
    s = text.strip()
    if not (len(s) >= 2 and ((s[0], s[-1]) in (("(", ")"), ("[", "]")))):
        raise ValueError(f"shape '{text}' must be written like (1,3,224,224)")
    inner = s[1:-1].strip()
    if not inner:
        return ()
    return tuple(parse_dim(part) for part in inner.split(","))


@dataclass(frozen=True)
class InputShape:
    """Configured shape of one input: ``auto`` (follow each request) or a fixed/dynamic shape."""

    auto: bool = False
    dims: Shape | None = None

    @classmethod
    def parse(cls, value: str | list[int]) -> InputShape:
        if isinstance(value, list):
            return cls(dims=parse_shape("(" + ",".join(str(v) for v in value) + ")"))
        if value.strip().lower() == "auto":
            return cls(auto=True)
        return cls(dims=parse_shape(value))

    def __str__(self) -> str:
        return "auto" if self.auto else format_shape(self.dims or ())


@dataclass(frozen=True)
class BatchSize:
    """``batch_size``: ``auto`` or a dimension (static, -1, or a range)."""

    auto: bool = False
    dim: Dim | None = None

    @classmethod
    def parse(cls, value: int | float | str) -> BatchSize:
        if isinstance(value, float):  # JSON 4.0 is 4; 0.5 or 1e400 is no batch size
            if not value.is_integer():
                raise ValueError(f"batch_size must be a whole number, 'auto', -1 or MIN:MAX, not {value}")
            value = int(value)
        if isinstance(value, int):
            return cls(dim=parse_dim(str(value)))
        if value.strip().lower() == "auto":
            return cls(auto=True)
        return cls(dim=parse_dim(value))

    def __str__(self) -> str:
        return "auto" if self.auto else str(self.dim)


@dataclass(frozen=True)
class ShapeConfig:
    """``shape``: one anonymous shape for the model, or a map from input name to shape."""

    anonymous: InputShape | None = None
    per_input: Mapping[str, InputShape] = field(default_factory=dict)

    @property
    def is_set(self) -> bool:
        return self.anonymous is not None or bool(self.per_input)

    def for_input(self, names: set[str]) -> InputShape | None:
        """The configured shape for an input known by any of ``names``."""
        for name in names:
            if name in self.per_input:
                return self.per_input[name]
        return self.anonymous


@dataclass(frozen=True)
class VersionPolicy:
    """``model_version_policy``: which of the versions on disk are served."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: set[int] | list[int]) -> set[int]:
        available = sorted(set(on_disk))
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return set(self.versions) & set(available)
        return set(available[-self.num_versions :]) if self.num_versions > 0 else set()

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return "specific " + ",".join(str(v) for v in self.versions)
        return "all"


PluginValue = str | int | float | bool

OBJECT_STORE_SCHEMES = ("s3",)  # served through a local mirror (ovmsd.source.objectstore)
_UNSUPPORTED_STORES = {"gs": "Google Cloud Storage", "az": "Azure", "azure": "Azure", "azfs": "Azure"}
_WEB_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class StoreUrl:
    """An object-store base path, ``s3://bucket/prefix/model``: the bucket and the key prefix (no slashes at its
    ends; empty for a model at the bucket's root)."""

    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> StoreUrl:
        """Raises ValueError with a plain sentence: an unsupported scheme, no bucket, or key segments (``.``,
        ``..``, empty) that a local directory cannot mirror."""
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ValueError(f"{url!r} is not a URL")
        if scheme in _UNSUPPORTED_STORES:
            raise ValueError(
                f"{_UNSUPPORTED_STORES[scheme]} ({scheme}://) base paths are not supported yet; "
                "use s3:// (S3 or an S3-compatible store) or a local path"
            )
        if scheme not in OBJECT_STORE_SCHEMES:
            kind = "web URLs" if scheme in _WEB_SCHEMES else f"{scheme}:// URLs"
            raise ValueError(f"{kind} are not model repositories; use s3:// or a local path")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        if not bucket:
            raise ValueError(f"{url!r} names no bucket (expected s3://bucket/path/to/model)")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"{url!r} has empty, '.' or '..' path segments; a local mirror cannot hold them")
        return cls(scheme, bucket, prefix)

    @property
    def key_prefix(self) -> str:
        """What every object key of the repository starts with (``prefix/``, or nothing at the bucket's root)."""
        return f"{self.prefix}/" if self.prefix else ""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def mirror_name(self) -> str:
        """The mirror's folder name in the object-store cache: readable (bucket and last segment) and unique per
        URL (a hash of it), one flat level so that two prefixes never nest inside each other's mirrors."""
        tail = self.prefix.rsplit("/", 1)[-1] if self.prefix else ""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in (self.scheme, self.bucket, tail) if p))
        digest = hashlib.sha256(str(self).encode()).hexdigest()[:12]
        return f"{readable}-{digest}"


def is_remote(base_path: str) -> bool:
    """Whether a configured base path is a URL (object storage or the web) rather than a local path."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", base_path) is not None


LIMIT_KEYS = ("max_input_bytes", "max_auto_batch", "max_auto_dim", "shape_cache_bytes", "max_concurrent_requests")


@dataclass(frozen=True)
class ModelLimits:
    """A model's request limits, its config entry's ``max_input_bytes``, ``max_auto_batch``, ``max_auto_dim``,
    ``shape_cache_bytes`` and ``max_concurrent_requests`` (positive integers); None: the daemon-wide default, the
    option of the same name (``--max-input-bytes``...). ``ovmsd.serving.limits`` says what each one bounds."""

    max_input_bytes: int | None = None
    max_auto_batch: int | None = None
    max_auto_dim: int | None = None
    shape_cache_bytes: int | None = None
    max_concurrent_requests: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> ModelLimits:
        """The limits of a (validated) model config entry."""
        return cls(**{key: int(cfg[key]) for key in LIMIT_KEYS if cfg.get(key) is not None})  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelConfig:
    """One ``model_config_list[].config`` entry, with defaults applied and paths resolved.

    For an object-store model, ``source_url`` is the configured ``s3://`` URL and ``base_path`` is first only the
    mirror's folder name (relative, :meth:`StoreUrl.mirror_name`): the loader knows no cache directory, so
    ``ovmsctl validate`` and the daemon read a config alike. The daemon, which owns the cache, makes it the mirror's
    absolute local directory before anything serves or watches it (:meth:`localized`).
    """

    name: str
    base_path: Path
    batch_size: BatchSize | None = None
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    layout: str | Mapping[str, str] | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    nireq: int = 0
    target_device: str = "CPU"
    plugin_config: Mapping[str, PluginValue] = field(default_factory=dict)
    allow_cache: bool = False
    source_url: str | None = None  # an object-store base path (s3://...), mirrored into base_path
    limits: ModelLimits = field(default_factory=ModelLimits)

    @property
    def store_url(self) -> StoreUrl | None:
        return StoreUrl.parse(self.source_url) if self.source_url is not None else None

    def localized(self, cache_root: Path) -> ModelConfig:
        """An object-store model with its base path in ``cache_root`` (unchanged: local models, or done already)."""
        if self.source_url is None or self.base_path.is_absolute():
            return self
        return replace(self, base_path=cache_root / self.base_path)

    @property
    def has_auto(self) -> bool:
        shapes = [self.shape.anonymous, *self.shape.per_input.values()]
        return bool(self.batch_size and self.batch_size.auto) or any(s is not None and s.auto for s in shapes)

    def loading_fields(self) -> tuple[object, ...]:
        """The fields whose change requires reloading the model's versions (everything but the name)."""
        return (
            self.base_path,
            self.batch_size,
            self.shape,
            self.layout,
            self.version_policy,
            self.nireq,
            self.target_device,
            tuple(sorted(self.plugin_config.items())),
            self.allow_cache,
            self.source_url,
            self.limits,
        )


# The metric families this server exports on --metrics-port, by their family names (counters without the _total of
# their samples): what a config's monitoring.metrics.metrics_list may name. OVMS's names first, then ours, then the
# standard process metrics. A test checks it against what ovmsd.observe.metrics really registers.
OVMS_METRICS = (
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_request_time_us",
    "ovms_inference_time_us",
    "ovms_current_requests",
)
METRIC_FAMILIES = (
    *OVMS_METRICS,
    "ovmsctl_reshape_compiles",
    "ovmsctl_reshape_failures",
    "ovmsctl_shape_cache_hits",
    "ovmsctl_shape_cache_evictions",
    "ovmsctl_compiled_shapes",
    "ovmsctl_version_loads",
    "ovmsctl_version_load_seconds",
    "ovmsctl_config_reloads",
    "ovmsctl_config_generation",
    "ovmsctl_object_store_errors",
    "ovmsctl_unauthenticated_requests",
    "ovmsctl_python_threads",
    "ovmsctl_request_stage_seconds",  # with --stage-timers only
    "ovmsctl_request_stage_count",  # with --stage-timers only
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds",
    "process_open_fds",
    "process_max_fds",
)


@dataclass(frozen=True)
class MonitoringConfig:
    """OVMS's ``monitoring.metrics`` section. Metrics are served only with ``--metrics-port`` (OVMS serves them on
    its REST port, which this server does not have); ``enable: false`` turns them off even then, and
    ``metrics_list`` (None: all) chooses which families are exported."""

    enable: bool | None = None  # None: not given (the metrics port alone decides)
    metrics_list: tuple[str, ...] | None = None

    @property
    def disabled(self) -> bool:
        return self.enable is False

    @property
    def asked_for(self) -> bool:
        """Whether the section asks for metrics (``enable: true`` or a list), which needs a metrics port here."""
        return self.enable is True or (self.enable is None and self.metrics_list is not None)


@dataclass(frozen=True)
class ServerConfig:
    """The whole served configuration: the models, the monitoring section, and where it came from."""

    models: tuple[ModelConfig, ...] = ()
    source: Path | None = None
    warnings: tuple[str, ...] = ()
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)
