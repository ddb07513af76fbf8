"""Runs the real KServe v2 client, tritonclient (gRPC and HTTP), in its own virtualenv; prints JSON results.

Usage:
    python triton_client.py COMMANDS...      # each argument a JSON command object or a JSON list of them
    python triton_client.py < COMMANDS.json  # no arguments: one JSON document (object or list) on stdin

The last line of stdout is a JSON list with one result per command, in order. The exit code is 0 whenever every
command could be run, whether the server answered with an error or not; a malformed command exits 2.

A command:
    {"protocol": "grpc" | "http", "url": "127.0.0.1:PORT", "op": OP, "timeout": SECONDS (default 30), ...}

OPs and their arguments (``version`` is a string; empty or absent lets the server choose):
    is_server_live, is_server_ready, get_server_metadata
    is_model_ready, get_model_metadata                       model, version
    infer                                                    model, version, inputs, outputs, id, parameters
    async_infer                                              as infer, plus count (default 1): count requests
                                                             in flight at once
    stream_infer (grpc only)                                 model, version, requests: a list of infer-like
                                                             objects (model/version default to the command's),
                                                             stream_timeout (default: timeout)

    inputs:  [{"name", "datatype" (KServe: FP32, INT64, BYTES...), "data" (nested list; BYTES: strings, or
               {"b64": ...} per element), "shape" (optional reshape of data), "declared_shape" (optional: the
               shape sent, when it must differ from the data's), "binary_data" (HTTP: default true)}]
             gRPC always sends raw_input_contents (tritonclient has no typed-contents path); HTTP sends the data
             as JSON ("binary_data": false) or in the binary tensor extension (true).
    outputs: optional, names or {"name", "binary_data" (HTTP, default true), "class_count"}; absent: all
             outputs (tritonclient's HTTP client then asks for binary_data_output).
    binary_data: optional command-level default for the inputs' and outputs' binary_data (HTTP).
    ssl: optional {"ca", "cert", "key"}: TLS, PEM file paths; cert and key for mutual TLS.
    headers: optional request headers (e.g. {"Authorization": "Bearer KEY"}) for the model ops and infer.

Results:
    success: {"result": VALUE}
        is_*: true/false
        get_*_metadata: the client's dict (gRPC: MessageToJson with proto field names, so int64 shapes are strings)
        infer: {"model_name", "model_version", "id", "parameters", "outputs": {name: {"datatype", "shape", "data",
                "parameters"}}, "raw_output_contents": count (gRPC only)}; "data" is as_numpy(name).tolist()
                (FP16/BF16 as floats, BYTES as strings or {"b64": ...}); outputs keep the response's order
        async_infer: a list of count infer results or errors, in the order sent
        stream_infer: a list, in arrival order, of one infer result or error per stream callback: a response's
                error_message is an error with status null; an error that ended the whole stream (a gRPC status:
                connection refused, the server aborting the call, stream_timeout) comes last, with its status
    failure: {"error": message, "status": code, "exception": class name}; status is the gRPC status name
        ("NOT_FOUND", "UNAVAILABLE"...), the HTTP status as an int, or null for errors raised by the client itself
        (connection refused over HTTP, client-side validation, an error_message in a stream response).
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from typing import Any

import ml_dtypes
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

DEFAULT_TIMEOUT = 30.0


class CommandError(Exception):
    """A malformed command (a test bug, not a server answer)."""


def error_result(exc: BaseException) -> dict[str, Any]:
    status: Any = None
    if isinstance(exc, InferenceServerException):
        message = exc.message()
        raw = exc.status()
        if raw is not None:
            raw = str(raw)
            if raw.startswith("StatusCode."):
                status = raw[len("StatusCode.") :]
            elif raw.isdigit():
                status = int(raw)
            else:
                status = raw
    else:
        message = str(exc) or type(exc).__name__
    return {"error": message, "status": status, "exception": type(exc).__name__}


# --- inputs and outputs -------------------------------------------------------------------------------------------


def _bytes_element(value: Any) -> bytes:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    raise CommandError(f"BYTES element must be a string or {{'b64': ...}}, got {value!r}")


def _nested(data: Any, leaf):
    if isinstance(data, list):
        return [_nested(d, leaf) for d in data]
    return leaf(data)


def input_array(spec: dict[str, Any]) -> np.ndarray:
    datatype = spec["datatype"]
    data = spec.get("data", [])
    if datatype == "BYTES":
        flat: list[bytes] = []

        def collect(value: Any) -> None:
            flat.append(_bytes_element(value))

        _nested(data, collect)
        array = np.empty(len(flat), dtype=np.object_)
        array[:] = flat
        shape = spec["shape"] if "shape" in spec else list(np.shape(np.array(_nested(data, lambda _: 0))))
        return array.reshape(shape)
    if datatype == "BF16":
        array = np.array(data, dtype=np.float32).astype(ml_dtypes.bfloat16)
    else:
        dtype = triton_to_np_dtype(datatype)
        if dtype is None:
            raise CommandError(f"unknown datatype {datatype!r}")
        array = np.array(data, dtype=dtype)
    if "shape" in spec:
        array = array.reshape(spec["shape"])
    return array


def make_inputs(module, specs: list[dict[str, Any]], http_binary: bool) -> list:
    inputs = []
    for spec in specs:
        if not isinstance(spec, dict) or "name" not in spec or "datatype" not in spec:
            raise CommandError(f"an input is an object with name, datatype and data: {spec!r}")
        array = input_array(spec)
        infer_input = module.InferInput(spec["name"], list(array.shape), spec["datatype"])
        if module is httpclient:
            infer_input.set_data_from_numpy(array, binary_data=spec.get("binary_data", http_binary))
        else:
            infer_input.set_data_from_numpy(array)
        if "declared_shape" in spec:
            infer_input.set_shape(spec["declared_shape"])
        inputs.append(infer_input)
    return inputs


def make_outputs(module, specs: list[Any] | None, http_binary: bool) -> list | None:
    if specs is None:
        return None
    outputs = []
    for spec in specs:
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "name" not in spec:
            raise CommandError(f"an output is a name or an object with a name: {spec!r}")
        if module is httpclient:
            outputs.append(
                httpclient.InferRequestedOutput(
                    spec["name"],
                    binary_data=spec.get("binary_data", http_binary),
                    class_count=spec.get("class_count", 0),
                )
            )
        else:
            outputs.append(grpcclient.InferRequestedOutput(spec["name"], class_count=spec.get("class_count", 0)))
    return outputs


def _jsonable_bytes(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def array_data(array: np.ndarray | None) -> Any:
    if array is None:
        return None
    if array.dtype == np.object_ or array.dtype.kind == "S":
        return _nested(array.tolist(), lambda v: _jsonable_bytes(v) if isinstance(v, bytes) else v)
    if array.dtype == ml_dtypes.bfloat16 or array.dtype == np.float16:
        return array.astype(np.float64).tolist()
    return array.tolist()


def _grpc_parameters(params) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def grpc_result(result) -> dict[str, Any]:
    response = result.get_response()
    outputs = {}
    for output in response.outputs:
        outputs[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "data": array_data(result.as_numpy(output.name)),
            "parameters": _grpc_parameters(output.parameters),
        }
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "parameters": _grpc_parameters(response.parameters),
        "outputs": outputs,
        "raw_output_contents": len(response.raw_output_contents),
    }


def http_result(result) -> dict[str, Any]:
    response = result.get_response()
    outputs = {}
    for output in response.get("outputs", []):
        outputs[output["name"]] = {
            "datatype": output.get("datatype"),
            "shape": output.get("shape"),
            "data": array_data(result.as_numpy(output["name"])),
            "parameters": output.get("parameters", {}),
        }
    return {
        "model_name": response.get("model_name"),
        "model_version": response.get("model_version"),
        "id": response.get("id", ""),
        "parameters": response.get("parameters", {}),
        "outputs": outputs,
    }


# --- commands -----------------------------------------------------------------------------------------------------


def _infer_args(module, command: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    http_binary = spec.get("binary_data", command.get("binary_data", True))
    args: dict[str, Any] = {
        "model_name": spec.get("model", command.get("model")),
        "inputs": make_inputs(module, spec.get("inputs", []), http_binary),
        "model_version": str(spec.get("version", command.get("version", ""))),
        "outputs": make_outputs(module, spec.get("outputs"), http_binary),
        "request_id": str(spec.get("id", "")),
    }
    if args["model_name"] is None:
        raise CommandError("infer needs a model")
    if spec.get("parameters"):
        args["parameters"] = spec["parameters"]
    return args


def run_grpc(command: dict[str, Any]) -> Any:
    op = command["op"]
    timeout = float(command.get("timeout", DEFAULT_TIMEOUT))
    tls = command.get("ssl") or {}
    with grpcclient.InferenceServerClient(
        command["url"],
        ssl=bool(tls),
        root_certificates=tls.get("ca"),
        private_key=tls.get("key"),
        certificate_chain=tls.get("cert"),
    ) as client:
        model = command.get("model", "")
        version = str(command.get("version", ""))
        headers = command.get("headers")
        if op == "is_server_live":
            return client.is_server_live(client_timeout=timeout)
        if op == "is_server_ready":
            return client.is_server_ready(client_timeout=timeout)
        if op == "is_model_ready":
            return client.is_model_ready(model, version, headers=headers, client_timeout=timeout)
        if op == "get_server_metadata":
            return client.get_server_metadata(headers=headers, as_json=True, client_timeout=timeout)
        if op == "get_model_metadata":
            return client.get_model_metadata(model, version, headers=headers, as_json=True, client_timeout=timeout)
        if op == "infer":
            result = client.infer(**_infer_args(grpcclient, command, command), headers=headers, client_timeout=timeout)
            return grpc_result(result)
        if op == "async_infer":
            count = int(command.get("count", 1))
            results: list[Any] = [None] * count
            done = threading.Semaphore(0)

            def callback(index: int, result, error) -> None:
                try:
                    results[index] = error_result(error) if error is not None else grpc_result(result)
                except Exception as exc:  # a response the driver cannot decode is a result too
                    results[index] = error_result(exc)
                done.release()

            for i in range(count):
                client.async_infer(
                    **_infer_args(grpcclient, command, command),
                    callback=lambda result, error, i=i: callback(i, result, error),
                    client_timeout=timeout,
                )
            deadline = time.monotonic() + timeout + 5
            for _ in range(count):
                if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
            missing = {"error": f"no callback within {timeout + 5} s", "status": None, "exception": None}
            return [r if r is not None else missing for r in results]
        if op == "stream_infer":
            responses: list[Any] = []
            lock = threading.Lock()

            def stream_callback(result, error) -> None:
                try:
                    entry = error_result(error) if error is not None else grpc_result(result)
                except Exception as exc:
                    entry = error_result(exc)
                with lock:
                    responses.append(entry)

            client.start_stream(stream_callback, stream_timeout=float(command.get("stream_timeout", timeout)))
            refused = None
            try:
                for spec in command.get("requests", []):
                    client.async_stream_infer(**_infer_args(grpcclient, command, spec))
            except InferenceServerException as exc:
                refused = exc  # the stream ended early; its gRPC error reaches the callback
            finally:
                client.stop_stream()  # waits until the server has ended the response stream (or stream_timeout)
            with lock:
                if refused is not None and not responses:
                    responses.append(error_result(refused))
                return list(responses)
        raise CommandError(f"unknown gRPC op {op!r}")


def run_http(command: dict[str, Any]) -> Any:
    import gevent

    gevent.get_hub().exception_stream = None  # failed requests are results; no greenlet tracebacks on stderr
    op = command["op"]
    timeout = float(command.get("timeout", DEFAULT_TIMEOUT))
    count = int(command.get("count", 1))
    tls = command.get("ssl") or {}
    options = {"ca_certs": tls.get("ca"), "certfile": tls.get("cert"), "keyfile": tls.get("key")}
    with httpclient.InferenceServerClient(
        command["url"],
        concurrency=max(1, count),
        connection_timeout=timeout,
        network_timeout=timeout,
        ssl=bool(tls),
        ssl_options={k: v for k, v in options.items() if v} if tls else None,
    ) as client:
        model = command.get("model", "")
        version = str(command.get("version", ""))
        headers = command.get("headers")
        if op == "is_server_live":
            return client.is_server_live()
        if op == "is_server_ready":
            return client.is_server_ready()
        if op == "is_model_ready":
            return client.is_model_ready(model, version, headers=headers)
        if op == "get_server_metadata":
            return client.get_server_metadata(headers=headers)
        if op == "get_model_metadata":
            return client.get_model_metadata(model, version, headers=headers)
        if op == "infer":
            return http_result(client.infer(**_infer_args(httpclient, command, command), headers=headers))
        if op == "async_infer":
            pending = [client.async_infer(**_infer_args(httpclient, command, command)) for _ in range(count)]
            results = []
            for request in pending:
                try:
                    results.append(http_result(request.get_result(timeout=timeout)))
                except Exception as exc:
                    results.append(error_result(exc))
            return results
        raise CommandError(f"unknown HTTP op {op!r}")


def run(command: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(command, dict) or "op" not in command or "url" not in command:
        raise CommandError(f"a command is an object with op and url: {command!r}")
    protocol = command.get("protocol", "grpc")
    runner = {"grpc": run_grpc, "http": run_http}.get(protocol)
    if runner is None:
        raise CommandError(f"protocol must be grpc or http, got {protocol!r}")
    try:
        return {"result": runner(command)}
    except CommandError:
        raise
    except Exception as exc:  # InferenceServerException, OSError (connection refused over HTTP), ...
        return error_result(exc)


def parse(documents: list[str]) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    for text in documents:
        loaded = json.loads(text)
        commands.extend(loaded if isinstance(loaded, list) else [loaded])
    return commands


def main(argv: list[str]) -> int:
    try:
        commands = parse(argv or [sys.stdin.read()])
        results = [run(command) for command in commands]
    except (CommandError, json.JSONDecodeError) as exc:
        print(f"triton_client.py: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
