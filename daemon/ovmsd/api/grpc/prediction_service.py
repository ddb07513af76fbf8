"""``tensorflow.serving.PredictionService``: Predict and GetModelMetadata. Thin: decode, call the data plane, encode."""

from __future__ import annotations

import grpc
import numpy as np

from ovmsd import stages
from ovmsd.api.grpc.proto import get_model_metadata_pb2, meta_graph_pb2, predict_pb2, prediction_service_pb2_grpc
from ovmsd.api.grpc.requests import requested_version
from ovmsd.api.grpc.tensors import TensorDecodeError, dtype_of, numpy_to_tensor, tensor_to_numpy
from ovmsd.errors import ErrorKind, ServingError, short
from ovmsd.serving.dataplane import DataPlane, ModelMetadata
from ovmsd.serving.signature import Signature, TensorSpec

SIGNATURE_KEY = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        name = request.model_spec.name
        version = requested_version(request.model_spec)
        arrays = _decode_inputs(request)
        response = predict_pb2.PredictResponse()
        if stages.on:
            stages.lap("decode")
        with self.data_plane.infer(name, version, arrays, list(request.output_filter)) as result:
            response.model_spec.name = name
            response.model_spec.version.value = result.version
            response.model_spec.signature_name = SIGNATURE_KEY
            for output_name, array in result.outputs.items():
                numpy_to_tensor(array, response.outputs[output_name])
            if stages.on:
                stages.lap("encode")
        return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        unsupported = [f for f in request.metadata_field if f != "signature_def"]
        if unsupported:
            raise ServingError(
                ErrorKind.UNSUPPORTED, message=f"Metadata field {unsupported[0]!r} is not supported; use signature_def"
            )
        return metadata_response(
            self.data_plane.metadata(request.model_spec.name, requested_version(request.model_spec))
        )


def metadata_response(metadata: ModelMetadata) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata's answer (TF Serving REST answers the same message as JSON)."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = metadata.name
    response.model_spec.version.value = metadata.version
    response.metadata["signature_def"].Pack(_signature_def_map(metadata.signature))
    return response


def _decode_inputs(request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    arrays = {}
    for input_name, proto in request.inputs.items():
        try:
            arrays[input_name] = tensor_to_numpy(proto)
        except TensorDecodeError as exc:
            raise ServingError(ErrorKind.INVALID_INPUT, message=f"{exc}; input name: {short(input_name)}") from exc
    return arrays


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
