"""A real daemon process on 127.0.0.1 with a free port, and a small client for it built on our own stubs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from ovmsd.api.grpc.proto import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from ovmsd.api.grpc.tensors import numpy_to_tensor, tensor_to_numpy
from ovmsd.serving.states import State

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"model_config_list": [{"config": m} for m in models]}, indent=2))
    return path


class Daemon:
    """``python -m ovmsd`` as a subprocess. Use as a context manager; leaving it stops the process (SIGTERM)."""

    def __init__(
        self, args: list[str], log_path: Path, port: int | None = None, launcher: list[str] | None = None
    ) -> None:
        """``launcher`` replaces ``python -m ovmsd`` (e.g. a script that runs the daemon with a held loader)."""
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = launcher or [sys.executable, "-m", "ovmsd"]
        self.process = subprocess.Popen(
            [*command, *args, "--port", str(self.port), "--bind-address", "127.0.0.1"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        big = 1024 * 1024 * 1024
        self.channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", big), ("grpc.max_send_message_length", big)]
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.exit_code: int | None = None

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.exit_code is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.exit_code = self.process.wait()
            self.channel.close()
            self._log.close()
        return self.exit_code

    # -- waiting -------------------------------------------------------------------------------------------------

    def wait_for_states(self, expected: Mapping[str, Mapping[int, State]], timeout: float = 60) -> None:
        """Until each model's versions are in the expected states (loaded versions are AVAILABLE, say)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            try:
                last = {name: self.states(name) for name in expected}
                if all(all(last[n].get(v) == s for v, s in want.items()) for n, want in expected.items()):
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"states not reached: want {expected}, last {last}\n{self.log()}")

    def wait_available(self, *names: str, timeout: float = 60) -> None:
        self.wait_for_states({n: {} for n in names}, timeout)  # reachable first
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(State.AVAILABLE in self.states(n).values() for n in names):
                return
            time.sleep(0.1)
        raise AssertionError(f"models {names} not available: {[self.states(n) for n in names]}\n{self.log()}")

    # -- calls ---------------------------------------------------------------------------------------------------

    def states(self, name: str, version: int | None = None) -> dict[int, State]:
        return {s.version: State(s.state) for s in self.status(name, version).model_version_status}

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        return self.models.GetModelStatus(request, timeout=10)

    def predict_raw(
        self, name: str, inputs: Mapping[str, np.ndarray], version: int | None = None, timeout: float = 60
    ) -> predict_pb2.PredictResponse:
        return self.prediction.Predict(predict_request(name, inputs, version), timeout=timeout)

    def predict(
        self, name: str, inputs: Mapping[str, np.ndarray], version: int | None = None, timeout: float = 60
    ) -> dict[str, np.ndarray]:
        response = self.predict_raw(name, inputs, version, timeout)
        return {key: tensor_to_numpy(t) for key, t in response.outputs.items()}

    def metadata(self, name: str, version: int | None = None) -> get_model_metadata_pb2.GetModelMetadataResponse:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        return self.prediction.GetModelMetadata(request, timeout=10)


def predict_request(
    name: str, inputs: Mapping[str, np.ndarray], version: int | None = None
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    for key, array in inputs.items():
        numpy_to_tensor(np.ascontiguousarray(array), request.inputs[key])
    return request


def rpc_error(call: Any) -> grpc.RpcError:
    """Run ``call`` and return the RpcError it raises (fails the test if it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded; an error was expected")
