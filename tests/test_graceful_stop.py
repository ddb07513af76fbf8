"""SIGTERM under load: every request completes or is refused (UNAVAILABLE) before it started; the daemon exits 0."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
from openvino import opset13 as ops

from ovmsd.api.gate import SHUTTING_DOWN
from tests.support.ctl import wait_until
from tests.support.daemon import Daemon
from tests.support.models import named, save

CLIENTS = 4
DRAIN_S = 20.0


def slow_model() -> ov.Model:
    """Two 64-channel convolutions on 64x64: tens of milliseconds per request, so some are in flight at SIGTERM."""
    rng = np.random.default_rng(3)
    x = named(ops.parameter([1, 8, 64, 64], np.float32, name="x"), "x")
    w1 = ops.constant(rng.standard_normal((64, 8, 3, 3)).astype(np.float32) * 0.1)
    w2 = ops.constant(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.1)
    h = ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1])
    h = ops.convolution(h, w2, [1, 1], [1, 1], [1, 1], [1, 1])
    y = named(ops.reduce_sum(h, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False), "y")
    return ov.Model([y], [x], "slow")


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    code: grpc.StatusCode
    output: np.ndarray | None = None
    details: str = ""


def client(daemon: Daemon, x: np.ndarray, outcomes: list[Outcome], lock: threading.Lock, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            output = daemon.predict("slow", {"x": x}, timeout=60)["y"]
            outcome = Outcome(started, time.monotonic(), grpc.StatusCode.OK, output)
        except grpc.RpcError as exc:
            outcome = Outcome(started, time.monotonic(), exc.code(), details=exc.details() or "")
        with lock:
            outcomes.append(outcome)
        if outcome.code != grpc.StatusCode.OK:
            return  # the server is gone


def test_sigterm_with_four_clients_drains_and_exits_0(tmp_path: Path) -> None:
    save(slow_model(), tmp_path / "slow", 1)
    args = ["--model-name", "slow", "--model-path", str(tmp_path / "slow"), "--drain-timeout", str(DRAIN_S)]
    x = np.random.default_rng(1).standard_normal((1, 8, 64, 64)).astype(np.float32)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("slow")
        expected = daemon.predict("slow", {"x": x})["y"]
        threads = [threading.Thread(target=client, args=(daemon, x, outcomes, lock, stop)) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        wait_until(lambda: len(outcomes) >= 4 * CLIENTS, 60, "clients busy")
        terminated = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        exit_code = daemon.process.wait(timeout=DRAIN_S + 30)
        exited = time.monotonic()
        for t in threads:
            t.join(timeout=30)
        stop.set()
        log = daemon.log()

    assert exit_code == 0, log
    assert exited - terminated < DRAIN_S, "drained well within the timeout"
    codes = {o.code for o in outcomes}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, f"a request failed mid-way: {codes}\n{log}"
    for o in outcomes:
        if o.code == grpc.StatusCode.OK:
            np.testing.assert_allclose(o.output, expected, rtol=1e-5)
    refused = [o for o in outcomes if o.code == grpc.StatusCode.UNAVAILABLE]
    assert len(refused) == CLIENTS, "every client ends on a refusal"
    for o in refused:  # refused by the closed gate before any work, or not even connected once the port closed
        assert o.details == SHUTTING_DOWN or "connect" in o.details.lower(), o.details
    drained = [o for o in outcomes if o.code == grpc.StatusCode.OK and o.started < terminated < o.ended]
    assert drained, "requests in flight at SIGTERM completed"
    assert "received SIGTERM" in log and "stopped" in log
