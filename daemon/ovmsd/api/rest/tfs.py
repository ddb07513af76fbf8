"""TF Serving's REST API over the data plane: model status, metadata, predict (row and column formats), config.

    GET  /v1/models/{m}[/versions/{v}]               status, GetModelStatus's answer as JSON
    GET  /v1/models/{m}[/versions/{v}]/metadata      metadata, GetModelMetadata's answer as JSON
    POST /v1/models/{m}[/versions/{v}]:predict       {"instances": [...]} (row) or {"inputs": ...} (column)
    GET  /v1/config                                  every model's status
    POST /v1/config/reload                           read the config file again; 201 changed, 200 unchanged

Row format: each instance is one batch element, either a value (models with one input) or an object naming each
input; the answer is ``{"predictions": [...]}``, one element per instance (an object per instance when the model has
several outputs). Column format: ``inputs`` is a value or an object of whole tensors; the answer is
``{"outputs": ...}`` likewise. ``{"b64": "..."}`` carries bytes (binary images for a rank-4 input).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format

from ovmsd import stages
from ovmsd.api.grpc.model_service import status_response
from ovmsd.api.grpc.prediction_service import metadata_response
from ovmsd.api.kserve.codec import short
from ovmsd.api.kserve.protocol import parse_version
from ovmsd.api.rest.http import Request, Response, error_response, json_object, json_response
from ovmsd.api.rest.json_values import bytes_array, is_bytes_value, json_bytes, numeric_array
from ovmsd.api.rest.router import MODEL, VERSION, Route, route
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.dataplane import DataPlane, Reloaded
from ovmsd.serving.signature import Signature

API = "TensorFlowServing"


class TfServingRest:
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    def routes(self) -> list[Route]:
        base = f"/v1/models/{MODEL}{VERSION}"
        return [
            route("GET", base, self.status, api=API, metric="GetModelStatus"),
            route("GET", base + "/metadata", self.metadata, api=API, metric="GetModelMetadata"),
            route("POST", base + ":predict", self.predict, api=API, metric="Predict", pooled=True),
            route("GET", "/v1/config", self.config),
            route("POST", "/v1/config/reload", self.reload, pooled=True),
        ]

    def status(self, request: Request, params: dict[str, str]) -> Response:
        model = params["model"]
        statuses = self.data_plane.status(model, parse_version(params.get("version", ""), model))
        return json_response(_message(status_response(statuses)))

    def metadata(self, request: Request, params: dict[str, str]) -> Response:
        model = params["model"]
        found = self.data_plane.metadata(model, parse_version(params.get("version", ""), model))
        document = _message(metadata_response(found))
        document.get("metadata", {}).get("signature_def", {}).pop("@type", None)  # TF Serving's REST omits it
        return json_response(document, served_version=str(found.version))

    def predict(self, request: Request, params: dict[str, str]) -> Response:
        model = params["model"]
        version = parse_version(params.get("version", ""), model)
        body = json_object(request.body)
        rows = "instances" in body
        if rows == ("inputs" in body):
            raise ServingError(
                ErrorKind.INVALID_INPUT,
                message='Invalid request - Expected: exactly one of "instances" (row format) and "inputs" '
                f"(column format); Actual: {'both' if rows else 'neither'}; model name: {short(model)}",
            )
        signature = self.data_plane.metadata(model, version).signature
        inputs = _rows(body["instances"], signature, model) if rows else _columns(body["inputs"], signature, model)
        if stages.on:
            stages.lap("decode")
        with self.data_plane.infer(model, version, inputs) as result:
            outputs = {name: _json_tensor(array) for name, array in result.outputs.items()}
            document = _predictions(outputs, result.outputs, model) if rows else _outputs(outputs)
            response = json_response(document, served_version=str(result.version))
            if stages.on:
                stages.lap("encode")
            return response

    def config(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(self._all_statuses())

    def reload(self, request: Request, params: dict[str, str]) -> Response:
        reloaded: Reloaded = self.data_plane.reload_config()
        if reloaded.rejected:
            return error_response(400, reloaded.message)
        if not reloaded.ok:
            return error_response(500, f"Config reload applied with errors: {reloaded.message}")
        return json_response(self._all_statuses(), status=201 if reloaded.changed else 200)

    def _all_statuses(self) -> dict[str, Any]:
        return {
            model.name: _message(status_response([v.status for v in model.versions]))
            for model in self.data_plane.manager.snapshot()
        }


def _message(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _input_names(signature: Signature, given: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """Named inputs as given; one unnamed value goes to a model's only input."""
    if given is not None:
        return given
    if len(signature.inputs) != 1:
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid request - Expected: an object naming each of the {len(signature.inputs)} inputs "
            f"({', '.join(s.name for s in signature.inputs)}); Actual: one unnamed value; model name: {short(model)}",
        )
    return {signature.inputs[0].name: None}


def _rows(instances: Any, signature: Signature, model: str) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f'Invalid request - Expected: "instances" as a non-empty list; Actual: '
            f"{_describe(instances)}; model name: {short(model)}",
        )
    named = all(isinstance(i, dict) and not _is_b64(i) for i in instances)
    if not named:
        [name] = _input_names(signature, None, model)
        return {name: _array(instances, signature, name)}
    keys = set(instances[0])
    for index, instance in enumerate(instances):
        if set(instance) != keys:
            raise ServingError(
                ErrorKind.INVALID_INPUT,
                message=f"Invalid request - Expected: every instance naming the inputs {sorted(keys)}; Actual: "
                f"instance {index} names {sorted(instance)}; model name: {short(model)}",
            )
    return {name: _array([instance[name] for instance in instances], signature, name) for name in keys}


def _columns(inputs: Any, signature: Signature, model: str) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return {name: _array(value, signature, name) for name, value in inputs.items()}
    [name] = _input_names(signature, None, model)
    return {name: _array(inputs, signature, name)}


def _array(value: Any, signature: Signature, name: str) -> np.ndarray:
    """An input's value as the model's dtype (unknown names keep float32: the data plane names the error)."""
    if is_bytes_value(value):
        return bytes_array(value, name)
    spec = signature.input_named(name)
    return numeric_array(value, spec.dtype if spec is not None else np.dtype(np.float32), name)


def _is_b64(value: dict[str, Any]) -> bool:
    return set(value) == {"b64"}


def _describe(value: Any) -> str:
    return "an empty list" if value == [] else type(value).__name__


def _json_tensor(array: np.ndarray) -> Any:
    return json_bytes(array) if array.dtype.kind in "OSU" else array


def _predictions(outputs: dict[str, Any], arrays: dict[str, np.ndarray], model: str) -> dict[str, Any]:
    """Row format: one element per batch row; with several outputs, an object per row."""
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message="Invalid request - the outputs have different batch sizes "
            f"({', '.join(f'{k}: {v}' for k, v in sizes.items())}) and cannot be returned in the row format; "
            f'send "inputs" (the column format); model name: {short(model)}',
        )
    count = next(iter(sizes.values()))
    return {"predictions": [{name: value[row] for name, value in outputs.items()} for row in range(count)]}


def _outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": outputs}
