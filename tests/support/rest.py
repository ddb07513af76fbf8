"""A small HTTP client for the REST front ends (keep-alive, no dependencies) and KServe v2 REST request builders."""

from __future__ import annotations

import http.client
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.float16): "FP16",
    np.dtype(np.object_): "BYTES",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


class Rest:
    """One keep-alive connection to the REST port."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.port = port
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        for attempt in (1, 2):  # a keep-alive connection the server closed (after a 413, say) is opened again
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self._connection.request(method, path, body=body, headers=headers or {})
                response = self._connection.getresponse()
                reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.close()
                if attempt == 2:
                    raise
                continue
            if reply.headers.get("connection") == "close":
                self.close()
            return reply
        raise AssertionError("unreachable")

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_json(self, path: str, document: Any) -> Reply:
        return self.request("POST", path, json.dumps(document).encode(), {"Content-Type": "application/json"})

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def kserve_json_input(name: str, array: np.ndarray) -> dict[str, Any]:
    data = array.ravel().tolist()
    if array.dtype == object:
        data = [v.decode() if isinstance(v, bytes) else v for v in data]
    return {"name": name, "datatype": DATATYPES[array.dtype], "shape": list(array.shape), "data": data}


def kserve_binary_body(
    inputs: dict[str, np.ndarray], outputs: list[str] | None = None, binary_outputs: bool = True
) -> tuple[bytes, dict[str, str]]:
    """An infer request in the binary data extension: the JSON header, then each input's raw bytes."""
    described, chunks = [], []
    for name, array in inputs.items():
        if array.dtype == object:
            raw = b"".join(struct.pack("<I", len(v)) + v for v in array.ravel())
        else:
            raw = np.ascontiguousarray(array).tobytes()
        described.append(
            {
                "name": name,
                "datatype": DATATYPES[array.dtype],
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    document: dict[str, Any] = {"inputs": described}
    if outputs is not None:
        document["outputs"] = [{"name": o, "parameters": {"binary_data": binary_outputs}} for o in outputs]
    else:
        document["parameters"] = {"binary_data_output": binary_outputs}
    header = json.dumps(document).encode()
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def kserve_outputs(reply: Reply) -> dict[str, np.ndarray]:
    """The outputs of an infer answer, JSON or binary, as numpy arrays."""
    length = reply.headers.get(HEADER_LENGTH.lower())
    header = json.loads(reply.body[: int(length)] if length else reply.body)
    offset = int(length) if length else 0
    numpy_types = {v: k for k, v in DATATYPES.items()}
    arrays = {}
    for output in header["outputs"]:
        dtype = numpy_types[output["datatype"]]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = reply.body[offset : offset + size]
            offset += size
            arrays[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(output["shape"])
        else:
            arrays[output["name"]] = np.asarray(output["data"], dtype=dtype).reshape(output["shape"])
    return arrays
