"""The compiled-shape cache: single flight, no stall for other shapes, LRU bounds, timeouts.

The instance-level tests use the real OpenVINO Core behind a gate that holds compiles open, so a compile in progress
is observable without sleeping.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from ovmsd.config.models import BatchSize, ModelConfig
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.instance import ModelInstance, ServingOptions
from ovmsd.serving.shape_cache import BuildTimeout, ShapeCache
from tests.support.models import save, scale_model


class GatedCore:
    """The real Core; compiles after the first wait until the test opens the gate."""

    def __init__(self) -> None:
        self.core = ov.Core()
        self.gate = threading.Event()
        self.gate.set()
        self.compile_started = threading.Event()
        self.compiles = 0

    def read_model(self, path: str, config: dict | None = None) -> ov.Model:
        return self.core.read_model(path, config=config or {})

    def compile_model(self, model: ov.Model, device: str, config: dict) -> ov.CompiledModel:
        self.compiles += 1
        self.compile_started.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return self.core.compile_model(model, device, config)


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return save(scale_model([1, 4]), tmp_path / "scale", 1)


def make_instance(model_file: Path, core: GatedCore, **options: float) -> ModelInstance:
    config = ModelConfig(name="scale", base_path=model_file.parent.parent, batch_size=BatchSize(auto=True))
    return ModelInstance(core, model_file, config, 1, ServingOptions(**options))  # type: ignore[arg-type]


def infer(instance: ModelInstance, batch: int) -> np.ndarray:
    with instance.run({"x": np.full((batch, 4), 1.0, np.float32)}) as (_, outputs):
        return outputs["y"].copy()


def test_cached_shapes_are_served_while_a_new_shape_compiles_and_waiters_share_one_compile(model_file: Path) -> None:
    core = GatedCore()
    instance = make_instance(model_file, core)
    core.gate.clear()
    core.compile_started.clear()
    results: dict[str, np.ndarray] = {}
    first = threading.Thread(target=lambda: results.__setitem__("first", infer(instance, 8)))
    first.start()
    assert core.compile_started.wait(timeout=30)
    for _ in range(20):  # batch 1 is compiled: served while batch 8 compiles
        np.testing.assert_array_equal(infer(instance, 1), np.full((1, 4), 2.0))
    second = threading.Thread(target=lambda: results.__setitem__("second", infer(instance, 8)))
    second.start()
    wait_until(lambda: instance.info().stats.waiting == 1)  # the second request waits on the first one's compile
    core.gate.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert results["first"].shape == results["second"].shape == (8, 4)
    assert core.compiles == 2  # base + one compile for batch 8, shared by both requests
    stats = instance.info().stats
    assert (stats.compiles, stats.failures) == (1, 0)
    infer(instance, 8)
    assert instance.info().stats.hits >= 1 and core.compiles == 2, "a cached shape never recompiles"


def test_waiters_give_up_with_unavailable_after_the_reshape_timeout(model_file: Path) -> None:
    core = GatedCore()
    instance = make_instance(model_file, core, reshape_timeout_s=0.2)
    core.gate.clear()
    core.compile_started.clear()
    owner = threading.Thread(target=lambda: infer(instance, 3))
    owner.start()
    assert core.compile_started.wait(timeout=30)
    with pytest.raises(ServingError) as caught:
        infer(instance, 3)
    assert caught.value.kind == ErrorKind.OVERLOADED
    core.gate.set()
    owner.join(timeout=60)
    assert infer(instance, 3).shape == (3, 4)


def test_lru_keeps_at_most_capacity_shapes_and_never_evicts_the_base(model_file: Path) -> None:
    core = GatedCore()
    instance = make_instance(model_file, core, shape_cache_size=3)
    for batch in (2, 3, 4, 5):
        infer(instance, batch)
    shapes = instance.info().compiled_shapes
    assert len(shapes) == 3
    assert {"x": "(1,4)"} in shapes, "the configured shape stays compiled"
    assert {"x": "(5,4)"} in shapes and {"x": "(2,4)"} not in shapes
    assert instance.info().stats.evictions == 2


def test_shape_cache_single_flight_and_failure_propagation() -> None:
    cache: ShapeCache[str, int] = ShapeCache(capacity=2)
    calls: list[str] = []

    def build(key: str) -> int:
        calls.append(key)
        if key == "bad":
            raise ValueError("cannot")
        return len(key)

    assert cache.get_or_build("abc", build, timeout=1) == 3
    assert cache.get_or_build("abc", build, timeout=1) == 3
    assert calls == ["abc"] and cache.stats.hits == 1
    with pytest.raises(ValueError):
        cache.get_or_build("bad", build, timeout=1)
    assert cache.stats.failures == 1 and "bad" not in cache.cached_keys()
    with pytest.raises(ValueError):  # a failed build is not cached: the next request tries again
        cache.get_or_build("bad", build, timeout=1)
    assert calls.count("bad") == 2


def test_build_timeout_is_raised_to_waiters_only() -> None:
    cache: ShapeCache[str, int] = ShapeCache(capacity=2)
    release = threading.Event()
    started = threading.Event()

    def slow(key: str) -> int:
        started.set()
        release.wait(timeout=30)
        return 1

    owner = threading.Thread(target=lambda: cache.get_or_build("k", slow, timeout=30))
    owner.start()
    assert started.wait(timeout=10)
    with pytest.raises(BuildTimeout):
        cache.get_or_build("k", slow, timeout=0.05)
    release.set()
    owner.join(timeout=10)
    assert cache.get_or_build("k", slow, timeout=1) == 1
