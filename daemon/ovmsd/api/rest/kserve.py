"""KServe v2 REST (the Open Inference Protocol over HTTP) over the data plane, with the binary data extension.

    GET  /v2/health/live, /v2/health/ready            200, or 503 when not ready (stopping, a model not available)
    GET  /v2                                          server metadata
    GET  /v2/models/{m}[/versions/{v}]                model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready          200, or 503 when that version is not AVAILABLE
    POST /v2/models/{m}[/versions/{v}]/infer          JSON tensors, or the binary data extension

Binary data extension: the header ``Inference-Header-Content-Length: N`` says the first N bytes of the body are the
JSON header; the bytes after it are the inputs that carry ``"parameters": {"binary_data_size": n}``, in the order
they are listed. Outputs asked for with ``"binary_data": true`` (or all, with the request parameter
``binary_data_output``) go the same way in the answer, which then sets the same header.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovmsd import stages
from ovmsd.api.kserve import codec
from ovmsd.api.kserve.protocol import EXTENSIONS, SERVER_NAME, model_metadata, parse_version, server_version
from ovmsd.api.rest.http import OCTET_STREAM, Request, Response, dump, error_response, json_object, json_response
from ovmsd.api.rest.json_values import bytes_array, json_bytes, numeric_array
from ovmsd.api.rest.router import MODEL, VERSION, Route, route
from ovmsd.errors import ErrorKind, ServingError, invalid_input
from ovmsd.serving.dataplane import DataPlane

API = "KServe"
HEADER_LENGTH = "inference-header-content-length"


class KServeRest:
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane
        self._server = {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}

    def routes(self) -> list[Route]:
        base = f"/v2/models/{MODEL}{VERSION}"
        return [
            route("GET", "/v2/health/live", self.live, gated=False),
            route("GET", "/v2/health/ready", self.ready, gated=False),
            route("GET", "/v2", self.server_metadata),
            route("GET", base, self.model_metadata, api=API, metric="ModelMetadata"),
            route("GET", base + "/ready", self.model_ready, api=API, metric="ModelReady"),
            route(
                "POST",
                base + "/infer",
                self.infer,
                api=API,
                metric="ModelInfer",
                pooled=True,
                on_loop=self.infer_on_loop,
            ),
        ]

    def live(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200) if self.data_plane.server_live() else error_response(503, "Server is not live")

    def ready(self, request: Request, params: dict[str, str]) -> Response:
        if self.data_plane.server_ready():
            return Response(200)
        return error_response(503, "Server is not ready: starting, stopping, or a model has no available version")

    def server_metadata(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(self._server)

    def model_metadata(self, request: Request, params: dict[str, str]) -> Response:
        found = model_metadata(self.data_plane, params["model"], params.get("version", ""))
        return json_response(found.as_json())

    def model_ready(self, request: Request, params: dict[str, str]) -> Response:
        model = params["model"]
        if self.data_plane.model_ready(model, parse_version(params.get("version", ""), model)):
            return Response(200)
        return error_response(503, f"Model {codec.short(model)} is not ready")

    async def infer_on_loop(self, request: Request, params: dict[str, str]) -> Response | None:
        """:meth:`infer` on the event loop, for requests whose inputs all come in the binary data extension: no
        hand-off to a request thread and back (the data plane waits for the place and the inference on the loop).
        None leaves the request to :meth:`infer` on the request threads: JSON tensors in or out (parsing or writing
        a large one would hold up every connection), BYTES inputs (images to decode), and what the data plane would
        wait for on a thread (a shape to compile, no free infer request)."""
        if HEADER_LENGTH not in request.headers:
            return None
        begun = stages.now_ns() if stages.on else 0
        model, version, document, binary = _parsed(request, params)
        tensors = document.get("inputs")
        if not isinstance(tensors, list) or not all(_is_binary_numeric(tensor) for tensor in tensors):
            return None  # JSON data or BYTES (images) among the inputs, or a malformed request: answered by infer()
        wanted, binary_outputs = _requested_outputs(document)
        if not (binary_outputs is True or (wanted and binary_outputs == set(wanted))):
            return None  # outputs as JSON: encoding a large one would hold up the loop
        inputs = _decode_inputs(tensors, binary, model)
        if stages.on:
            stages.add("decode", stages.now_ns() - begun)
        async with self.data_plane.infer_on_loop(model, version, inputs, wanted) as result:
            if result is None:
                return None
            encoding = stages.now_ns() if stages.on else 0
            response = _encode(document, result.model, result.version, result.outputs, binary_outputs)
            if stages.on:
                stages.add("encode", stages.now_ns() - encoding)
            return response

    def infer(self, request: Request, params: dict[str, str]) -> Response:
        model, version, document, binary = _parsed(request, params)
        inputs = _decode_inputs(document.get("inputs"), binary, model)
        wanted, binary_outputs = _requested_outputs(document)
        if stages.on:
            stages.lap("decode")
        with self.data_plane.infer(model, version, inputs, wanted) as result:
            response = _encode(document, result.model, result.version, result.outputs, binary_outputs)
            if stages.on:
                stages.lap("encode")
            return response


def _parsed(request: Request, params: dict[str, str]) -> tuple[str, int | None, dict[str, Any], memoryview]:
    """An infer request's model, version, JSON header and the binary data after it."""
    model = params["model"]
    version = parse_version(params.get("version", ""), model)
    header, binary = _split_body(request)
    return model, version, json_object(header, "inference header"), binary


def _is_binary_numeric(tensor: Any) -> bool:
    """Whether a request's input comes in the binary data extension as numbers (not BYTES: strings, images)."""
    return (
        isinstance(tensor, dict)
        and tensor.get("datatype") != "BYTES"
        and isinstance(tensor.get("parameters"), dict)
        and ("binary_data_size" in tensor["parameters"])
    )


def _split_body(request: Request) -> tuple[memoryview, memoryview]:
    body = memoryview(request.body)
    text = request.headers.get(HEADER_LENGTH)
    if text is None:
        return body, body[:0]
    if not (text.strip().isascii() and text.strip().isdigit()):  # "²" is a digit to isdigit(), not to int()
        raise _invalid(f"Invalid Inference-Header-Content-Length - Expected: a byte count; Actual: {codec.short(text)}")
    length = int(text)
    if length > len(body):
        raise _invalid(
            f"Invalid Inference-Header-Content-Length - Expected: at most the body's {len(body)} bytes; "
            f"Actual: {length}"
        )
    return body[:length], body[length:]


def _decode_inputs(tensors: Any, binary: memoryview, model: str) -> dict[str, np.ndarray]:
    if not isinstance(tensors, list):  # an empty list is the data plane's "Invalid number of inputs"
        raise _invalid(f'Invalid request - Expected: "inputs" as a list; model name: {codec.short(model)}')
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise _invalid(f"Invalid request - Expected: input {index} as an object; Actual: {type(tensor).__name__}")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str) or not _is_shape(shape):
            raise _invalid(
                f'Invalid request - Expected: input {index} with a "name", a "datatype" and a "shape" (a list of '
                "integers)"
            )
        if name in arrays:
            raise _invalid(f"Duplicate input name: {codec.short(name)}")
        size = _parameters(tensor, f"input {codec.short(name)}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _invalid(f"Invalid binary_data_size - Expected: a byte count; input name: {codec.short(name)}")
            if "data" in tensor:
                raise _invalid(
                    f'Invalid input - both "data" and binary_data_size given; input name: {codec.short(name)}'
                )
            if offset + size > len(binary):
                raise _invalid(
                    f"Invalid binary data - Expected: {size} bytes for the input; Actual: {len(binary) - offset} "
                    f"bytes left after the header; input name: {codec.short(name)}"
                )
            arrays[name] = codec.from_raw(datatype, shape, binary[offset : offset + size], name)
            offset += size
        elif "data" in tensor:
            arrays[name] = _json_tensor(datatype, shape, tensor["data"], name)
        else:
            raise _invalid(f'Invalid input - no "data" and no binary_data_size; input name: {codec.short(name)}')
    if offset != len(binary):
        raise _invalid(
            f"Invalid binary data - Expected: {offset} bytes after the header (the inputs' binary_data_size); "
            f"Actual: {len(binary)} bytes"
        )
    return arrays


def _json_tensor(datatype: str, shape: list[int], data: Any, name: str) -> np.ndarray:
    dtype = codec.dtype_for(datatype, name)
    count = codec.element_count(shape, name, dtype.itemsize)
    if datatype == codec.BYTES:
        array = bytes_array(data if isinstance(data, list) else [data], name).reshape(-1)
    else:
        array = numeric_array(data, dtype, name).reshape(-1)
    if array.size != count:
        raise invalid_input("Invalid number of values in tensor proto container", count, array.size, name)
    return array.reshape(tuple(shape))


def _requested_outputs(document: dict[str, Any]) -> tuple[list[str], set[str] | bool]:
    """The outputs asked for (empty: all) and which go as binary data (True: all of them)."""
    all_binary = _parameters(document, "the request").get("binary_data_output") is True
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise _invalid(f'Invalid request - Expected: "outputs" as a list; Actual: {type(outputs).__name__}')
    wanted, binary = [], set()
    for index, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise _invalid(f'Invalid request - Expected: output {index} as an object with a "name"')
        wanted.append(output["name"])
        flag = _parameters(output, f"output {codec.short(output['name'])}").get("binary_data")
        if flag is True or (flag is None and all_binary):
            binary.add(output["name"])
    return wanted, (all_binary if not wanted else binary)


def _encode(
    document: dict[str, Any], model: str, version: int, outputs: dict[str, np.ndarray], binary: set[str] | bool
) -> Response:
    described, chunks = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": codec.datatype_of(array.dtype), "shape": list(array.shape)}
        if binary is True or (binary and name in binary):
            raw = codec.to_raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif array.dtype.kind in "OSU":
            entry["data"] = json_bytes(array.reshape(-1))
        else:
            entry["data"] = array.reshape(-1)
        described.append(entry)
    answer: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if "id" in document:
        answer["id"] = document["id"]
    header = dump(answer)
    if not chunks:
        return Response(200, header, served_version=str(version))
    response = Response(200, b"".join([header, *chunks]), OCTET_STREAM, served_version=str(version))
    response.headers.append((HEADER_LENGTH, str(len(header))))
    return response


def _parameters(entry: dict[str, Any], what: str) -> dict[str, Any]:
    """An object's ``parameters`` (absent or null: none); anything but an object is INVALID_INPUT."""
    parameters = entry.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise _invalid(
            f'Invalid request - Expected: "parameters" of {what} as an object; Actual: {type(parameters).__name__}'
        )
    return parameters


def _is_shape(shape: Any) -> bool:
    return isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)


def _invalid(message: str) -> ServingError:
    return ServingError(ErrorKind.INVALID_INPUT, message=message)
