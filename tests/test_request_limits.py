"""Requests are bounded before work starts (issue 12, item 2), on a real daemon and in-process.

The reproductions: a ~60-byte request describing a (1,3,3500,3500) tensor to a ``shape: auto`` model, and batch
512 to a ``batch_size: auto`` model, are refused (RESOURCE_EXHAUSTED, naming the limit and the value) before any
allocation or compile; the per-model config keys and the REST front end refuse the same way (413); the shape cache
keeps its variants within a byte budget; and one model's slow requests leave other models answered within 100 ms.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as kserve_pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as kserve_grpc
from ovmsd.api.grpc.proto import predict_pb2, types_pb2
from ovmsd.config.models import InputShape, ModelConfig, ModelLimits, ShapeConfig
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.concurrency import ModelSlots, TooManyWaiting, TurnPool, lending_turns
from ovmsd.serving.instance import ModelInstance, ServingOptions
from ovmsd.serving.limits import LimitDefaults, RequestLimits
from ovmsd.serving.memory import heap_in_use
from ovmsd.serving.signature import Signature
from ovmsd.serving.states import State
from tests.support.daemon import Daemon, free_port, rpc_error, write_config
from tests.support.models import conv_model, named, save, scale_model
from tests.support.rest import Rest

MIB = 1 << 20
SLOW_REQUESTS = 6
# f32: on a CPU with AMX, OpenVINO's default bf16 runs the "very slow" model ~10x faster, and it is no longer slow
SINGLE_CORE = {
    "NUM_STREAMS": 1,
    "INFERENCE_NUM_THREADS": 1,
    "PERFORMANCE_HINT": "LATENCY",
    "INFERENCE_PRECISION_HINT": "f32",
}


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def broadcast_request(model: str, name: str, dims: tuple[int, ...]) -> predict_pb2.PredictRequest:
    """One float_val standing for every element of ``dims``: a few dozen bytes on the wire."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs[name]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in dims:
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.append(1.0)
    return request


def very_slow_model() -> ov.Model:
    """12 64-channel 3x3 convolutions on 256x256: about 0.2 s per request on one core."""
    rng = np.random.default_rng(5)
    x = named(ops.parameter([1, 64, 256, 256], np.float32, name="x"), "x")
    h = x
    for _ in range(12):
        w = ops.constant(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05)
        h = ops.convolution(h, w, [1, 1], [1, 1], [1, 1], [1, 1])
    y = named(ops.reduce_sum(h, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False), "y")
    return ov.Model([y], [x], "very_slow")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("limits")
    save(conv_model(size=16), root / "segmenter", 1)
    save(scale_model([1, 4]), root / "classifier", 1)
    save(scale_model([1, 4]), root / "strict", 1)
    config = write_config(
        root / "config.json",
        [
            {"name": "segmenter", "base_path": str(root / "segmenter"), "shape": "auto"},
            {"name": "classifier", "base_path": str(root / "classifier"), "batch_size": "auto"},
            {
                "name": "strict",
                "base_path": str(root / "strict"),
                "batch_size": "auto",
                "max_input_bytes": 1024,
                "max_auto_batch": 4,
            },
        ],
    )
    rest_port = free_port()
    with Daemon(["--config", str(config), "--rest-port", str(rest_port)], root / "daemon.log") as d:
        d.rest_port = rest_port  # type: ignore[attr-defined]
        d.wait_available("segmenter", "classifier", "strict")
        yield d
        assert d.stop() == 0, d.log()


def test_a_60_byte_request_for_a_147_mb_tensor_is_refused_before_any_allocation_or_compile(daemon: Daemon) -> None:
    request = broadcast_request("segmenter", "data", (1, 3, 3500, 3500))
    assert request.ByteSize() < 80, "the reproduction's request is tiny"
    daemon.predict("segmenter", {"data": np.ones((1, 3, 16, 16), np.float32)})  # warm: the base variant served
    before = peak_rss(daemon.process.pid)
    started = time.monotonic()
    error = rpc_error(lambda: daemon.prediction.Predict(request, timeout=30))
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert error.details() == (
        "Input is over the size limit - Expected: at most 134217728 bytes (max_input_bytes); "
        "Actual: 147000000 bytes, FP32 (1,3,3500,3500); input name: data"
    )
    assert elapsed < 1.0
    assert peak_rss(daemon.process.pid) - before < 20 * MIB, "nothing of the 147 MB (or a compile) was allocated"
    assert "(1,3,3500,3500)" not in daemon.log(), "no compile was attempted"


def test_batch_512_to_a_batch_auto_model_is_over_the_limit(daemon: Daemon) -> None:
    batch = np.ones((512, 4), np.float32)  # 8 KiB: well within max_input_bytes, so max_auto_batch answers
    error = rpc_error(lambda: daemon.predict("classifier", {"x": batch}))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert error.details() == (
        "Batch size is over the limit for auto reshapes - Expected: at most 256 (max_auto_batch); "
        "Actual: 512 in (512,4); input name: x"
    )
    assert daemon.predict("classifier", {"x": np.ones((256, 4), np.float32)})["y"].shape == (256, 4)
    assert "x(512,4)" not in daemon.log(), "no compile was attempted"


def test_a_dimension_over_max_auto_dim_is_refused_before_the_compile(daemon: Daemon) -> None:
    request = broadcast_request("segmenter", "data", (1, 3, 16, 20000))  # 3.8 MB: the dimension answers
    error = rpc_error(lambda: daemon.prediction.Predict(request, timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "Dimension is over the limit for auto reshapes - Expected: at most 16384 (max_auto_dim); "
        "Actual: 20000 in (1,3,16,20000); input name: data"
    )
    assert "(1,3,16,20000)" not in daemon.log(), "no compile was attempted"


def test_per_model_limits_from_the_config_and_their_rest_answer(daemon: Daemon) -> None:
    rest = Rest(daemon.rest_port)  # type: ignore[attr-defined]
    try:
        ok = rest.post_json("/v1/models/strict:predict", {"instances": [[1, 2, 3, 4]] * 4})
        assert ok.status == 200, ok.body
        over_batch = rest.post_json("/v1/models/strict:predict", {"instances": [[1, 2, 3, 4]] * 5})
        assert over_batch.status == 413
        assert "Expected: at most 4 (max_auto_batch); Actual: 5 in (5,4)" in over_batch.error
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [65, 4], "data": [0.5] * 260}]}
        over_bytes = rest.post_json("/v2/models/strict/infer", body)
        assert over_bytes.status == 413
        assert over_bytes.error == (
            "Input is over the size limit - Expected: at most 1024 bytes (max_input_bytes); "
            "Actual: 1040 bytes, FP32 (65,4); input name: x"
        )
    finally:
        rest.close()
    error = rpc_error(lambda: daemon.predict("strict", {"x": np.ones((5, 4), np.float32)}))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "gRPC answers the same limit"


# --- per-model concurrency ----------------------------------------------------------------------------------------


def test_one_models_slow_requests_leave_other_models_answered_within_100_ms(tmp_path: Path) -> None:
    save(very_slow_model(), tmp_path / "slow", 1)
    save(scale_model([1, 4]), tmp_path / "fast", 1)
    config = write_config(
        tmp_path / "config.json",
        [
            # one core for the slow model, so that what is measured is waiting for a thread, not for a CPU
            {"name": "slow", "base_path": str(tmp_path / "slow"), "plugin_config": SINGLE_CORE},
            {"name": "fast", "base_path": str(tmp_path / "fast")},
        ],
    )
    # 4 gRPC workers, as the 2-core machine had: the default limit lets 2 slow requests in at once
    with Daemon(["--config", str(config), "--grpc-workers", "4"], tmp_path / "daemon.log") as daemon:
        daemon.wait_available("slow", "fast")
        x = np.ones((1, 4), np.float32)
        daemon.predict("fast", {"x": x})
        slow_request = broadcast_request("slow", "x", (1, 64, 256, 256))
        daemon.prediction.Predict(slow_request, timeout=60)  # warm
        codes: list[grpc.StatusCode] = []
        lock = threading.Lock()

        def slow() -> None:
            try:
                daemon.prediction.Predict(slow_request, timeout=120)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=slow) for _ in range(SLOW_REQUESTS)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # every slow request is in: 2 inside the model, the others waiting for a place
        latencies = []  # of fast requests made while slow ones were still running
        while len(codes) < SLOW_REQUESTS:
            before = time.monotonic()
            assert daemon.predict("fast", {"x": x}, timeout=10)["y"].tolist() == [[2.0, 2.0, 2.0, 2.0]]
            if len(codes) < SLOW_REQUESTS:
                latencies.append(time.monotonic() - before)
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=120)
    assert codes == [grpc.StatusCode.OK] * SLOW_REQUESTS, "slow requests wait for a place: none is refused"
    assert len(latencies) >= 5, "fast requests were measured while slow ones ran"
    shown = [round(t * 1000) for t in latencies]
    # Unbounded, the first fast request waited 1.4-3.4 s behind the slow ones (all four gRPC threads taken). On this
    # shared machine, other processes can delay any single request past 100 ms, so the bound is on nine in ten.
    assert sorted(latencies)[len(latencies) * 9 // 10 - 1] < 0.1, shown
    assert max(latencies) < 1.0, shown


def wait_parked(pool: TurnPool, count: int) -> None:
    deadline = time.monotonic() + 10
    while pool.parked < count:
        assert time.monotonic() < deadline, f"{pool.parked} parked, not {count}"
        time.sleep(0.01)


def test_turn_pool_runs_workers_tasks_at_once_and_parked_ones_lend_their_turn() -> None:
    pool = TurnPool(2, "test", max_parked=1)
    slots = ModelSlots("slow", 1)
    release = threading.Event()
    inside = threading.Event()

    def slow() -> str:
        with slots.enter(timeout=30):
            inside.set()
            release.wait(30)
        return "slow"

    first = pool.submit(slow)
    assert inside.wait(10)
    second = pool.submit(slow)  # waits for the place, parked: its turn goes to the next task
    wait_parked(pool, 1)
    assert pool.submit(lambda: "fast").result(timeout=5) == "fast", "two turns: one slow inside, one free"
    third = pool.submit(slow)  # a second waiter: no room left for parked requests
    with pytest.raises(ServingError) as refused:
        third.result(timeout=10)
    assert refused.value.kind == ErrorKind.TOO_MANY_REQUESTS
    assert "at most 1 inside the model (max_concurrent_requests) and 1 waiting" in refused.value.message
    release.set()
    assert first.result(timeout=10) == second.result(timeout=10) == "slow"
    assert pool.threads <= 3
    pool.shutdown()


def test_a_task_waiting_for_its_next_item_lends_its_turn_and_past_max_parked_is_refused() -> None:
    pool = TurnPool(1, "test", max_parked=1)
    messages: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def stream() -> list[int]:  # a stream's handler: its next message may take long
        return list(lending_turns(iter(messages.get, None)))

    first = pool.submit(stream)
    wait_parked(pool, 1)
    assert pool.submit(lambda: "other").result(timeout=5) == "other", "one turn, lent while the stream waits"
    second = pool.submit(stream)  # would wait too: no room left for waiting tasks
    with pytest.raises(TooManyWaiting, match="1 requests and streams already wait"):
        second.result(timeout=10)
    for message in (1, 2, None):
        messages.put(message)
    assert first.result(timeout=10) == [1, 2]
    assert list(lending_turns(iter([3, 4]))) == [3, 4], "outside a pool it simply iterates"
    pool.shutdown()


def test_idle_kserve_streams_hold_no_request_thread(tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "scale", 1)
    args = ["--model-name", "scale", "--model-path", str(tmp_path / "scale"), "--grpc-workers", "2"]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("scale")
        kserve = kserve_grpc.GRPCInferenceServiceStub(daemon.channel)
        inboxes: list[queue.SimpleQueue[kserve_pb.ModelInferRequest | None]] = [queue.SimpleQueue() for _ in range(6)]
        streams = [kserve.ModelStreamInfer(iter(inbox.get, None), timeout=60) for inbox in inboxes]
        try:
            time.sleep(0.5)  # every stream is open and waits for its first message, three times the workers
            assert daemon.status("scale").model_version_status[0].state == State.AVAILABLE
            np.testing.assert_array_equal(daemon.predict("scale", {"x": np.ones((1, 4), np.float32)})["y"], 2.0)
            request = kserve_pb.ModelInferRequest(model_name="scale")
            tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
            tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
            for inbox, stream in zip(inboxes, streams, strict=True):  # and each stream still answers
                inbox.put(request)
                answer = next(stream)
                assert not answer.error_message, answer.error_message
                assert np.frombuffer(answer.infer_response.raw_output_contents[0], np.float32).tolist() == [2, 4, 6, 8]
        finally:
            for inbox in inboxes:
                inbox.put(None)
            for stream in streams:
                stream.cancel()
        assert daemon.stop() == 0, daemon.log()


def test_a_request_waiting_for_a_compile_steps_out_of_its_place_and_its_turn() -> None:
    pool = TurnPool(1, "test")
    slots = ModelSlots("auto", 1)
    compiled = threading.Event()
    compiling = threading.Event()

    def new_shape() -> str:
        with slots.enter(timeout=30):
            with slots.outside(timeout=30):  # as the instance does around a compile
                compiling.set()
                assert compiled.wait(30)
            return "compiled"

    def cached_shape() -> str:
        with slots.enter(timeout=30):
            return "cached"

    first = pool.submit(new_shape)
    assert compiling.wait(10)
    assert pool.submit(cached_shape).result(timeout=5) == "cached", "one place, one turn: both were lent"
    compiled.set()
    assert first.result(timeout=10) == "compiled"
    running, peak, lock = [0], [0], threading.Lock()

    def count() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    for future in [pool.submit(count) for _ in range(6)]:
        future.result(timeout=10)
    assert peak[0] == 1, "after parking and coming back, the pool still runs one task at a time"
    pool.shutdown()


def test_a_place_waited_for_too_long_is_overloaded() -> None:
    slots = ModelSlots("busy", 1)
    with slots.enter(timeout=1), pytest.raises(ServingError) as waited, slots.enter(timeout=0.05):
        pass
    assert waited.value.kind == ErrorKind.OVERLOADED
    assert slots.inside == 0 and slots.waiting == 0


# --- limits in-process --------------------------------------------------------------------------------------------


def test_the_default_input_limit_never_refuses_what_the_configured_model_takes(tmp_path: Path) -> None:
    model_file = save(scale_model([1, 3, 4096, 4096]), tmp_path / "big", 1)  # 192 MiB per request
    config = ModelConfig(name="big", base_path=tmp_path / "big")
    base = ModelInstance(ov.Core(), model_file, config, 1).base.signature
    assert RequestLimits.resolve(ModelLimits(), LimitDefaults(), base).input_bytes == {"x": 192 * MIB}
    assert RequestLimits.resolve(ModelLimits(max_input_bytes=10), LimitDefaults(), base).input_bytes == {"x": 10}
    assert RequestLimits.resolve(ModelLimits(), LimitDefaults(), Signature((), ())).default_input_bytes == 128 * MIB


def test_the_shape_cache_keeps_its_variants_within_the_byte_budget(tmp_path: Path) -> None:
    model_file = save(conv_model(size=16), tmp_path / "conv", 1)
    config = ModelConfig(
        name="conv",
        base_path=tmp_path / "conv",
        shape=ShapeConfig(anonymous=InputShape(auto=True)),
        limits=ModelLimits(shape_cache_bytes=64 * MIB),
    )
    instance = ModelInstance(ov.Core(), model_file, config, 1, ServingOptions(shape_cache_size=10))
    start = heap_in_use()
    sizes = {}
    for side in (512, 640, 768, 896, 1024):  # each variant holds 8-80 MB: all of them would be ~200 MB
        with instance.run({"data": np.ones((1, 3, side, side), np.float32)}):
            pass
        key = instance._variants.last_built
        variant = instance._variants.peek(key) if key is not None else None
        assert variant is not None
        sizes[side] = variant.size_bytes
        assert variant.size_bytes >= 2 * 4 * side * side * 4, "at least every infer request's input and output"
    stats = instance._variants.stats
    kept = instance._variants.cached_keys()
    assert stats.evictions >= 2, sizes
    assert stats.bytes <= 64 * MIB + sizes[1024], "within the budget, or the newest alone over it"
    assert stats.bytes == sum(v.size_bytes for v in (instance._variants.peek(k) for k in kept) if v is not None)
    if start is not None:
        held = heap_in_use() - start  # type: ignore[operator]
        assert held < 64 * MIB + sizes[1024] + 32 * MIB, f"the heap holds {held / MIB:.0f} MiB"
    instance.close()
