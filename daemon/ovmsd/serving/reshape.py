"""The reshape decision for one request: serve as compiled, serve a reshaped variant, or reject. Pure functions.

A model's *base* signature is what it was configured to (fixed, ranged or dynamic dimensions). A request whose shapes
the base accepts is served by it. Otherwise, inputs configured ``auto`` (``shape: auto`` for the input, or
``batch_size: auto`` for its batch dimension) follow the request, and the resulting *shape key* names the compiled
variant to use; any other mismatch is rejected with OVMS's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ovmsd.config.models import Dim, Shape, format_shape
from ovmsd.errors import invalid_input
from ovmsd.serving.signature import Signature, TensorSpec, precision_of, static_shape

ShapeKey = tuple[tuple[str, Shape], ...]


@dataclass(frozen=True)
class InputRule:
    """How one input may follow requests."""

    auto_shape: bool = False  # shape: auto -> any rank and dims
    auto_batch: bool = False  # batch_size: auto -> the batch dimension follows the request
    batch_index: int | None = 0  # position of N in the input's layout; None for no batch dimension


def shape_key(signature: Signature) -> ShapeKey:
    return tuple((t.name, t.shape) for t in signature.inputs)


def match_inputs(signature: Signature, request: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map request tensors onto model inputs by name (any alias), checking names, count and precision."""
    matched: dict[str, np.ndarray] = {}
    for name, array in request.items():
        spec = signature.input_named(name)
        if spec is None:
            expected = ", ".join(t.name for t in signature.inputs)
            raise invalid_input("Unexpected input tensor passed", expected, name, name)
        if array.dtype != spec.dtype:
            raise invalid_input("Invalid input precision", spec.precision, precision_of(array.dtype), spec.name)
        matched[spec.name] = array
    for spec in signature.inputs:
        if spec.name not in matched:
            raise invalid_input("Missing input with specific name", spec.name, ", ".join(request) or "none", spec.name)
    return matched


def plan_shapes(base: Signature, rules: Mapping[str, InputRule], request: Mapping[str, np.ndarray]) -> ShapeKey | None:
    """None when the base signature accepts ``request`` as it is; else the shape key of the variant to serve it.

    Raises ServingError (INVALID_INPUT) when a non-auto dimension does not match.
    """
    request_batch = _request_batch(base, rules, request)
    needs_variant = False
    key: list[tuple[str, Shape]] = []
    for spec in base.inputs:
        actual = request[spec.name].shape
        rule = rules.get(spec.name, InputRule())
        _reject_empty_dims(spec, actual)
        target = _target_shape(spec, rule, actual, request_batch)
        if target != spec.shape:
            needs_variant = True
        key.append((spec.name, target))
    return tuple(key) if needs_variant else None


def _request_batch(base: Signature, rules: Mapping[str, InputRule], request: Mapping[str, np.ndarray]) -> int | None:
    """With batch_size auto, the batch of the first batched input decides for all of them."""
    for spec in base.inputs:
        rule = rules.get(spec.name, InputRule())
        shape = request[spec.name].shape
        if rule.auto_batch and rule.batch_index is not None and len(shape) > rule.batch_index:
            return int(shape[rule.batch_index])
    return None


def _target_shape(spec: TensorSpec, rule: InputRule, actual: tuple[int, ...], request_batch: int | None) -> Shape:
    """The shape the input must be compiled with to serve ``actual`` (its own shape when it already fits)."""
    if _fits(spec.shape, actual):
        return spec.shape
    if rule.auto_shape:
        return static_shape(actual)
    expected = spec.shape_text
    if len(actual) != len(spec.shape):
        raise invalid_input("Invalid number of shape dimensions", expected, format_shape(actual), spec.name)
    bi = rule.batch_index
    if bi is not None and not spec.shape[bi].accepts(actual[bi]):
        if not rule.auto_batch:
            raise invalid_input("Invalid input batch size", spec.shape[bi], actual[bi], spec.name)
        if request_batch is not None and actual[bi] != request_batch:
            raise invalid_input("Invalid input batch size", request_batch, actual[bi], spec.name)
    target = tuple(Dim.static(actual[i]) if (i == bi and rule.auto_batch) else d for i, d in enumerate(spec.shape))
    if not _fits(target, actual):
        raise invalid_input("Invalid input shape", format_shape(target), format_shape(actual), spec.name)
    return target


def _fits(shape: Shape, actual: tuple[int, ...]) -> bool:
    return len(shape) == len(actual) and all(d.accepts(n) for d, n in zip(shape, actual, strict=True))


def _reject_empty_dims(spec: TensorSpec, actual: tuple[int, ...]) -> None:
    if any(n <= 0 for n in actual):
        raise invalid_input("Invalid input shape", "dimensions greater than 0", format_shape(actual), spec.name)
