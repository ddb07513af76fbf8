"""Fleet rehearsal (issue 11, item 4): three replicas behind a real load balancer, all reading one bucket, under the
load of four clients; a new version, a rolling restart and a SIGKILL.

Setup, all on 127.0.0.1:

* an S3 API: moto's server (``python -m moto.server``), one bucket; the model ``fleet`` (two 3x3 convolutions on
  64x64, a few milliseconds a request) uploaded as version 1 under ``s3://BUCKET/fleet/1/``;
* three replicas, each ``python -m ovmsd --config config.json`` (base path ``s3://BUCKET/fleet``, latest 1 version)
  with its own gRPC port, REST port and object-store cache folder, listing the bucket every ``--poll`` seconds (0.5);
* HAProxy (Debian's) in front: one h2c frontend for gRPC, each request balanced on its own (roundrobin), a health
  check ``GET /v2/health/ready`` on each replica's REST port every 200 ms (down after 1 failure, up after 1 pass),
  ``retries 3`` with redispatch to another replica on ``retry-on conn-failure empty-response`` (a request is held
  whole in a buffer, ``option http-buffer-request``, so that one the replica never answered because it died can be
  sent again: Predict has no side effect; ``--no-resend`` keeps only ``conn-failure``); an admin socket, through
  which the rehearsal takes a replica out of rotation (MAINT) before it stops it, as Kubernetes removes a
  terminating pod from the Service's endpoints while its preStop hook runs;
* four closed-loop clients through the balancer (threads, one gRPC channel each), Predict without a version (the
  latest), 10 s deadline. Every request is recorded: start, end, status, the version that answered.

Phases, one after the other while the clients run:

* steady: the fleet serving version 1;
* (a) new version: version N+1 uploaded object by object; measured from the last object's upload to each replica
  answering with it (direct Predict to the replica every 50 ms), and the window in which the balancer answered both
  versions (version skew). Target: no failed request;
* (b) rolling restart, one replica at a time: MAINT in the balancer, wait until it holds no request, SIGTERM, wait for
  exit 0, start it again (its cache still holds the bucket's versions), wait for ready, back into rotation, wait for
  the balancer's health check to see it UP. Target: no failed request;
* (b0) for comparison, SIGTERM to one replica while it is still in rotation (no preStop): the daemon refuses what
  arrives during its drain with UNAVAILABLE (before any work) until the health check takes it out;
* (c) SIGKILL to one replica in rotation: at most the requests that were in flight on it fail (none when the
  balancer sends them again); the balancer must see it DOWN and no request sent after that may fail; then it is
  started again and rejoins.

Usage::

    .venv/bin/python benchmarks/fleet.py --quick                 # ~1 minute, what tests/test_fleet.py runs
    .venv/bin/python benchmarks/fleet.py --versions 3            # three uploads, ~1.5 minutes
    .venv/bin/python benchmarks/fleet.py --json benchmarks/results/fleet.json --markdown

Needs haproxy (``make deploy-tools`` installs it); exits 3, saying so, without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
import numpy as np
import openvino as ov
from common import REPO, free_port, git_state, machine_info, print_table, sigterm_as_interrupt, write_json
from openvino import opset13 as ops

from ovmsd.api.grpc.proto import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from ovmsd.api.grpc.tensors import numpy_to_tensor

EXIT_MISSING_TOOL = 3
MODEL = "fleet"
INPUT_SHAPE = (1, 8, 64, 64)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "fleet",
    "AWS_SECRET_ACCESS_KEY": "fleet",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# -- the model -----------------------------------------------------------------------------------------------------


def fleet_model(seed: int) -> ov.Model:
    rng = np.random.default_rng(seed)
    x = ops.parameter(list(INPUT_SHAPE), np.float32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    w1 = ops.constant(rng.standard_normal((32, 8, 3, 3)).astype(np.float32) * 0.1)
    w2 = ops.constant(rng.standard_normal((32, 32, 3, 3)).astype(np.float32) * 0.1)
    h = ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1])
    h = ops.convolution(h, w2, [1, 1], [1, 1], [1, 1], [1, 1])
    y = ops.reduce_sum(h, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], MODEL)


def model_files(folder: Path, seed: int) -> dict[str, bytes]:
    target = folder / f"seed-{seed}"
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(fleet_model(seed), target / "model.xml", compress_to_fp16=False)
    return {name: (target / name).read_bytes() for name in ("model.xml", "model.bin")}


def predict_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    numpy_to_tensor(np.ones(INPUT_SHAPE, np.float32), request.inputs["x"])
    return request


# -- processes -----------------------------------------------------------------------------------------------------


class Children:
    """Every process the rehearsal starts, each in its own session; all are stopped on the way out.

    Unlike ``common.Children``, no code runs between fork and exec (no death signal through ``preexec_fn``): the
    rehearsal starts replicas again while its client threads are inside gRPC, and forking then runs Python in a
    child whose other threads hold locks. Leaving the ``with`` block (an error, Ctrl-C, SIGTERM) stops them.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def popen(self, label: str, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("cwd", REPO)
        process = subprocess.Popen(args, start_new_session=True, **kwargs)
        self._procs.append(process)
        return process

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        self._procs = [p for p in self._procs if p is not process]

    def stop_all(self, timeout: float = 20) -> None:
        for process in reversed(self._procs):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in reversed(self._procs):
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._procs = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before port {port} listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout:g} s")


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class S3:
    """moto's S3 server as a child process, and a boto3 client for it."""

    def __init__(self, children: Children, workdir: Path) -> None:
        import boto3  # the s3 extra (a dev dependency too)

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        log = (workdir / "moto.log").open("wb")
        self.process = children.popen(
            "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(self.port, 60, self.process)
        self.bucket = f"fleet-{uuid.uuid4().hex[:8]}"
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="fleet",
            aws_secret_access_key="fleet",
        )  # fmt: skip
        self.client.create_bucket(Bucket=self.bucket)

    def upload(self, prefix: str, files: dict[str, bytes]) -> None:
        for name, data in sorted(files.items(), key=lambda item: item[0] != "model.xml"):  # weights last
            self.client.put_object(Bucket=self.bucket, Key=f"{prefix}/{name}", Body=data)

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}


@dataclass
class Replica:
    name: str
    grpc_port: int
    rest_port: int
    cache: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, children: Children, config: Path, env: dict[str, str], poll_s: float) -> None:
        args = [
            sys.executable, "-m", "ovmsd", "--config", str(config), "--port", str(self.grpc_port),
            "--rest_port", str(self.rest_port), "--bind-address", "127.0.0.1",
            "--file-system-poll-wait-seconds", str(poll_s), "--object-store-cache-dir", str(self.cache),
            "--drain-timeout", "10", "--load-workers", "1", "--grpc-workers", "4",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.process = children.popen(self.name, args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1

    def ready(self) -> bool:
        return http_status(self.rest_port, "/v2/health/ready") == 200

    def wait_ready(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while not self.ready():
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"{self.name} exited ({code}): {self.log_path.read_text()[-3000:]}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout:g} s: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return time.monotonic() - started

    def version_served(self, channel: grpc.Channel) -> int | None:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return stub.Predict(predict_request(), timeout=5).model_spec.version.value
        except grpc.RpcError:
            return None

    def versions(self, channel: grpc.Channel) -> dict[int, int]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
        return {s.version: s.state for s in response.model_version_status}


class HAProxy:
    """haproxy in the foreground with the replicas as one backend, and its admin socket."""

    def __init__(
        self, children: Children, workdir: Path, replicas: list[Replica], binary: str, resend: bool = True
    ) -> None:
        self.port = free_port()
        self.socket_path = workdir / "haproxy.sock"
        servers = "\n".join(
            f"    server {r.name} 127.0.0.1:{r.grpc_port} proto h2 check port {r.rest_port} check-proto h1 "
            f"inter 200ms fall 1 rise 1"
            for r in replicas
        )
        # With resend, a whole Predict request (128 KiB of input here) is held in a buffer, so that it can be sent
        # again, to another replica, when the replica closed the connection before answering (it died): Predict
        # has no side effect. Without it, only requests whose connection failed are sent elsewhere.
        buffering = "    tune.bufsize 262144\n" if resend else ""
        retry = "    option http-buffer-request\n    retry-on conn-failure empty-response\n" if resend else ""
        retry = retry or "    retry-on conn-failure\n"
        config = workdir / "haproxy.cfg"
        config.write_text(
            f"""global
    stats socket {self.socket_path} mode 600 level admin
    log stderr format short local0 info
{buffering}
defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries 3
    option redispatch 1
{retry}
frontend grpc
    bind 127.0.0.1:{self.port} proto h2
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /v2/health/ready
    http-check expect status 200
{servers}
"""
        )
        checked = subprocess.run([binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy rejected its config: {checked.stderr}")
        log = (workdir / "haproxy.log").open("wb")
        self.process = children.popen("haproxy", [binary, "-db", "-f", str(config)], stdout=log, stderr=log)
        wait_port(self.port, 30, self.process)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows if r["pxname"] == "replicas" and r["svname"] != "BACKEND"}

    def set_state(self, server: str, state: str) -> None:
        answer = self.command(f"set server replicas/{server} state {state}").strip()
        if answer:
            raise RuntimeError(f"haproxy: {answer}")

    def wait_status(self, server: str, prefix: str, timeout: float = 30) -> float:
        started = time.monotonic()
        while not (status := self.servers()[server]["status"]).startswith(prefix):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"haproxy: {server} is {status}, not {prefix}, after {timeout:g} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def wait_idle(self, server: str, timeout: float = 10) -> float:
        """Until the balancer holds no request on ``server`` (current sessions 0)."""
        started = time.monotonic()
        while int(self.servers()[server]["scur"] or 0) > 0:
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.02)
        return time.monotonic() - started


# -- load ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    code: str  # "OK" or the gRPC status name
    version: int
    detail: str = ""


@dataclass
class Clients:
    """Closed-loop clients through the balancer; ``in_flight`` is how many requests are outstanding now."""

    address: str
    count: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Clients:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.count)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        request = predict_request()
        # Its own subchannel pool: a connection of its own, as a separate client process would have (channels with
        # the same target and options share one connection otherwise).
        with grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                with self._lock:
                    self.in_flight += 1
                started = time.monotonic()
                try:
                    response = stub.Predict(request, timeout=10)
                    outcome = Outcome(started, time.monotonic(), "OK", response.model_spec.version.value)
                except grpc.RpcError as exc:
                    details = exc.details() or ""
                    outcome = Outcome(started, time.monotonic(), exc.code().name, 0, details[:200])
                with self._lock:
                    self.in_flight -= 1
                    self.outcomes.append(outcome)

    def window(self, start: float, end: float) -> list[Outcome]:
        """Requests that ended in [start, end)."""
        with self._lock:
            return [o for o in self.outcomes if start <= o.ended < end]


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    failures = [o for o in outcomes if o.code != "OK"]
    codes: dict[str, int] = {}
    for o in failures:
        codes[o.code] = codes.get(o.code, 0) + 1
    return {
        "requests": len(outcomes),
        "failures": len(failures),
        "failure_codes": codes,
        "failure_details": sorted({o.detail for o in failures})[:5],
    }


# -- the rehearsal -------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    children: Children
    workdir: Path
    s3: S3
    replicas: list[Replica]
    config: Path
    env: dict[str, str]
    poll_s: float
    balancer: HAProxy | None = None

    def channel(self, replica: Replica) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{replica.grpc_port}")

    def start_replica(self, replica: Replica) -> float:
        replica.start(self.children, self.config, self.env, self.poll_s)
        return replica.wait_ready()

    def stop_replica(self, replica: Replica, timeout: float = 30, signalled: bool = False) -> int:
        assert replica.process is not None
        if not signalled:
            replica.process.send_signal(signal.SIGTERM)
        code = replica.process.wait(timeout=timeout)
        self.children.forget(replica.process)
        return code


def phase_new_version(fleet: Fleet, clients: Clients, version: int, seed: int, quiet_s: float) -> dict[str, Any]:
    files = model_files(fleet.workdir / "staged", seed)
    channels = {r.name: fleet.channel(r) for r in fleet.replicas}
    began = time.monotonic()
    fleet.s3.upload(f"fleet/{version}", files)
    uploaded = time.monotonic()
    serving: dict[str, float] = {}
    try:
        while len(serving) < len(fleet.replicas):
            for replica in fleet.replicas:
                if replica.name not in serving and replica.version_served(channels[replica.name]) == version:
                    serving[replica.name] = time.monotonic() - uploaded
            if time.monotonic() - uploaded > 60:
                raise RuntimeError(f"version {version} not served by every replica after 60 s: {serving}")
            time.sleep(0.05)
        time.sleep(quiet_s)  # the old version retires on every replica under load
        # TF Serving's state number of the previous version on each replica (50: END)
        retired = {r.name: r.versions(channels[r.name]).get(version - 1) for r in fleet.replicas}
    finally:
        for channel in channels.values():
            channel.close()
    ended = time.monotonic()
    outcomes = clients.window(began, ended)
    new = [o.ended for o in outcomes if o.version == version]
    old_after = [o.ended for o in outcomes if o.version == version - 1 and new and o.ended > min(new)]
    return {
        "phase": f"(a) upload version {version}",
        **summary(outcomes),
        "upload_s": uploaded - began,
        "upload_to_replica_s": serving,
        "upload_to_all_s": max(serving.values()),
        "upload_to_first_s": min(serving.values()),
        "mixed_versions_window_s": (max(old_after) - min(new)) if old_after else 0.0,
        "old_version_states": retired,
    }


def phase_rolling_restart(fleet: Fleet, clients: Clients) -> dict[str, Any]:
    assert fleet.balancer is not None
    began = time.monotonic()
    steps = []
    for replica in fleet.replicas:
        step: dict[str, Any] = {"replica": replica.name}
        t0 = time.monotonic()
        fleet.balancer.set_state(replica.name, "maint")
        step["balancer_idle_s"] = fleet.balancer.wait_idle(replica.name)
        t1 = time.monotonic()
        step["exit_code"] = fleet.stop_replica(replica)
        step["stop_s"] = time.monotonic() - t1
        step["start_to_ready_s"] = fleet.start_replica(replica)
        fleet.balancer.set_state(replica.name, "ready")
        step["back_in_rotation_s"] = fleet.balancer.wait_status(replica.name, "UP")
        step["out_of_rotation_s"] = time.monotonic() - t0
        steps.append(step)
    ended = time.monotonic()
    return {"phase": "(b) rolling restart", **summary(clients.window(began, ended)), "steps": steps}


def phase_sigterm_in_rotation(fleet: Fleet, clients: Clients, settle_s: float) -> dict[str, Any]:
    assert fleet.balancer is not None
    replica = fleet.replicas[0]
    assert replica.process is not None
    began = time.monotonic()
    replica.process.send_signal(signal.SIGTERM)
    down = fleet.balancer.wait_status(replica.name, "DOWN")
    code = fleet.stop_replica(replica, signalled=True)
    stopped = time.monotonic() - began
    time.sleep(settle_s)
    ended = time.monotonic()
    result = {
        "phase": "(b0) SIGTERM while in rotation",
        **summary(clients.window(began, ended)),
        "exit_code": code,
        "stop_s": stopped,
        "balancer_down_s": down,
    }
    result["start_to_ready_s"] = fleet.start_replica(replica)
    fleet.balancer.wait_status(replica.name, "UP")
    return result


def phase_sigkill(fleet: Fleet, clients: Clients, settle_s: float) -> dict[str, Any]:
    assert fleet.balancer is not None
    replica = fleet.replicas[1]
    assert replica.process is not None
    time.sleep(0.5)
    began = time.monotonic()
    balancer_in_flight = int(fleet.balancer.servers()[replica.name]["scur"] or 0)
    with clients._lock:
        clients_in_flight = clients.in_flight
    replica.process.kill()
    killed = time.monotonic()
    down = fleet.balancer.wait_status(replica.name, "DOWN")
    time.sleep(settle_s)
    ended = time.monotonic()
    outcomes = clients.window(began, ended)
    failed = [o for o in outcomes if o.code != "OK"]
    late = [o for o in failed if o.started > killed + down]
    replica.process.wait(timeout=30)
    fleet.children.forget(replica.process)
    result = {
        "phase": "(c) SIGKILL one replica",
        **summary(outcomes),
        "in_flight_on_it_at_kill": balancer_in_flight,
        "in_flight_all_clients_at_kill": clients_in_flight,
        "balancer_down_s": down,
        "failures_started_after_down": len(late),
        "failures_started_before_kill": sum(o.started < killed for o in failed),
        "failures_started_ms_after_kill": sorted(round((o.started - killed) * 1e3, 1) for o in failed),
    }
    result["restart_to_ready_s"] = fleet.start_replica(replica)
    result["back_in_rotation_s"] = fleet.balancer.wait_status(replica.name, "UP")
    return result


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="fleet-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def rehearse(args: argparse.Namespace, haproxy: str) -> dict[str, Any]:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    phases: list[dict[str, Any]] = []
    with sigterm_as_interrupt(), workdir(args.workdir) as work, Children() as children:
        s3 = S3(children, work)
        s3.upload("fleet/1", model_files(work / "staged", seed=1))
        config = work / "config.json"
        entry = {
            "name": MODEL,
            "base_path": f"s3://{s3.bucket}/{MODEL}",
            "plugin_config": {"PERFORMANCE_HINT": "LATENCY"},
        }
        config.write_text(json.dumps({"model_config_list": [{"config": entry}]}, indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "S3_ENDPOINT"}
        env.update(s3.env)
        replicas = [
            Replica(f"r{i}", free_port(), free_port(), work / f"cache-r{i}", work / f"r{i}.log") for i in (1, 2, 3)
        ]
        fleet = Fleet(children, work, s3, replicas, config, env, args.poll)
        launched = time.monotonic()
        for replica in replicas:  # all three load at once
            replica.start(children, config, env, args.poll)
        first_ready = {}
        for replica in replicas:
            replica.wait_ready()
            first_ready[replica.name] = time.monotonic() - launched  # an upper bound for the later ones
        fleet.balancer = HAProxy(children, work, replicas, haproxy, resend=not args.no_resend)
        for replica in replicas:
            fleet.balancer.wait_status(replica.name, "UP")
        with Clients(f"127.0.0.1:{fleet.balancer.port}") as clients:
            began = time.monotonic()
            time.sleep(args.steady)
            steady = clients.window(began, time.monotonic())
            phases.append(
                {"phase": "steady", **summary(steady), "requests_per_s": len(steady) / max(args.steady, 1e-9)}
            )
            for n in range(args.versions):
                phases.append(phase_new_version(fleet, clients, 2 + n, seed=2 + n, quiet_s=args.settle))
            phases.append(phase_rolling_restart(fleet, clients))
            if not args.skip_b0:
                phases.append(phase_sigterm_in_rotation(fleet, clients, args.settle))
            phases.append(phase_sigkill(fleet, clients, args.settle))
            time.sleep(args.settle)
            outcomes = list(clients.outcomes)
        servers = fleet.balancer.servers()
        logs_tail = {r.name: r.log_path.read_text(errors="replace")[-2000:] for r in replicas}
    return {
        "benchmark": "fleet",
        "started_at": started_at,
        "machine": machine_info(),
        "git": git_state(),
        "setup": {
            "replicas": 3,
            "clients": 4,
            "balancer": subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.splitlines()[0],
            "poll_s": args.poll,
            "balancer_resends_unanswered": not args.no_resend,
            "model": f"{MODEL}: 2 convolutions 3x3 (8->32->32 channels) on {INPUT_SHAPE}",
        },
        "first_start_to_ready_s": first_ready,
        "phases": phases,
        "total": summary(outcomes),
        "versions_seen": sorted({o.version for o in outcomes if o.code == "OK"}),
        "balancer_final": {name: row["status"] for name, row in servers.items()},
        "logs_tail": logs_tail,
    }


def fmt_s(value: float) -> str:
    return f"{value:.2f} s"


def report(result: dict[str, Any], markdown: bool) -> None:
    rows = []
    for phase in result["phases"]:
        name = phase["phase"]
        if name == "steady":
            figure = f"{phase['requests_per_s']:.0f} requests/s through the balancer"
        elif name.startswith("(a)"):
            per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(phase["upload_to_replica_s"].items()))
            figure = (
                f"upload to last replica serving it {fmt_s(phase['upload_to_all_s'])} ({per}); both versions "
                f"answered for {fmt_s(phase['mixed_versions_window_s'])}"
            )
        elif name.startswith("(b)"):
            outs = ", ".join(f"{s['replica']} {s['out_of_rotation_s']:.1f}" for s in phase["steps"])
            figure = f"out of rotation (s): {outs}; exit codes {[s['exit_code'] for s in phase['steps']]}"
        elif name.startswith("(b0)"):
            refused = phase["failure_codes"] or "none"
            figure = f"refused during the drain: {refused}; DOWN after {fmt_s(phase['balancer_down_s'])}"
        else:
            figure = (
                f"in flight at the kill: {phase['in_flight_on_it_at_kill']} on it (balancer), "
                f"{phase['in_flight_all_clients_at_kill']} in all; DOWN after {fmt_s(phase['balancer_down_s'])}; "
                f"failures after DOWN: {phase['failures_started_after_down']}"
            )
        rows.append([name, phase["requests"], phase["failures"], figure])
    total = result["total"]
    rows.append(["total", total["requests"], total["failures"], f"versions answered: {result['versions_seen']}"])
    print_table(["phase", "requests", "failed", "figures"], rows, title="Fleet rehearsal", markdown=markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (what tests/test_fleet.py runs)")
    parser.add_argument("--versions", type=int, default=None, help="new versions uploaded, one after the other")
    parser.add_argument("--steady", type=float, default=None, help="seconds of steady load first")
    parser.add_argument("--settle", type=float, default=None, help="seconds of load after each event")
    parser.add_argument("--poll", type=float, default=0.5, help="the replicas' --file-system-poll-wait-seconds")
    parser.add_argument(
        "--no-resend",
        action="store_true",
        help="the balancer sends a request elsewhere only when its connection failed, not when the replica died "
        "before answering (the requests in flight on a killed replica then fail)",
    )
    parser.add_argument("--skip-b0", action="store_true", help="leave out the SIGTERM-in-rotation comparison")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep models, logs and configs here")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args(argv)
    args.versions = args.versions if args.versions is not None else (1 if args.quick else 3)
    args.steady = args.steady if args.steady is not None else (1.0 if args.quick else 5.0)
    args.settle = args.settle if args.settle is not None else (1.0 if args.quick else 3.0)
    haproxy = find_haproxy()
    if haproxy is None:
        print("haproxy is not installed: `make deploy-tools` installs it (as root, on Debian)", file=sys.stderr)
        return EXIT_MISSING_TOOL
    result = rehearse(args, haproxy)
    report(result, args.markdown)
    path = args.json or REPO / "benchmarks" / "results" / "fleet.json"
    write_json(path, result)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
