"""The real KServe v2 client (tritonclient, gRPC and HTTP) from tests: runs tests/clients/triton_client.py in its own
virtualenv (``OVMSCTL_TRITON_PYTHON``, default ``<repo>/.venv-triton/bin/python``, from ``make venv-clients``).

    client = TritonClient("grpc", daemon.kserve_address)
    assert client.call("is_server_live") == {"result": True}
    [result] = client.run(client.command("infer", model="scale", inputs=[tensor("x", array)]))
    np.testing.assert_array_equal(output_array(result["result"]["outputs"]["y"]), array * 2)

Each ``run`` is one subprocess (about 0.3 s of imports): batch the commands of a test into one call. The command
and result formats are in the docstring of tests/clients/triton_client.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tests.support.daemon import REPO

DRIVER = REPO / "tests" / "clients" / "triton_client.py"

# numpy dtype -> KServe v2 datatype, and back.
KSERVE_DATATYPES: dict[Any, str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(ml_dtypes.bfloat16): "BF16",
    np.dtype(np.object_): "BYTES",
}
NUMPY_DTYPES: dict[str, Any] = {v: k for k, v in KSERVE_DATATYPES.items()}


def triton_python() -> str:
    """The interpreter with tritonclient installed; fails the test (never skips) when it is missing."""
    python = os.environ.get("OVMSCTL_TRITON_PYTHON") or str(REPO / ".venv-triton" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail(f"{python} is missing: run `make test` (or `make venv-clients`) to install the client virtualenvs")
    return python


def run_triton(*commands: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
    """Runs the commands in one driver process; returns one result per command. A malformed command fails."""
    done = subprocess.run(
        [triton_python(), str(DRIVER)],
        input=json.dumps(list(commands)),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=""),
    )
    assert done.returncode == 0, f"triton_client.py exited {done.returncode}:\n{done.stderr[-4000:]}"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(commands), results
    return results


class TritonClient:
    """Driver commands for one server address over one protocol ("grpc" or "http")."""

    def __init__(self, protocol: str, url: str, timeout: float | None = None) -> None:
        assert protocol in ("grpc", "http"), protocol
        self.protocol = protocol
        self.url = url
        self.timeout = timeout

    def command(self, op: str, **args: Any) -> dict[str, Any]:
        command = {"protocol": self.protocol, "url": self.url, "op": op, **args}
        if self.timeout is not None:
            command.setdefault("timeout", self.timeout)
        return command

    def run(self, *commands: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
        return run_triton(*commands, timeout=timeout)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One command in its own driver process: ``{"result": ...}`` or ``{"error", "status", "exception"}``."""
        [result] = run_triton(self.command(op, **args))
        return result


def tensor(name: str, array: Any, binary_data: bool | None = None, **extra: Any) -> dict[str, Any]:
    """An input of an infer command from a numpy array (BYTES: an object array of bytes or str)."""
    array = np.asarray(array)
    if array.dtype.kind in "SUO":
        flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
        spec = {"name": name, "datatype": "BYTES", "shape": list(array.shape), "data": flat}
    else:
        datatype = KSERVE_DATATYPES[array.dtype]
        data = array.astype(np.float32) if datatype == "BF16" else array
        spec = {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data.ravel().tolist()}
    if binary_data is not None:
        spec["binary_data"] = binary_data
    spec.update(extra)
    return spec


def output_array(output: dict[str, Any]) -> np.ndarray:
    """An output of an infer result as a numpy array of its datatype and shape (BYTES: str, or bytes for b64)."""
    shape = [int(d) for d in output["shape"]]
    if output["datatype"] == "BYTES":

        def leaf(v: Any) -> Any:
            return base64.b64decode(v["b64"]) if isinstance(v, dict) else v

        flat = np.asarray(output["data"], dtype=np.object_).ravel()
        array = np.empty(flat.size, dtype=np.object_)
        array[:] = [leaf(v) for v in flat]
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[output["datatype"]]
    if output["datatype"] == "BF16":
        return np.asarray(output["data"], dtype=np.float32).astype(dtype).reshape(shape)
    return np.asarray(output["data"], dtype=dtype).reshape(shape)
