"""Connections and open files: the daemon raises its open-files soft limit, bounds connections per port, and closes
idle ones; 1,100 idle connections under a 1,024 soft limit do not lock new clients out."""

from __future__ import annotations

import resource
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ovmsd.api.grpc.proto import prediction_service_pb2_grpc
from tests.support.daemon import Daemon, free_port, predict_request, rpc_error
from tests.support.models import save, scale_model
from tests.support.rest import Rest

X = np.ones((1, 4), np.float32)
# python -m ovmsd under systemd's default limits: soft 1,024, hard 4,096 here
LIMITED = [
    sys.executable,
    "-c",
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'ovmsd', *sys.argv[1:]])",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resources")
    save(scale_model([1, 4]), root / "scale", 1)
    return root / "scale"


@pytest.fixture
def many_files() -> Iterator[None]:
    """This test process needs more than 1,024 files too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_1100_idle_connections_under_a_1024_soft_limit_lock_no_one_out(
    model: Path, tmp_path: Path, many_files: None
) -> None:
    args = ["--model-name", "scale", "--model-path", str(model)]
    with Daemon(args, tmp_path / "daemon.log", launcher=LIMITED) as daemon:
        daemon.wait_available("scale")
        assert open_files_limit(daemon.process.pid) == (4096, 4096)
        assert "open-files limit raised from 1024 to 4096" in daemon.log()
        idle = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(1100)]
        try:
            time.sleep(0.5)  # let the server accept them all
            np.testing.assert_array_equal(daemon.predict("scale", {"x": X}, timeout=20)["y"], X * 2)
        finally:
            for connection in idle:
                connection.close()
        assert "Too many open files" not in daemon.log()
        assert daemon.stop() == 0


def test_rest_connections_past_the_limit_get_503_and_idle_ones_close(model: Path, tmp_path: Path) -> None:
    rest_port = free_port()
    args = [
        "--model-name", "scale", "--model-path", str(model), "--rest_port", str(rest_port),
        "--max-connections", "4", "--idle-timeout", "1",
    ]  # fmt: skip
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("scale")
        clients = [Rest(rest_port) for _ in range(4)]
        for client in clients:
            assert client.get("/v2/health/live").status == 200  # four kept-alive connections
        assert Rest(rest_port).get("/v2/health/live").status == 503, "a fifth connection is one too many"
        for client in clients:
            client.close()
        time.sleep(0.3)
        assert Rest(rest_port).get("/v2/health/live").status == 200

        kept = socket.create_connection(("127.0.0.1", rest_port), timeout=10)
        kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        kept.settimeout(10)
        assert kept.recv(4096) == b"", "the server closes a connection idle past --idle-timeout"
        assert 0.5 < time.monotonic() - started < 5
        kept.close()
        assert daemon.stop() == 0


def test_grpc_connections_past_the_limit_are_refused_and_others_keep_serving(model: Path, tmp_path: Path) -> None:
    args = ["--model-name", "scale", "--model-path", str(model), "--max-connections", "3"]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("scale")  # the daemon's own channel: one connection
        others = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(2)]
        time.sleep(0.5)
        channel = grpc.insecure_channel(daemon.address)  # a fourth connection: one past the limit

        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        error = rpc_error(lambda: stub.Predict(predict_request("scale", {"x": X}), timeout=5))
        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), error
        np.testing.assert_array_equal(daemon.predict("scale", {"x": X})["y"], X * 2)  # the first connection serves
        for connection in others:
            connection.close()
        channel.close()
        assert daemon.stop() == 0
