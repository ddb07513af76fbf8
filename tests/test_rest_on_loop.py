"""KServe REST binary inference on the event loop: requests wait for their model's place there, in one order of
arrival with the request threads' requests, and every answer is the right one."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.concurrency import ModelSlots
from tests.support.daemon import Daemon, free_port, write_config
from tests.support.models import named, save, scale_model
from tests.support.rest import Rest, kserve_binary_body, kserve_json_input, kserve_outputs


async def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_waits_on_the_loop_keep_the_order_of_arrival_with_threads_and_run_out() -> None:
    slots = ModelSlots("m", 1)
    order: list[str] = []

    def thread_request(name: str) -> None:
        with slots.enter(timeout=10):
            order.append(name)

    async def loop_request() -> None:
        async with slots.entered(timeout=10):
            order.append("loop")

    async def scenario() -> None:
        holder = slots.enter(timeout=1)
        holder.__enter__()
        first = threading.Thread(target=thread_request, args=("thread-1",))
        first.start()
        await eventually(lambda: slots.waiting == 1)
        on_loop = asyncio.create_task(loop_request())
        await eventually(lambda: slots.waiting == 2)
        last = threading.Thread(target=thread_request, args=("thread-3",))
        last.start()
        await eventually(lambda: slots.waiting == 3)
        with pytest.raises(ServingError) as waited:
            async with slots.entered(timeout=0.05):
                pass
        assert waited.value.kind == ErrorKind.OVERLOADED, waited.value
        assert "waited 0.05 s for one of the 1 places of model m" in waited.value.message
        cancelled = asyncio.create_task(loop_request())
        await eventually(lambda: slots.waiting == 4)
        cancelled.cancel()  # its client went away: it leaves the queue
        await asyncio.gather(cancelled, return_exceptions=True)
        assert slots.waiting == 3
        holder.__exit__(None, None, None)
        await on_loop
        first.join(10)
        last.join(10)

    asyncio.run(scenario())
    assert order == ["thread-1", "loop", "thread-3"]
    assert slots.inside == 0 and slots.waiting == 0


def test_many_binary_clients_of_a_one_place_model_all_get_their_own_answer(tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "scale", 1)
    config = write_config(
        tmp_path / "config.json",
        [{"name": "scale", "base_path": str(tmp_path / "scale"), "max_concurrent_requests": 1}],
    )
    rest_port, metrics_port = free_port(), free_port()
    args = ["--config", str(config), "--rest-port", str(rest_port), "--metrics-port", str(metrics_port)]
    with Daemon([*args, "--stage-timers"], tmp_path / "daemon.log") as daemon:
        daemon.wait_available("scale")
        wrong: list[str] = []

        def client(index: int) -> None:
            rest = Rest(rest_port)
            try:
                for i in range(20):
                    x = np.full((1, 4), index * 100 + i, np.float32)
                    body, headers = kserve_binary_body({"x": x}, ["y"])
                    reply = rest.request("POST", "/v2/models/scale/infer", body, headers)
                    if reply.status != 200 or not np.array_equal(kserve_outputs(reply)["y"], 2 * x):
                        wrong.append(f"client {index} request {i}: {reply.status} {reply.body[:200]!r}")
            finally:
                rest.close()

        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
        assert wrong == [], wrong[:5]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            page = response.read().decode()
        counts = {
            line.split('stage="')[1].split('"')[0]: float(line.split()[-1])
            for line in page.splitlines()
            if line.startswith("ovmsctl_request_stage_count_total{")
        }
        assert counts.get("lookup") == 160 and counts.get("infer") == 160, counts
        assert counts.get("handoff", 0) == 0, "every request was served on the event loop"
        assert daemon.stop() == 0, daemon.log()


def reshape_by_value_model() -> ov.Model:
    """``y = reshape(x [4], s [2])``: an inference fails at run time when ``s`` does not hold 4 elements."""
    x = named(ops.parameter([4], np.float32, name="x"), "x")
    shape = named(ops.parameter([2], np.int64, name="s"), "s")
    return ov.Model([named(ops.reshape(x, shape, special_zero=False), "y")], [x, shape], "reshape_by_value")


def test_an_inference_that_fails_is_answered_on_the_loop_too(tmp_path: Path) -> None:
    """OpenVINO never calls the async callback of a failed inference: the request must not wait for it forever."""
    save(reshape_by_value_model(), tmp_path / "reshaper", 1)
    rest_port = free_port()
    args = ["--model-name", "reshaper", "--model-path", str(tmp_path / "reshaper"), "--rest-port", str(rest_port)]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("reshaper")
        rest = Rest(rest_port, timeout=30)
        x = np.arange(4, dtype=np.float32)
        for shape, status in (([3, 3], 500), ([2, 2], 200), ([3, 3], 500)):
            s = np.array(shape, np.int64)
            body, headers = kserve_binary_body({"x": x, "s": s}, ["y"])
            reply = rest.request("POST", "/v2/models/reshaper/infer", body, headers)  # on the loop
            assert reply.status == status, reply.body[:300]
            as_json = {"inputs": [kserve_json_input("x", x), kserve_json_input("s", s)]}
            threaded = rest.post_json("/v2/models/reshaper/infer", as_json)  # on a request thread
            assert threaded.status == status, threaded.body[:300]
            if status == 200:
                np.testing.assert_array_equal(kserve_outputs(reply)["y"], x.reshape(2, 2))
            else:
                assert "Internal inference error" in reply.error and reply.error == threaded.error
        rest.close()
        assert daemon.stop() == 0, daemon.log()
