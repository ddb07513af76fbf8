"""A model's request limits: checked from shapes alone, before anything is allocated, decoded or compiled.

Each limit is a model config key, with a daemon-wide default from the option of the same name:

* ``max_input_bytes`` (``--max-input-bytes``, 128 MiB): the largest input tensor, as the model receives it
  (elements x element size). A request's size is what it *describes*, not what it sent: one ``float_val`` standing for
  every element of a ``(1,3,3500,3500)`` tensor is 147 MB, not 4 bytes. 128 MiB takes a 4K UHD frame in float32
  (3x2160x3840, 99.5 MB) or a batch of 128 ImageNet images (77 MB) and refuses the 147 MB of that 60-byte request.
  A model whose configured inputs are larger (all dimensions fixed or bounded) gets its own size as the default, so
  the limit never refuses a request that the model as configured takes.
* ``max_auto_batch`` (``--max-auto-batch``, 256): the largest batch ``batch_size: auto`` compiles for. A compiled
  ResNet-50 holds about 155 MB plus 7 MB per batch row (measured with OpenVINO's CPU plugin: 273 MB at batch 16,
  620 MB at 64), so 256 (about 2 GB) is where one variant fills the default shape cache budget; batch 512 (5-6 GB)
  is refused.
* ``max_auto_dim`` (``--max-auto-dim``, 16384): the largest dimension ``shape: auto`` compiles for (any dimension
  but the one ``max_auto_batch`` bounds): above 8K video (7680) and the largest single-sensor photos; 1-D inputs
  longer than that (audio samples, long token sequences) need a larger value in their model's config.
* ``shape_cache_bytes`` (``--shape-cache-bytes``, 2 GiB): the compiled variants a version keeps, by their measured
  size (``ovmsd.serving.instance``); see ``ovmsd.serving.shape_cache``.
* ``max_concurrent_requests`` (``--max-concurrent-requests``, half the gRPC workers, at least 1): requests of one
  model inside the model at once (decoding images, waiting for a compile or an infer request, inferring, writing
  the answer); see ``ovmsd.serving.concurrency``.

Over a size limit the request is TOO_LARGE (RESOURCE_EXHAUSTED, HTTP 413), naming the key, the limit and the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ovmsd.config.models import UNBOUNDED, ModelLimits, format_shape
from ovmsd.errors import over_limit
from ovmsd.serving.reshape import InputRule, ShapeKey
from ovmsd.serving.signature import Signature, TensorSpec, precision_of

MIB = 1 << 20
DEFAULT_MAX_INPUT_BYTES = 128 * MIB
DEFAULT_MAX_AUTO_BATCH = 256
DEFAULT_MAX_AUTO_DIM = 16384
DEFAULT_SHAPE_CACHE_BYTES = 2048 * MIB
DEFAULT_MAX_CONCURRENT_REQUESTS = 2  # the daemon passes half its gRPC workers


@dataclass(frozen=True)
class LimitDefaults:
    """The daemon-wide limits (the options), for models whose config does not set their own."""

    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_auto_batch: int = DEFAULT_MAX_AUTO_BATCH
    max_auto_dim: int = DEFAULT_MAX_AUTO_DIM
    shape_cache_bytes: int = DEFAULT_SHAPE_CACHE_BYTES
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS


@dataclass(frozen=True)
class RequestLimits:
    """One loaded version's limits, resolved from its config, the defaults and its base signature."""

    input_bytes: Mapping[str, int]  # by input name (the spec's name)
    default_input_bytes: int  # for names that are no input (the shape checks refuse them after)
    max_auto_batch: int
    max_auto_dim: int
    shape_cache_bytes: int
    max_concurrent_requests: int

    @classmethod
    def resolve(cls, limits: ModelLimits, defaults: LimitDefaults, base: Signature) -> RequestLimits:
        explicit = limits.max_input_bytes
        default = explicit if explicit is not None else defaults.max_input_bytes
        # the daemon-wide default never refuses what the model as configured takes; a model's own value is exact
        per_input = {spec.name: explicit or max(default, configured_bytes(spec)) for spec in base.inputs}
        return cls(
            input_bytes=per_input,
            default_input_bytes=default,
            max_auto_batch=_chosen(limits.max_auto_batch, defaults.max_auto_batch),
            max_auto_dim=_chosen(limits.max_auto_dim, defaults.max_auto_dim),
            shape_cache_bytes=_chosen(limits.shape_cache_bytes, defaults.shape_cache_bytes),
            max_concurrent_requests=_chosen(limits.max_concurrent_requests, defaults.max_concurrent_requests),
        )

    def input_limit(self, spec: TensorSpec | None) -> int:
        return self.input_bytes.get(spec.name, self.default_input_bytes) if spec else self.default_input_bytes

    def check_inputs(self, base: Signature, inputs: Mapping[str, np.ndarray]) -> None:
        """TOO_LARGE for an input over ``max_input_bytes``: from its shape and dtype, whatever its data."""
        for name, array in inputs.items():
            spec = base.input_named(name)
            limit = self.input_limit(spec)
            size = math.prod(array.shape) * array.dtype.itemsize
            if size > limit:
                raise over_limit(
                    "Input is over the size limit",
                    "max_input_bytes",
                    f"at most {limit} bytes",
                    f"{size} bytes, {precision_of(array.dtype)} {format_shape(array.shape)}",
                    spec.name if spec else name,
                )

    def check_reshape(self, base: Signature, rules: Mapping[str, InputRule], key: ShapeKey) -> None:
        """TOO_LARGE when ``key`` asks auto for a batch over ``max_auto_batch`` or a dimension over ``max_auto_dim``.

        Only the dimensions auto changes are judged; those the model was configured with are its own business.
        """
        for spec in base.inputs:
            target = dict(key).get(spec.name)
            if target is None or target == spec.shape:
                continue
            rule = rules.get(spec.name, InputRule())
            for index, dim in enumerate(target):
                if index < len(spec.shape) and len(target) == len(spec.shape) and spec.shape[index] == dim:
                    continue
                batch = rule.auto_batch and index == rule.batch_index
                limit, name = (self.max_auto_batch, "max_auto_batch") if batch else (self.max_auto_dim, "max_auto_dim")
                if dim.lo > limit:
                    raise over_limit(
                        "Batch size is over the limit for auto reshapes"
                        if batch
                        else "Dimension is over the limit for auto reshapes",
                        name,
                        f"at most {limit}",
                        f"{dim.lo} in {format_shape(target)}",
                        spec.name,
                    )


def configured_bytes(spec: TensorSpec) -> int:
    """The largest input the model as configured takes (all dimensions fixed or bounded), else 0."""
    if not spec.shape or any(d.hi == UNBOUNDED for d in spec.shape):
        return 0
    return math.prod(d.hi for d in spec.shape) * spec.dtype.itemsize


def _chosen(configured: int | None, default: int) -> int:
    return configured if configured is not None else default
