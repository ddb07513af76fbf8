"""SIGTERM under load on KServe gRPC and on REST: every request completes or is refused before it starts, and during
the drain liveness stays true while readiness turns false at once (what Kubernetes and load balancers poll)."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from ovmsd.api.gate import SHUTTING_DOWN
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as pb_grpc
from tests.support.ctl import wait_until
from tests.support.daemon import Daemon, free_port
from tests.support.models import save
from tests.support.rest import Rest, kserve_binary_body, kserve_outputs
from tests.test_graceful_stop import slow_model

DRAIN_S = 20.0


@dataclass(frozen=True)
class Outcome:
    front_end: str
    started: float
    ended: float
    ok: bool
    refusal: str = ""  # why a request that did not complete was refused
    output: np.ndarray | None = None


@dataclass(frozen=True)
class Probe:
    at: float  # when the four calls began
    done: float  # when they ended: a probe is "before" the stop only if it ended before it
    live: int  # HTTP status of /v2/health/live
    ready: int
    grpc_live: bool | None  # KServe gRPC ServerLive, None once the port is closed
    grpc_ready: bool | None


def rest_client(port: int, x: np.ndarray, outcomes: list[Outcome], lock: threading.Lock) -> None:
    client = Rest(port, timeout=60)
    body, headers = kserve_binary_body({"x": x})
    while True:
        started = time.monotonic()
        try:
            reply = client.request("POST", "/v2/models/slow/infer", body, headers)
        except (ConnectionError, http.client.HTTPException) as exc:
            outcome = Outcome("REST", started, time.monotonic(), False, f"connection: {exc!r}")
        else:
            if reply.status == 200:
                outcome = Outcome("REST", started, time.monotonic(), True, output=kserve_outputs(reply)["y"])
            else:
                outcome = Outcome("REST", started, time.monotonic(), False, f"{reply.status} {reply.error}")
        with lock:
            outcomes.append(outcome)
        if not outcome.ok:
            client.close()
            return


def grpc_client(address: str, x: np.ndarray, outcomes: list[Outcome], lock: threading.Lock) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="slow")
        request.inputs.add(name="x", datatype="FP32", shape=x.shape)
        request.raw_input_contents.append(x.tobytes())
        while True:
            started = time.monotonic()
            try:
                response = stub.ModelInfer(request, timeout=60)
                output = np.frombuffer(response.raw_output_contents[0], np.float32)
                outcome = Outcome("KServe gRPC", started, time.monotonic(), True, output=output)
            except grpc.RpcError as exc:
                refusal = f"{exc.code().name} {exc.details()}"
                outcome = Outcome("KServe gRPC", started, time.monotonic(), False, refusal)
            with lock:
                outcomes.append(outcome)
            if not outcome.ok:
                return


def prober(port: int, address: str, probes: list[Probe], done: threading.Event) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while not done.is_set():
            at = time.monotonic()
            try:
                live = Rest(port, timeout=5).get("/v2/health/live").status
                ready = Rest(port, timeout=5).get("/v2/health/ready").status
            except (ConnectionError, http.client.HTTPException):
                return  # the REST port closed: the drain is over
            try:
                grpc_live = stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
                grpc_ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            except grpc.RpcError:
                grpc_live = grpc_ready = None
            probes.append(Probe(at, time.monotonic(), live, ready, grpc_live, grpc_ready))
            time.sleep(0.01)


def test_sigterm_under_load_on_kserve_grpc_and_rest(tmp_path: Path) -> None:
    save(slow_model(), tmp_path / "slow", 1)
    rest_port = free_port()
    args = [
        "--model-name", "slow", "--model-path", str(tmp_path / "slow"), "--drain-timeout", str(DRAIN_S),
        "--rest_port", str(rest_port),
    ]  # fmt: skip
    x = np.random.default_rng(1).standard_normal((1, 8, 64, 64)).astype(np.float32)
    outcomes: list[Outcome] = []
    probes: list[Probe] = []
    lock = threading.Lock()
    done = threading.Event()
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("slow")
        wait_until(lambda: Rest(rest_port).get("/v2/health/ready").status == 200, 30, "ready over REST")
        expected = daemon.predict("slow", {"x": x})["y"]
        threads = [threading.Thread(target=rest_client, args=(rest_port, x, outcomes, lock)) for _ in range(2)]
        threads += [threading.Thread(target=grpc_client, args=(daemon.address, x, outcomes, lock)) for _ in range(2)]
        threads.append(threading.Thread(target=prober, args=(rest_port, daemon.address, probes, done)))
        for t in threads:
            t.start()
        wait_until(lambda: sum(o.front_end == "REST" for o in outcomes) >= 4 and len(outcomes) >= 8, 60, "busy")
        terminated = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        exit_code = daemon.process.wait(timeout=DRAIN_S + 30)
        done.set()
        for t in threads:
            t.join(timeout=30)
        log = daemon.log()

    assert exit_code == 0, log
    for o in outcomes:
        if o.ok:
            np.testing.assert_allclose(np.asarray(o.output).reshape(expected.shape), expected, rtol=1e-5)
        else:  # refused by the closed gate before any work, or not connected once the port closed
            assert SHUTTING_DOWN in o.refusal or "onnect" in o.refusal, o
            assert o.ended >= terminated, f"a request failed before the stop: {o}"
    assert all(any(o.front_end == f and not o.ok for o in outcomes) for f in ("REST", "KServe gRPC"))
    drained = [o for o in outcomes if o.ok and o.started < terminated < o.ended]
    assert drained, "requests in flight at SIGTERM completed"

    before = [p for p in probes if p.done < terminated]
    during = [p for p in probes if p.at > terminated + 0.05]
    assert before and all((p.live, p.ready, p.grpc_live, p.grpc_ready) == (200, 200, True, True) for p in before)
    assert during, f"no probe answered during the drain:\n{log}"
    for p in during:
        assert (p.live, p.ready) == (200, 503), p
        assert p.grpc_live in (True, None) and p.grpc_ready in (False, None), p
    assert any(p.grpc_live is True and p.grpc_ready is False for p in during), during
