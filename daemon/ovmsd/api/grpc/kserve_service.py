"""``inference.GRPCInferenceService`` (KServe v2 over gRPC), a thin adapter over the data plane.

Inputs come in typed ``contents`` or in ``raw_input_contents`` (one entry per input, in order), never both; outputs
go out in ``raw_output_contents``, as OVMS answers. ``ModelStreamInfer`` answers each request in order and reports a
failed one in the stream response's ``error_message``, the stream going on. Errors are ``ServingError``; the shared
gRPC wrapper (``ovmsd.api.grpc.wrapper``) maps them to status codes.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np

from ovmsd import stages
from ovmsd.api.errors import bounded
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as pb_grpc
from ovmsd.api.grpc.wrapper import StreamAnswer
from ovmsd.api.kserve import codec
from ovmsd.api.kserve.protocol import EXTENSIONS, SERVER_NAME, model_metadata, parse_version, server_version
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.dataplane import DataPlane

SERVICE = "inference.GRPCInferenceService"

# the typed contents field of each datatype (FP16 and BF16 have none: raw only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane
        self._version = server_version()

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.data_plane.server_live())

    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.data_plane.server_ready())

    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        version = parse_version(request.version, request.name)
        return pb.ModelReadyResponse(ready=self.data_plane.model_ready(request.name, version))

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=EXTENSIONS)

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        found = model_metadata(self.data_plane, request.name, request.version)
        response = pb.ModelMetadataResponse(name=found.name, versions=found.versions, platform=found.platform)
        for tensors, target in ((found.inputs, response.inputs), (found.outputs, response.outputs)):
            for tensor in tensors:
                target.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        return response

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        return self._infer(request)

    def ModelStreamInfer(
        self, requests: Iterator[pb.ModelInferRequest], context: grpc.ServicerContext
    ) -> Iterator[StreamAnswer]:
        """One answer per request, in order; the wrapper sends each answer's response and counts its error."""
        for request in requests:
            try:
                yield StreamAnswer(pb.ModelStreamInferResponse(infer_response=self._infer(request)))
            except ServingError as exc:
                yield StreamAnswer(pb.ModelStreamInferResponse(error_message=bounded(exc.message)), exc)

    def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        model = request.model_name
        version = parse_version(request.model_version, model)
        inputs = decode_inputs(request)
        wanted = [output.name for output in request.outputs]
        response = pb.ModelInferResponse(model_name=model, id=request.id)
        if stages.on:
            stages.lap("decode")
        with self.data_plane.infer(model, version, inputs, wanted) as result:
            response.model_version = str(result.version)
            raw = response.raw_output_contents
            for name, array in result.outputs.items():
                response.outputs.add(name=name, datatype=codec.datatype_of(array.dtype), shape=array.shape)
                raw.append(codec.to_raw(array))
            if stages.on:
                stages.lap("encode")
        return response


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid number of raw_input_contents entries - Expected: {len(request.inputs)}; "
            f"Actual: {len(raw)}; model name: {codec.short(request.model_name)}",
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in arrays:
            raise ServingError(ErrorKind.INVALID_INPUT, message=f"Duplicate input name: {codec.short(name)}")
        if raw:
            if tensor.HasField("contents"):
                raise ServingError(
                    ErrorKind.INVALID_INPUT,
                    message="Passing buffers both in InferInputTensor contents and in raw_input_contents is not "
                    f"allowed; input name: {codec.short(name)}",
                )
            arrays[name] = codec.from_raw(tensor.datatype, tensor.shape, raw[index], name)
        else:
            arrays[name] = codec.from_values(tensor.datatype, tensor.shape, _contents(tensor), name)
    return arrays


def _contents(tensor: pb.ModelInferRequest.InferInputTensor) -> list[object]:
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        codec.dtype_for(tensor.datatype, tensor.name)  # an unknown datatype: its own message
        return []  # FP16/BF16: from_values says they are raw only
    return getattr(tensor.contents, field)
