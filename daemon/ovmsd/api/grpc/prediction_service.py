"""``tensorflow.serving.PredictionService``: Predict and GetModelMetadata. Thin: decode, call the manager, encode."""

from __future__ import annotations

import time

import grpc
import numpy as np

from ovmsd.api.grpc.errors import grpc_errors
from ovmsd.api.grpc.gate import Gate, gated
from ovmsd.api.grpc.proto import get_model_metadata_pb2, meta_graph_pb2, predict_pb2, prediction_service_pb2_grpc
from ovmsd.api.grpc.requests import requested_version
from ovmsd.api.grpc.tensors import TensorDecodeError, dtype_of, numpy_to_tensor, tensor_to_numpy
from ovmsd.errors import ErrorKind, ServingError, invalid_input
from ovmsd.observe.metrics import RequestMetrics, RequestSeries
from ovmsd.serving.instance import ModelInstance
from ovmsd.serving.manager import ModelManager
from ovmsd.serving.signature import Signature, TensorSpec

SIGNATURE_KEY = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, gate: Gate, metrics: RequestMetrics | None = None) -> None:
        self.manager = manager
        self.gate = gate
        self.metrics = metrics

    @gated
    @grpc_errors
    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        started = time.perf_counter_ns()
        name = request.model_spec.name
        with self.manager.acquire(name, requested_version(request.model_spec)) as (number, instance):
            series = self.metrics.series(name, number, "Predict") if self.metrics is not None else None
            try:
                response = self._predict(request, number, instance, series)
            except BaseException:
                if series is not None:
                    series.finished(False, started)
                raise
            if series is not None:
                series.finished(True, started)
            return response

    def _predict(
        self, request: predict_pb2.PredictRequest, number: int, instance: ModelInstance, series: RequestSeries | None
    ) -> predict_pb2.PredictResponse:
        if not request.inputs:
            expected = len(instance.base.signature.inputs)
            raise invalid_input("Invalid number of inputs", expected, 0, None)
        arrays = _decode_inputs(request)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = number
        response.model_spec.signature_name = SIGNATURE_KEY
        infer_started = time.perf_counter_ns()
        with instance.run(arrays) as (signature, outputs):
            if series is not None:
                series.inferred(time.perf_counter_ns() - infer_started)
            for output_name in _selected_outputs(signature, request.output_filter):
                numpy_to_tensor(outputs[output_name], response.outputs[output_name])
        return response

    @gated
    @grpc_errors
    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        started = time.perf_counter_ns()
        unsupported = [f for f in request.metadata_field if f != "signature_def"]
        if unsupported:
            raise ServingError(
                ErrorKind.UNSUPPORTED, message=f"Metadata field {unsupported[0]!r} is not supported; use signature_def"
            )
        name = request.model_spec.name
        with self.manager.acquire(name, requested_version(request.model_spec)) as (number, instance):
            signature = instance.signature
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = number
        response.metadata["signature_def"].Pack(_signature_def_map(signature))
        if self.metrics is not None:
            self.metrics.series(name, number, "GetModelMetadata").finished(True, started)
        return response


def _decode_inputs(request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    arrays = {}
    for input_name, proto in request.inputs.items():
        try:
            arrays[input_name] = tensor_to_numpy(proto)
        except TensorDecodeError as exc:
            raise ServingError(ErrorKind.INVALID_INPUT, message=f"{exc}; input name: {input_name}") from exc
    return arrays


def _selected_outputs(signature: Signature, output_filter: list[str]) -> list[str]:
    names = [spec.name for spec in signature.outputs]
    if not output_filter:
        return names
    for wanted in output_filter:
        if wanted not in names:
            raise invalid_input("Invalid output name in output_filter", ", ".join(names), wanted, None)
    return list(dict.fromkeys(output_filter))


def _signature_def_map(signature: Signature) -> get_model_metadata_pb2.SignatureDefMap:
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    definition = signature_map.signature_def[SIGNATURE_KEY]
    definition.method_name = PREDICT_METHOD
    for spec in signature.inputs:
        _fill_tensor_info(definition.inputs[spec.name], spec)
    for spec in signature.outputs:
        _fill_tensor_info(definition.outputs[spec.name], spec)
    return signature_map


def _fill_tensor_info(info: meta_graph_pb2.TensorInfo, spec: TensorSpec) -> None:
    info.name = spec.name
    info.dtype = dtype_of(spec.dtype)
    for size in spec.metadata_dims:
        info.tensor_shape.dim.add().size = size
